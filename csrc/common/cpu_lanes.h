// SIMD lane types for the CPU twins: the shared __host__ __device__ math of
// an op, written for a lane type (common/scalar_math.h), instantiated with
// LaneVec<T> runs Simd<T>::width independent problems at once, one per lane.
// Only used inside PGN_CPU_CLONES functions (see common/cpu_simd.h), which
// compile it once for baseline x86-64 and once for x86-64-v3 (AVX2 + FMA).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

// 0, 1, ..., width - 1: each lane's index, as a mask-type vector.
template <typename T>
PGN_ALWAYS_INLINE typename SimdMask<T>::type lane_indices() {
  if constexpr (sizeof(T) == 4) {
    return i32x8{0, 1, 2, 3, 4, 5, 6, 7};
  } else {
    return i64x4{0, 1, 2, 3};
  }
}

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
#if defined(__x86_64__) && defined(__GNUC__)
  // OR of the two 128-bit halves, then the lanes' sign bits (SSE's movmskps /
  // movmskpd, baseline x86-64): the mask stays in registers (mask lanes are
  // all ones or all zeros, so the sign bit is the lane).
  if constexpr (sizeof(T) == 4) {
    typedef int i32x4 __attribute__((vector_size(16)));
    typedef float f32x4 __attribute__((vector_size(16)));
    const i32x4 h = __builtin_shufflevector(m.m, m.m, 0, 1, 2, 3) |
                    __builtin_shufflevector(m.m, m.m, 4, 5, 6, 7);
    return __builtin_ia32_movmskps((f32x4)h) != 0;
  } else {
    typedef long long i64x2 __attribute__((vector_size(16)));
    typedef double f64x2 __attribute__((vector_size(16)));
    const i64x2 h =
        __builtin_shufflevector(m.m, m.m, 0, 1) | __builtin_shufflevector(m.m, m.m, 2, 3);
    return __builtin_ia32_movmskpd((f64x2)h) != 0;
  }
#else
  long long acc = 0;  // an OR over lanes
  for (int l = 0; l < Simd<T>::width; ++l) acc |= m.m[l];
  return acc != 0;
#endif
}

template <typename T>
PGN_ALWAYS_INLINE bool lane_all(LaneMask<T> m) {
  return !lane_any(!m);
}

// Per-lane square root, exactly rounded like std::sqrt. Built with
// -fno-math-errno (setup.py), the plain loop compiles to one sqrtps / sqrtpd
// of the clone's width; with errno on it would stay scalar, so then SSE's
// sqrtps / sqrtpd (baseline x86-64) take each 128-bit half, in registers.
template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> pgn_sqrt(LaneVec<T> x) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__NO_MATH_ERRNO__)
  if constexpr (sizeof(T) == 4) {
    const auto lo = __builtin_ia32_sqrtps(__builtin_shufflevector(x.v, x.v, 0, 1, 2, 3));
    const auto hi = __builtin_ia32_sqrtps(__builtin_shufflevector(x.v, x.v, 4, 5, 6, 7));
    return LaneVec<T>::of(__builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7));
  } else {
    const auto lo = __builtin_ia32_sqrtpd(__builtin_shufflevector(x.v, x.v, 0, 1));
    const auto hi = __builtin_ia32_sqrtpd(__builtin_shufflevector(x.v, x.v, 2, 3));
    return LaneVec<T>::of(__builtin_shufflevector(lo, hi, 0, 1, 2, 3));
  }
#else
  LaneVec<T> r = x;  // every lane overwritten below
  for (int l = 0; l < Simd<T>::width; ++l) r.v[l] = std::sqrt(x.v[l]);
  return r;
#endif
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

