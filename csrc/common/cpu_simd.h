// Helpers for the CPU twins' hot loops.
//
// PGN_CPU_CLONES compiles a function twice on x86-64 with GCC/Clang: once for
// the baseline ISA and once for x86-64-v3 (AVX2 + FMA); the loader picks the
// best one at run time. A wheel built on one machine therefore stays portable
// while still vectorising 8 floats / 4 doubles per instruction where it can.
// PGN_ALWAYS_INLINE pulls the shared templates into those clones so they are
// compiled with the clone's ISA.
#pragma once

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(PGN_NO_CPU_CLONES)
#define PGN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
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

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using type = f32x8;
  static constexpr int width = 8;
};
template <>
struct Simd<double> {
  using type = f64x4;
  static constexpr int width = 4;
};

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
