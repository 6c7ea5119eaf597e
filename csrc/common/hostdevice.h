// Qualifiers that let one inline function compile for both the CPU twin and
// the CUDA kernel. Per-element math lives in functions marked PGN_HD.
#pragma once

#if defined(__CUDACC__)
#define PGN_HD __host__ __device__ __forceinline__
#else
#define PGN_HD inline
#endif

// Asks the CUDA compiler to unroll the next loop; host compilers decide alone.
#if defined(__CUDACC__)
#define PGN_UNROLL _Pragma("unroll")
#else
#define PGN_UNROLL
#endif