// Records of 4 values (x, y, z, w) to and from 4 lane vectors, lane l
// holding record l, by shuffles in registers: the scalar buffer of load_lanes
// makes a vector load wait for the scalar stores it reads, which costs more
// than the work on the lanes when that work is a few operations.
// (__builtin_shufflevector: GCC 12+ and Clang, as common/cpu_points.h.)
// Transposes 4 vectors holding 8 / 4 records of 4 floats / doubles in order
// (two records per float vector, one per double vector) into out[0..3].
PGN_ALWAYS_INLINE void transpose_records4(const f32x8 v[4], LaneVec<float> out[4]) {
  // a: x and y of records 0-3, b: their z and w; c, d: the same for records 4-7.
  const f32x8 a = __builtin_shufflevector(v[0], v[1], 0, 4, 8, 12, 1, 5, 9, 13);
  const f32x8 b = __builtin_shufflevector(v[0], v[1], 2, 6, 10, 14, 3, 7, 11, 15);
  const f32x8 c = __builtin_shufflevector(v[2], v[3], 0, 4, 8, 12, 1, 5, 9, 13);
  const f32x8 d = __builtin_shufflevector(v[2], v[3], 2, 6, 10, 14, 3, 7, 11, 15);
  out[0].v = __builtin_shufflevector(a, c, 0, 1, 2, 3, 8, 9, 10, 11);
  out[1].v = __builtin_shufflevector(a, c, 4, 5, 6, 7, 12, 13, 14, 15);
  out[2].v = __builtin_shufflevector(b, d, 0, 1, 2, 3, 8, 9, 10, 11);
  out[3].v = __builtin_shufflevector(b, d, 4, 5, 6, 7, 12, 13, 14, 15);
}
PGN_ALWAYS_INLINE void transpose_records4(const f64x4 v[4], LaneVec<double> out[4]) {
  const f64x4 a = __builtin_shufflevector(v[0], v[1], 0, 4, 2, 6);  // x0 x1 z0 z1
  const f64x4 b = __builtin_shufflevector(v[0], v[1], 1, 5, 3, 7);  // y0 y1 w0 w1
  const f64x4 c = __builtin_shufflevector(v[2], v[3], 0, 4, 2, 6);
  const f64x4 d = __builtin_shufflevector(v[2], v[3], 1, 5, 3, 7);
  out[0].v = __builtin_shufflevector(a, c, 0, 1, 4, 5);
  out[1].v = __builtin_shufflevector(b, d, 0, 1, 4, 5);
  out[2].v = __builtin_shufflevector(a, c, 2, 3, 6, 7);
  out[3].v = __builtin_shufflevector(b, d, 2, 3, 6, 7);
}
// The inverse: 4 lane vectors to 4 vectors of records in order.
PGN_ALWAYS_INLINE void untranspose_records4(const LaneVec<float> in[4], f32x8 v[4]) {
  const f32x8 a = __builtin_shufflevector(in[0].v, in[1].v, 0, 8, 1, 9, 2, 10, 3, 11);  // xy 0-3
  const f32x8 b = __builtin_shufflevector(in[0].v, in[1].v, 4, 12, 5, 13, 6, 14, 7, 15);
  const f32x8 c = __builtin_shufflevector(in[2].v, in[3].v, 0, 8, 1, 9, 2, 10, 3, 11);  // zw 0-3
  const f32x8 d = __builtin_shufflevector(in[2].v, in[3].v, 4, 12, 5, 13, 6, 14, 7, 15);
  v[0] = __builtin_shufflevector(a, c, 0, 1, 8, 9, 2, 3, 10, 11);
  v[1] = __builtin_shufflevector(a, c, 4, 5, 12, 13, 6, 7, 14, 15);
  v[2] = __builtin_shufflevector(b, d, 0, 1, 8, 9, 2, 3, 10, 11);
  v[3] = __builtin_shufflevector(b, d, 4, 5, 12, 13, 6, 7, 14, 15);
}
PGN_ALWAYS_INLINE void untranspose_records4(const LaneVec<double> in[4], f64x4 v[4]) {
  const f64x4 a = __builtin_shufflevector(in[0].v, in[1].v, 0, 4, 2, 6);  // x0 y0 x2 y2
  const f64x4 b = __builtin_shufflevector(in[0].v, in[1].v, 1, 5, 3, 7);  // x1 y1 x3 y3
  const f64x4 c = __builtin_shufflevector(in[2].v, in[3].v, 0, 4, 2, 6);  // z0 w0 z2 w2
  const f64x4 d = __builtin_shufflevector(in[2].v, in[3].v, 1, 5, 3, 7);
  v[0] = __builtin_shufflevector(a, c, 0, 1, 4, 5);
  v[1] = __builtin_shufflevector(b, d, 0, 1, 4, 5);
  v[2] = __builtin_shufflevector(a, c, 2, 3, 6, 7);
  v[3] = __builtin_shufflevector(b, d, 2, 3, 6, 7);
}

// Loads width records of 4 values, record l at p + 4 l, into out[0..3].
template <typename T>
PGN_ALWAYS_INLINE void load_records4(const T* p, LaneVec<T> out[4]) {
  typename Simd<T>::type v[4];
  for (int k = 0; k < 4; ++k) v[k] = simd_load(p + k * Simd<T>::width);
  transpose_records4(v, out);
}

