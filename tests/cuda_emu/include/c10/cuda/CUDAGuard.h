// Emulator stub of c10/cuda/CUDAGuard.h: a guard the launch checks can see.
#pragma once

#include <c10/core/Device.h>

#include "cuda_emu/runtime.h"

namespace c10::cuda {

struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
  explicit CUDAGuard(c10::DeviceIndex) {}
  cuda_emu::DeviceGuard guard;
};

struct OptionalCUDAGuard {
  explicit OptionalCUDAGuard(std::optional<c10::Device>) {}
  cuda_emu::DeviceGuard guard;
};

}  // namespace c10::cuda
