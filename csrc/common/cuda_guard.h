// The guard every CUDA entry point opens with, after its device-neutral
// prologue: checks that the op's lead tensor is a CUDA tensor and makes its
// device current for the rest of the call (allocations, stream, launches).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>

namespace pgnface {

// op: the op's name, for the error message.
inline c10::cuda::CUDAGuard cuda_entry_guard(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.is_cuda(), op, " (CUDA): expected CUDA tensors, got ", x.device());
  return c10::cuda::CUDAGuard(x.device());
}

}  // namespace pgnface
