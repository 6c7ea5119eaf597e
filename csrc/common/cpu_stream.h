// Streaming (non-temporal) stores for the CPU twins' large outputs.
//
// An op that writes an output a few bytes at a time makes the core read each
// cache line before writing it (read for ownership). While the output fits in
// L2 that read is cheap; once a batch's output is larger, every line comes
// from L3 or memory, and the reads cost more than the op's own work
// (interpolate took twice as long per image at 16 images as at one).
// Streaming stores write whole lines without reading them and leave the
// caches to the op's inputs. They are weakly ordered, so each task calls
// stream_fence() before it ends and the results are visible to whoever joins
// it.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PGN_HAVE_STREAM_STORES 1
#endif

namespace pgnface {

// Outputs of at least this many bytes are written with streaming stores: past
// the L2 of current cores (1-2 MiB), where a line read for ownership comes
// from further away.
constexpr int64_t kStreamOutputBytes = int64_t{4} << 20;

// Copies n values from src (a small buffer in cache) to dst with streaming
// stores, 4 bytes at a time (movnti, baseline x86-64; dst need only be 4-byte
// aligned). A plain copy elsewhere.
template <typename T>
inline void stream_copy(const T* src, int64_t n, T* dst) {
  static_assert(sizeof(T) % 4 == 0, "stream_copy moves 4-byte words");
#if defined(PGN_HAVE_STREAM_STORES)
  const char* from = reinterpret_cast<const char*>(src);
  char* to = reinterpret_cast<char*>(dst);
  const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
  for (int64_t i = 0; i < bytes; i += 4) {
    int word;
    std::memcpy(&word, from + i, 4);
    _mm_stream_si32(reinterpret_cast<int*>(to + i), word);
  }
#else
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
#endif
}

// Orders this thread's streaming stores before its later stores (and hence
// before the parallel loop's join).
inline void stream_fence() {
#if defined(PGN_HAVE_STREAM_STORES)
  _mm_sfence();
#endif
}

}  // namespace pgnface
