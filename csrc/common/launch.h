// Kernel launch syntax that both nvcc and the CPU emulator of the CUDA
// execution model (tests/cuda_emu) compile:
//
//   PGN_LAUNCH(grid, block, shared_bytes, stream, kernel<T>)(args...);
//
// is `kernel<T><<<grid, block, shared_bytes, stream>>>(args...)` under nvcc.
// The kernel comes last so template arguments may contain commas.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDA_EMULATION__)
#define PGN_LAUNCH(grid, block, shmem, stream, ...) \
  PGN_EMU_LAUNCH(grid, block, shmem, stream, __VA_ARGS__)
#else
#define PGN_LAUNCH(grid, block, shmem, stream, ...) __VA_ARGS__<<<grid, block, shmem, stream>>>
#endif

namespace pgnface {

// A launch grid from int64 block counts. dim3 holds unsigned ints, so a count
// past CUDA's limits (2^31 - 1 blocks along x, 65535 along y and z) would
// wrap silently into a smaller grid that skips work; this refuses it instead.
// op names the op in the error.
inline dim3 launch_grid(const char* op, int64_t x, int64_t y = 1, int64_t z = 1) {
  constexpr int64_t kMaxX = (int64_t{1} << 31) - 1, kMaxYZ = 65535;
  const std::string grid =
      std::to_string(x) + " x " + std::to_string(y) + " x " + std::to_string(z);
  if (!(x >= 1 && y >= 1 && z >= 1)) {
    throw std::invalid_argument(std::string(op) + " (CUDA): empty launch grid " + grid);
  }
  if (!(x <= kMaxX && y <= kMaxYZ && z <= kMaxYZ)) {
    throw std::invalid_argument(
        std::string(op) + " (CUDA): the input needs a grid of " + grid +
        " blocks, beyond CUDA's limits (2^31 - 1 x 65535 x 65535); split the batch");
  }
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

// The blocks of `threads` threads that cover `work` items, as a checked grid.
inline dim3 grid_for(const char* op, int64_t work, int threads) {
  return launch_grid(op, (work + threads - 1) / threads);
}

}  // namespace pgnface
