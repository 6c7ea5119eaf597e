// Emulator stub of ATen/cuda/CUDAContext.h: the current stream, the device's
// properties and the launch check, as the emulator sees them.
#pragma once

#include <c10/core/Device.h>

#include "cuda_emu/runtime.h"

namespace at::cuda {

struct CUDAStream {
  operator cudaStream_t() const { return cuda_emu::current_stream(); }
  cudaStream_t stream() const { return cuda_emu::current_stream(); }
};

inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return {}; }
inline const cudaDeviceProp* getCurrentDeviceProperties() { return cuda_emu::device_properties(); }

}  // namespace at::cuda

#define C10_CUDA_KERNEL_LAUNCH_CHECK() ::cuda_emu::launch_check()
#define C10_CUDA_CHECK(expr) (void)(expr)
