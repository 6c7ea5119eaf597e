// SIMD lane types for the CPU twins: the shared __host__ __device__ math of
// an op, written for a lane type (common/scalar_math.h), instantiated with
// LaneVec<T> runs Simd<T>::width independent problems at once, one per lane.
// Only used inside PGN_CPU_CLONES functions (see common/cpu_simd.h), which
// compile it once for baseline x86-64 and once for x86-64-v3 (AVX2 + FMA).
#pragma once

#include <cmath>

#include "cpu_simd.h"
#include "scalar_math.h"

#if defined(__GNUC__) || defined(__clang__)
// Inlines everything a function calls, so that the shared templates (only
// `inline`) are compiled with the ISA of the PGN_CPU_CLONES clone calling them.
#define PGN_FLATTEN __attribute__((flatten))
#else
#define PGN_FLATTEN
#endif

namespace pgnface {

// Whether the CPU twins take their SIMD-across-the-batch paths (true unless a
// test switched them off with torch.ops.pgnface.set_cpu_simd; csrc/ext.cpp).
bool cpu_simd_enabled();

// Comparison results of the 256-bit vectors: all bits set where it holds.
typedef int i32x8 __attribute__((vector_size(32)));
typedef long long i64x4 __attribute__((vector_size(32)));
template <typename T>
struct SimdMask;
template <>
struct SimdMask<float> {
  using type = i32x8;
};
template <>
struct SimdMask<double> {
  using type = i64x4;
};

// A lane type (common/scalar_math.h) of Simd<T>::width independent problems:
// the shared __host__ __device__ math instantiated with LaneVec<T> runs one
// problem per SIMD lane, with the same operations in the same order as the
// scalar instantiation, so every lane's result is bitwise that of the scalar
// code compiled the same way. Only +, -, *, /, sqrt, comparisons and selects
// are used, all exactly rounded per lane.
template <typename T>
struct LaneMask {
  typename SimdMask<T>::type m;
  friend PGN_ALWAYS_INLINE LaneMask operator!(LaneMask a) { return {~a.m}; }
  friend PGN_ALWAYS_INLINE LaneMask operator&&(LaneMask a, LaneMask b) { return {a.m & b.m}; }
  friend PGN_ALWAYS_INLINE LaneMask operator||(LaneMask a, LaneMask b) { return {a.m | b.m}; }
};

template <typename T>
struct LaneVec {
  using V = typename Simd<T>::type;
  static constexpr int width = Simd<T>::width;
  V v;

  // Zero, not indeterminate: the shared math declares lane arrays it fills
  // under lane masks (svd3x3_kernel.h's u[1]) and the loaders fill lanes one
  // at a time, which GCC cannot prove complete (-Wmaybe-uninitialized); the
  // zeroing of a vector that is then overwritten compiles away.
  PGN_ALWAYS_INLINE LaneVec() : v{} {}
  // Broadcast (x - 0 is x for every x, -0 included).
  PGN_ALWAYS_INLINE LaneVec(T s) : v(s - V{}) {}
  PGN_ALWAYS_INLINE static LaneVec of(V x) {
    LaneVec r;
    r.v = x;
    return r;
  }
  PGN_ALWAYS_INLINE static LaneVec load(const T* p) { return of(simd_load(p)); }
  PGN_ALWAYS_INLINE void store(T* p) const { simd_store(p, v); }
  PGN_ALWAYS_INLINE T operator[](int lane) const { return v[lane]; }
  PGN_ALWAYS_INLINE void set(int lane, T x) { v[lane] = x; }

