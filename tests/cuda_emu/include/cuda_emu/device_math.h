// Device intrinsics of the CUDA math library, for the emulator: the
// round-to-nearest arithmetic (__fmul_rn and friends) that never fuses into an
// FMA, conversions and reinterpretations, and __ldg.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace cuda_emu {
// Keeps the compiler from contracting the rounded result into a later
// operation, as the _rn intrinsics guarantee on the GPU.
template <typename T>
inline T rounded(T r) {
#if defined(__x86_64__)
  __asm__("" : "+x"(r));
#elif defined(__aarch64__)
  __asm__("" : "+w"(r));
#else
  __asm__("" : "+m"(r));
#endif
  return r;
}
template <typename To, typename From>
inline To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}
}  // namespace cuda_emu

// CUDA's math functions are global; the C++ library's classifications are std::.
using std::isfinite;
using std::isinf;
using std::isnan;

inline float __fmul_rn(float a, float b) { return cuda_emu::rounded(a * b); }
inline double __dmul_rn(double a, double b) { return cuda_emu::rounded(a * b); }
inline float __fadd_rn(float a, float b) { return cuda_emu::rounded(a + b); }
inline double __dadd_rn(double a, double b) { return cuda_emu::rounded(a + b); }
inline float __fsub_rn(float a, float b) { return cuda_emu::rounded(a - b); }
inline double __dsub_rn(double a, double b) { return cuda_emu::rounded(a - b); }
inline float __fdiv_rn(float a, float b) { return cuda_emu::rounded(a / b); }
inline double __ddiv_rn(double a, double b) { return cuda_emu::rounded(a / b); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __frcp_rn(float a) { return cuda_emu::rounded(1.0f / a); }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline long long __float2ll_rn(float v) { return std::llrint(v); }
inline long long __double2ll_rn(double v) { return std::llrint(v); }
inline int __float2int_rn(float v) { return static_cast<int>(std::lrint(v)); }
inline int __double2int_rn(double v) { return static_cast<int>(std::lrint(v)); }
inline unsigned __float_as_uint(float v) { return cuda_emu::bit_cast<unsigned>(v); }
inline int __float_as_int(float v) { return cuda_emu::bit_cast<int>(v); }
inline float __uint_as_float(unsigned v) { return cuda_emu::bit_cast<float>(v); }
inline float __int_as_float(int v) { return cuda_emu::bit_cast<float>(v); }
inline long long __double_as_longlong(double v) { return cuda_emu::bit_cast<long long>(v); }
inline double __longlong_as_double(long long v) { return cuda_emu::bit_cast<double>(v); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline float __saturatef(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }

// Read-only cache loads read global memory like any load (and are checked so).
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
