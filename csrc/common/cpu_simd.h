// Helpers for the CPU twins' hot loops.
//
// PGN_CPU_CLONES compiles a function twice on x86-64 with GCC/Clang: once for
// the baseline ISA and once for x86-64-v3 (AVX2 + FMA); the loader picks the
// best one at run time. A wheel built on one machine therefore stays portable
// while still vectorising 8 floats / 4 doubles per instruction where it can.
// PGN_ALWAYS_INLINE pulls the shared templates into those clones so they are
// compiled with the clone's ISA.
// PGN_CPU_V4 (defined where PGN_CPU_CLONES clones) compiles a function for
// x86-64-v4 (AVX-512 F/BW/DQ/VL): 16 floats / 8 doubles per instruction in 32
// registers. Callers choose such a function themselves, at run time
// (cpu_simd_width), so that kernels with a use for the wider vectors can keep
// 256-bit ones where those waste fewer lanes.
#pragma once

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(PGN_NO_CPU_CLONES)
#define PGN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define PGN_CPU_V4 __attribute__((target("arch=x86-64-v4")))
#else
#define PGN_CPU_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PGN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PGN_ALWAYS_INLINE inline
#endif

#include <cstring>

namespace pgnface {

// 256-bit vectors as GCC/Clang vector extensions: portable C++ that compiles
// to AVX2 in the x86-64-v3 clone and to SSE pairs in the baseline one.
typedef float f32x8 __attribute__((vector_size(32)));
typedef double f64x4 __attribute__((vector_size(32)));
// 512-bit vectors, for PGN_CPU_V4 functions only.
typedef float f32x16 __attribute__((vector_size(64)));
typedef double f64x8 __attribute__((vector_size(64)));

// Vector of T of the given size in bytes (32 or 64).
template <typename T, int Bytes>
struct SimdOf;
template <>
struct SimdOf<float, 32> {
  using type = f32x8;
};
template <>
struct SimdOf<double, 32> {
  using type = f64x4;
};
template <>
struct SimdOf<float, 64> {
  using type = f32x16;
};
template <>
struct SimdOf<double, 64> {
  using type = f64x8;
};

// The 256-bit vector of T (float or double) and its lane count.
template <typename T>
struct Simd {
  using type = typename SimdOf<T, 32>::type;
  static constexpr int width = 32 / sizeof(T);
};

// Widest vectors, in bits, that the CPU twins may use: the smaller of what
// the CPU and this build support (PGN_CPU_V4) and the limit a test sets with
// torch.ops.pgnface.set_cpu_simd_width (csrc/ext.cpp). 512 or 256.
int cpu_simd_width();

template <typename V, typename T>
PGN_ALWAYS_INLINE V vec_load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}

template <typename V, typename T>
PGN_ALWAYS_INLINE void vec_store(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));  // unaligned store
}

template <typename T>
PGN_ALWAYS_INLINE typename Simd<T>::type simd_load(const T* p) {
  typename Simd<T>::type v;
  std::memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}

template <typename T>
PGN_ALWAYS_INLINE void simd_store(T* p, typename Simd<T>::type v) {
  std::memcpy(p, &v, sizeof(v));  // unaligned store
}

}  // namespace pgnface
