// Scalar math that compiles to the right intrinsic on both host and device,
// for float and double alike (CUDA has no std:: overloads in device code).
#pragma once

#include <cmath>

#include "hostdevice.h"

namespace pgnface {

template <typename T>
PGN_HD T pgn_sqrt(T x) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    return sqrtf(x);
  } else {
    return sqrt(x);
  }
#else
  return std::sqrt(x);
#endif
}

template <typename T>
PGN_HD T pgn_abs(T x) {
  return x < T(0) ? -x : x;
}

template <typename T>
PGN_HD T pgn_min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
PGN_HD T pgn_max(T a, T b) {
  return a < b ? b : a;
}

template <typename T>
PGN_HD void pgn_swap(T& a, T& b) {
  const T tmp = a;
  a = b;
  b = tmp;
}

// Lane types. The shared per-element math is written for a lane type L that
// holds either one value (L = float or double: CUDA threads and the CPU's
// scalar path) or one value of each of several independent problems (a SIMD
// vector type of common/cpu_simd.h, whose overloads of the functions below
// are found by argument-dependent lookup). Branches on data become selects
// (lane_select), and early exits test lane_any, which for a scalar lane is the
// original branch: scalar code keeps its control flow and arithmetic.
template <typename L>
struct LaneTraits {
  using scalar = L;  // the floating type of one lane
};
template <typename L>
using lane_scalar_t = typename LaneTraits<L>::scalar;
// What comparing two L gives: bool for scalar lanes, a lane mask otherwise.
template <typename L>
using lane_mask_t = decltype(L() < L());

PGN_HD bool lane_any(bool m) { return m; }
PGN_HD bool lane_all(bool m) { return m; }
template <typename T>
PGN_HD T lane_select(bool m, T a, T b) {
  return m ? a : b;
}

// Machine epsilon of float / double as compile-time constants,
template <typename T>
struct Eps;
// and the smallest normal number.
template <>
struct Eps<float> {
  static constexpr float value = 1.1920929e-7f;
  static constexpr float min_normal = 1.17549435e-38f;
};
template <>
struct Eps<double> {
  static constexpr double value = 2.220446049250313e-16;
  static constexpr double min_normal = 2.2250738585072014e-308;
};

}  // namespace pgnface
