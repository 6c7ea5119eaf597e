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

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu_simd.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PGN_HAVE_STREAM_STORES 1
#endif

namespace pgnface {

// Outputs of at least this many bytes are written with streaming stores: past
// the L2 of current cores (1-2 MiB), where a line read for ownership comes
// from further away.
constexpr int64_t kStreamOutputBytes = int64_t{4} << 20;

namespace stream_detail {

#if defined(PGN_HAVE_STREAM_STORES)
// Bytes [i, end) of from to to, a 4-byte streaming store (movnti) at a time.
inline void stream_words(const char* from, char* to, int64_t i, int64_t end) {
  for (; i < end; i += 4) {
    int word;
    std::memcpy(&word, from + i, 4);
    _mm_stream_si32(reinterpret_cast<int*>(to + i), word);
  }
}

// Baseline x86-64: 4-byte words up to the first 16-byte boundary of to,
// 16-byte vectors (movntdq) from there, 4-byte words for the rest. Every
// store streams, so the write-combining buffers join the pieces of a line.
inline void stream_bytes(const char* from, int64_t bytes, char* to) {
  int64_t i = std::min<int64_t>(bytes, (16 - (reinterpret_cast<uintptr_t>(to) & 15)) & 15);
  stream_words(from, to, 0, i);
  for (; bytes - i >= 16; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + i));
    _mm_stream_si128(reinterpret_cast<__m128i*>(to + i), v);
  }
  stream_words(from, to, i, bytes);
}
#endif

#if defined(PGN_HAVE_STREAM_STORES) && defined(PGN_CPU_V4)
// AVX-512: each whole line of to in one 64-byte streaming store, the partial
// lines at either end with plain stores. Partly written lines are what costs
// here: pieces of lines joined from narrower streaming stores, next to plain
// stores, measure three times slower, and whole-line stores beside plain
// ones one and a half times as fast as the all-streaming copy above.
PGN_CPU_V4 inline void stream_lines(const char* from, int64_t bytes, char* to) {
  const int64_t head = std::min<int64_t>(bytes, (64 - (reinterpret_cast<uintptr_t>(to) & 63)) & 63);
  std::memcpy(to, from, static_cast<size_t>(head));
  int64_t i = head;
  for (; bytes - i >= 64; i += 64)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(to + i), _mm512_loadu_si512(from + i));
  std::memcpy(to + i, from + i, static_cast<size_t>(bytes - i));
}
#endif

}  // namespace stream_detail

// Copies n values from src (a buffer in cache) to dst with streaming stores;
// dst need only be 4-byte aligned. whole_lines (cpu_simd_width() == 512,
// looked up once per call by the caller) picks the AVX-512 copy. A plain copy
// where the build has no streaming stores.
template <typename T>
inline void stream_copy(const T* src, int64_t n, T* dst, bool whole_lines) {
  static_assert(sizeof(T) % 4 == 0, "stream_copy moves 4-byte words");
  const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
#if defined(PGN_HAVE_STREAM_STORES)
  const char* from = reinterpret_cast<const char*>(src);
  char* to = reinterpret_cast<char*>(dst);
#if defined(PGN_CPU_V4)
  if (whole_lines) return stream_detail::stream_lines(from, bytes, to);
#endif
  stream_detail::stream_bytes(from, bytes, to);
#else
  (void)whole_lines;
  std::memcpy(dst, src, static_cast<size_t>(bytes));
#endif
}

// Whether stream_copy may use its AVX-512 copy on this CPU and build.
inline bool stream_whole_lines() { return cpu_simd_width() >= 512; }

// Rows of a piece of output staged in a buffer in cache, streamed out a few
// at a time between the computations of the thread's next piece, so that the
// streaming overlaps them instead of following them.
template <typename T>
class StagedRows {
 public:
  StagedRows() = default;

  // count rows of `values` values, row r at rows + r * stride, bound for
  // out + r * out_stride; step() streams rows_per_step of them.
  StagedRows(const T* rows, int64_t stride, int64_t count, int64_t values, T* out,
             int64_t out_stride, int64_t rows_per_step, bool whole_lines)
      : rows_(rows),
        out_(out),
        stride_(stride),
        out_stride_(out_stride),
        count_(count),
        values_(values),
        rows_per_step_(rows_per_step),
        whole_lines_(whole_lines) {}

  // Streams out the next rows_per_step rows, or as many as are left.
  inline void step() {
    const int64_t end = std::min(count_, next_ + rows_per_step_);
    for (; next_ < end; ++next_)
      stream_copy(rows_ + next_ * stride_, values_, out_ + next_ * out_stride_, whole_lines_);
  }

  // Streams out all that is left.
  void finish() {
    while (next_ < count_) step();
  }

 private:
  const T* rows_ = nullptr;
  T* out_ = nullptr;
  int64_t stride_ = 0, out_stride_ = 0, count_ = 0, values_ = 0, rows_per_step_ = 1, next_ = 0;
  bool whole_lines_ = false;
};

// Orders this thread's streaming stores before its later stores (and hence
// before the parallel loop's join).
inline void stream_fence() {
#if defined(PGN_HAVE_STREAM_STORES)
  _mm_sfence();
#endif
}

}  // namespace pgnface
