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
