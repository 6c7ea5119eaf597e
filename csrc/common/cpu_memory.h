// Memory hints for the CPU twins' large outputs.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pgnface {

// Asks the kernel to back the 2 MiB-aligned part of a large buffer that has
// not been written yet with transparent huge pages (where the system allows
// them on request). A batch's outputs are tens of megabytes, freshly mapped
// on every call; faulting them in 4 KiB pages costs a quarter of a 64-image
// rasterization. A hint only: the contents and the result do not change.
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 4 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace pgnface
