// Value checks fused into the kernels (check_values), device-neutral part.
//
// Every forward op takes `int check` (kCheckOff / kCheckRecord / kCheckRaise)
// and returns a status word, an int32 tensor [1] on the op's device. The
// kernels test the values they read anyway, at their first read, and OR a bit
// per failing argument into the word (bit values are listed per op in
// csrc/ext.cpp); the SIMD CPU path of similarity_align tests its first pass's
// sums and reads only a failing item again, through the scalar path, to name
// the argument (similarity_align_cpu.cpp, align_lanes). The host side
// (status_host.h) then raises (CPU) or issues an asynchronous device-side
// assertion (CUDA): no host synchronisation, no data-dependent Python, so the
// checks run under torch.compile and CUDA graph capture.
#pragma once

#include <cstdint>

#include "hostdevice.h"

namespace pgnface {

// The `check` argument of the forward ops.
constexpr int64_t kCheckOff = 0;     // no checks; the status word stays 0
constexpr int64_t kCheckRecord = 1;  // fill the status word, act on nothing
constexpr int64_t kCheckRaise = 2;   // fill it; CPU raises ValueError, CUDA asserts asynchronously

// x - x: 0 for finite x, NaN for NaN and +-Inf. A sum of probes is 0 exactly
// when every term is finite, so one add per value checks a whole array.
template <typename T>
PGN_HD T finite_probe(T x) {
  return x - x;
}

// Whether a sum (of probes, or of the values themselves) is finite.
template <typename T>
PGN_HD bool sum_is_finite(T sum) {
  return sum - sum == T(0);
}

// ORs bits into the status word. Called only when an input is bad, so the
// atomic costs nothing on valid inputs; bits only ever get set, so the order
// of concurrent callers does not matter.
PGN_HD void flag_status(int32_t* status, int32_t bits) {
#if defined(__CUDA_ARCH__)
  atomicOr(status, bits);
#else
  __atomic_fetch_or(status, bits, __ATOMIC_RELAXED);
#endif
}

}  // namespace pgnface

namespace pgnface {

// Whole-array checks split over the threads of a launch (grid-stride: thread
// `first` of `stride` reads elements first, first + stride, ...), so a kernel
// checks an input it does not otherwise read whole without another launch; the
// CPU twins call them with first = 0, stride = 1 (or per parallel task).

// Whether x[first], x[first + stride], ... < n are all finite.
template <typename T>
PGN_HD bool finite_share(const T* x, int64_t n, int64_t first, int64_t stride) {
  T probe = T(0);
  for (int64_t i = first; i < n; i += stride) probe += finite_probe(x[i]);
  return sum_is_finite(probe);
}

// Whether index[first], index[first + stride], ... < n all lie in [0, size).
PGN_HD bool index_share_in_range(const int32_t* index, int64_t n, int64_t size, int64_t first,
                                 int64_t stride) {
  bool ok = true;
  for (int64_t i = first; i < n; i += stride) ok &= index[i] >= 0 && index[i] < size;
  return ok;
}

}  // namespace pgnface