// Stores in[0..3] as width records of 4 values at p.
template <typename T>
PGN_ALWAYS_INLINE void store_records4(const LaneVec<T> in[4], T* p) {
  typename Simd<T>::type v[4];
  untranspose_records4(in, v);
  for (int k = 0; k < 4; ++k) simd_store(p + k * Simd<T>::width, v[k]);
}

// Loads the records of 4 values at rec[0..width) into out[0..3].
template <typename T>
PGN_ALWAYS_INLINE void gather_records4(const T* const* rec, LaneVec<T> out[4]) {
  typename Simd<T>::type v[4];
  if constexpr (sizeof(T) == sizeof(float)) {
    typedef float f32x4 __attribute__((vector_size(16)));
    for (int k = 0; k < 4; ++k) {
      f32x4 lo, hi;
      std::memcpy(&lo, rec[2 * k], sizeof(lo));
      std::memcpy(&hi, rec[2 * k + 1], sizeof(hi));
      v[k] = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
    }
  } else {
    for (int k = 0; k < 4; ++k) v[k] = simd_load(rec[k]);
  }
  transpose_records4(v, out);
}

// The even and odd int32 elements of 16 consecutive ones (8 (x, y) pairs
// at p) as two vectors: x holds the first of each pair, y the second.
PGN_ALWAYS_INLINE void deinterleave_pairs(const void* p, i32x8& x, i32x8& y) {
  i32x8 lo, hi;
  std::memcpy(&lo, p, sizeof(lo));
  std::memcpy(&hi, static_cast<const char*>(p) + sizeof(lo), sizeof(hi));
  x = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
  y = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
}

// Stores the lanes of x and y (8 or 4 int32 each) as (x, y) pairs at p.
template <typename I>
PGN_ALWAYS_INLINE void interleave_pairs(I x, I y, int32_t* p) {
  static_assert(sizeof(I) == 32 || sizeof(I) == 16, "8 or 4 int32 lanes");
  if constexpr (sizeof(I) == 32) {
    const i32x8 lo = __builtin_shufflevector(x, y, 0, 8, 1, 9, 2, 10, 3, 11);
    const i32x8 hi = __builtin_shufflevector(x, y, 4, 12, 5, 13, 6, 14, 7, 15);
    std::memcpy(p, &lo, sizeof(lo));
    std::memcpy(p + 8, &hi, sizeof(hi));
  } else {
    const i32x8 both = __builtin_shufflevector(x, y, 0, 4, 1, 5, 2, 6, 3, 7);
    std::memcpy(p, &both, sizeof(both));
  }
}

// Compaction of int32 lanes (GCC, whose __builtin_shuffle takes a run-time
// index vector: vpermd in the x86-64-v3 clone): a branch-free alternative to
// storing lane by lane under a mask. PGN_NO_LANE_COMPRESS selects the
// lane-by-lane stores that other compilers take.
#if defined(__GNUC__) && !defined(__clang__) && !defined(PGN_NO_LANE_COMPRESS)
#define PGN_HAVE_LANE_COMPRESS 1

// For each 8-bit lane mask, the indices of its set lanes in order, packed
// 4 bits per index.
struct CompressIndices {
  uint32_t packed[256];
  constexpr CompressIndices() : packed() {
    for (int m = 0; m < 256; ++m) {
      uint32_t p = 0;
      int n = 0;
      for (int l = 0; l < 8; ++l) {
        if ((m >> l) & 1) p |= static_cast<uint32_t>(l) << (4 * n++);
      }
      packed[m] = p;
    }
  }
};
inline constexpr CompressIndices kCompressIndices{};

// Bit l set where lane l of the mask m (all bits or none per lane) is set.
PGN_ALWAYS_INLINE unsigned lane_bits(i32x8 m) {
  i32x8 v = m & i32x8{1, 2, 4, 8, 16, 32, 64, 128};
  v |= __builtin_shuffle(v, i32x8{4, 5, 6, 7, 0, 1, 2, 3});
  v |= __builtin_shuffle(v, i32x8{2, 3, 0, 1, 6, 7, 4, 5});
  v |= __builtin_shuffle(v, i32x8{1, 0, 3, 2, 5, 4, 7, 6});
  return static_cast<unsigned>(v[0]);
}

// The lanes of v whose bits are set, moved to the front in order; the lanes
// after them are unspecified.
PGN_ALWAYS_INLINE i32x8 compress_lanes(i32x8 v, unsigned bits) {
  const i32x8 idx = ((i32x8{} + static_cast<int>(kCompressIndices.packed[bits & 255])) >>
                     i32x8{0, 4, 8, 12, 16, 20, 24, 28}) &
                    7;
  return __builtin_shuffle(v, idx);
}
#endif

}  // namespace pgnface