  friend PGN_ALWAYS_INLINE LaneVec operator+(LaneVec a, LaneVec b) { return of(a.v + b.v); }
  friend PGN_ALWAYS_INLINE LaneVec operator-(LaneVec a, LaneVec b) { return of(a.v - b.v); }
  friend PGN_ALWAYS_INLINE LaneVec operator*(LaneVec a, LaneVec b) { return of(a.v * b.v); }
  friend PGN_ALWAYS_INLINE LaneVec operator/(LaneVec a, LaneVec b) { return of(a.v / b.v); }
  friend PGN_ALWAYS_INLINE LaneVec operator-(LaneVec a) { return of(-a.v); }
  PGN_ALWAYS_INLINE LaneVec& operator+=(LaneVec b) { return v += b.v, *this; }
  PGN_ALWAYS_INLINE LaneVec& operator-=(LaneVec b) { return v -= b.v, *this; }
  PGN_ALWAYS_INLINE LaneVec& operator*=(LaneVec b) { return v *= b.v, *this; }
  friend PGN_ALWAYS_INLINE LaneMask<T> operator<(LaneVec a, LaneVec b) { return {a.v < b.v}; }
  friend PGN_ALWAYS_INLINE LaneMask<T> operator>(LaneVec a, LaneVec b) { return {a.v > b.v}; }
  friend PGN_ALWAYS_INLINE LaneMask<T> operator<=(LaneVec a, LaneVec b) { return {a.v <= b.v}; }
  friend PGN_ALWAYS_INLINE LaneMask<T> operator==(LaneVec a, LaneVec b) { return {a.v == b.v}; }
};

template <typename T>
struct LaneTraits<LaneVec<T>> {
  using scalar = T;
};

template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> lane_select(LaneMask<T> m, LaneVec<T> a, LaneVec<T> b) {
  return LaneVec<T>::of(m.m ? a.v : b.v);
}

template <typename T>
PGN_ALWAYS_INLINE bool lane_any(LaneMask<T> m) {
  long long acc = 0;  // an OR over lanes
  for (int l = 0; l < Simd<T>::width; ++l) acc |= m.m[l];
  return acc != 0;
}

template <typename T>
PGN_ALWAYS_INLINE bool lane_all(LaneMask<T> m) {
  return !lane_any(!m);
}

// Per-lane square root: SSE's sqrtps / sqrtpd on each 128-bit half (baseline
// x86-64, so in both clones; exactly rounded like std::sqrt). A plain loop of
// std::sqrt would stay scalar: without -ffast-math it may set errno.
template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> pgn_sqrt(LaneVec<T> x) {
  LaneVec<T> r = x;  // every lane overwritten below
#if defined(__x86_64__) && defined(__GNUC__)
  typedef T half __attribute__((vector_size(16)));
  half lo, hi;
  std::memcpy(&lo, &x.v, 16);
  std::memcpy(&hi, reinterpret_cast<const char*>(&x.v) + 16, 16);
  if constexpr (sizeof(T) == 4) {
    lo = __builtin_ia32_sqrtps(lo);
    hi = __builtin_ia32_sqrtps(hi);
  } else {
    lo = __builtin_ia32_sqrtpd(lo);
    hi = __builtin_ia32_sqrtpd(hi);
  }
  std::memcpy(&r.v, &lo, 16);
  std::memcpy(reinterpret_cast<char*>(&r.v) + 16, &hi, 16);
#else
  for (int l = 0; l < Simd<T>::width; ++l) r.v[l] = std::sqrt(x.v[l]);
#endif
  return r;
}

// The scalar definitions of scalar_math.h, lane by lane.
template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> pgn_abs(LaneVec<T> x) {
  return lane_select(x < LaneVec<T>(T(0)), -x, x);
}
template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> pgn_min(LaneVec<T> a, LaneVec<T> b) {
  return lane_select(b < a, b, a);
}
template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> pgn_max(LaneVec<T> a, LaneVec<T> b) {
  return lane_select(a < b, b, a);
}

// Sum of the lanes, in a fixed order.
template <typename T>
PGN_ALWAYS_INLINE T lane_sum(LaneVec<T> x) {
  T s = x.v[0];
  for (int l = 1; l < Simd<T>::width; ++l) s += x.v[l];
  return s;
}

// Transposes n <= width records of N values (record l at p + N l) into N lane
// vectors, lane l of out[e] holding record l's value e. Lanes past n repeat
// record n - 1, so they hold a valid problem whose result is not stored.
// The lanes are gathered in a scalar buffer and loaded whole, so no vector is
// ever written lane by lane from an indeterminate value (which GCC reports as
// -Wmaybe-uninitialized, and which is undefined for a default-built LaneVec).
template <int N, typename T>
PGN_ALWAYS_INLINE void load_lanes(const T* p, int n, LaneVec<T>* out) {
  constexpr int W = Simd<T>::width;
  T buf[N][W];
  if (n == W) {
    for (int l = 0; l < W; ++l) {
      for (int e = 0; e < N; ++e) buf[e][l] = p[N * l + e];
    }
  } else {
    for (int l = 0; l < W; ++l) {
      const T* q = p + N * (l < n ? l : n - 1);
      for (int e = 0; e < N; ++e) buf[e][l] = q[e];
    }
  }
  for (int e = 0; e < N; ++e) out[e] = LaneVec<T>::load(buf[e]);
}

// The inverse of load_lanes for the first n lanes.
template <int N, typename T>
PGN_ALWAYS_INLINE void store_lanes(const LaneVec<T>* in, int n, T* p) {
  constexpr int W = Simd<T>::width;
  if (n == W) {
    for (int l = 0; l < W; ++l) {
      for (int e = 0; e < N; ++e) p[N * l + e] = in[e].v[l];
    }
    return;
  }
  for (int l = 0; l < n; ++l) {
    for (int e = 0; e < N; ++e) p[N * l + e] = in[e].v[l];
  }
}

}  // namespace pgnface
