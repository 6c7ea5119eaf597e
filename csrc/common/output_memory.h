// Allocation of the ops' large outputs.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pgnface {

// Asks the kernel to back the 2 MiB-aligned part of a large buffer that has
// not been written yet with transparent huge pages (where the system allows
// them on request). A batch's outputs are tens of megabytes, freshly mapped
// by the allocator on every call; faulting them in 4 KiB pages costs a
// quarter of a 64-image rasterization. A hint only: no value changes.
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// at::empty for an output the op writes whole: advised to huge pages on the CPU.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  if (t.is_cpu()) advise_huge_pages(t.data_ptr(), t.nbytes());
  return t;
}

// at::zeros for an output the op accumulates into (empty_output, then zeroed).
inline at::Tensor zeros_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = empty_output(sizes, options);
  t.zero_();
  return t;
}

// t.contiguous(), the copy (of an expanded gradient, say) made in empty_output memory.
inline at::Tensor contiguous_copy(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  at::Tensor c = empty_output(t.sizes(), t.options());
  c.copy_(t);
  return c;
}

}  // namespace pgnface
