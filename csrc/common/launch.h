// Kernel launch syntax that both nvcc and the CPU emulator of the CUDA
// execution model (tests/cuda_emu) compile:
//
//   PGN_LAUNCH(grid, block, shared_bytes, stream, kernel<T>)(args...);
//
// is `kernel<T><<<grid, block, shared_bytes, stream>>>(args...)` under nvcc.
// The kernel comes last so template arguments may contain commas.
#pragma once

#if defined(__CUDA_EMULATION__)
#define PGN_LAUNCH(grid, block, shmem, stream, ...) \
  PGN_EMU_LAUNCH(grid, block, shmem, stream, __VA_ARGS__)
#else
#define PGN_LAUNCH(grid, block, shmem, stream, ...) __VA_ARGS__<<<grid, block, shmem, stream>>>
#endif
