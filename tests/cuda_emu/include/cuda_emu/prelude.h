// Force-included first into every emulated .cu translation unit (build.py):
// the torch headers, compiled as host code, then the CUDA dialect and the
// device-only branches (__CUDACC__, __CUDA_ARCH__) for the kernel source.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/library.h>
#include <torch/types.h>

#include "cuda_emu/runtime.h"
// The stubs of tests/cuda_emu/include (searched before torch's headers).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#define __CUDACC__ 1
#define __CUDA_ARCH__ 900

// CPU tensors stand in for device tensors in the emulated entry points.
#define is_cuda() is_cpu()

#include "cuda_emu/library_remap.h"
