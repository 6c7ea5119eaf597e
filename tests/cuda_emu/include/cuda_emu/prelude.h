// Force-included first into every emulated .cu translation unit (build.py):
// the torch headers the sources use, compiled as host code, then the CUDA
// dialect and the device-only branches (__CUDACC__, __CUDA_ARCH__) for the
// kernel source. The ops' registration is csrc/cuda_ops.cpp (build.py).
#pragma once

#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "cuda_emu/runtime.h"
// The stubs of tests/cuda_emu/include (searched before torch's headers).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#define __CUDACC__ 1
#define __CUDA_ARCH__ 900

// CPU tensors stand in for device tensors in the emulated entry points.
#define is_cuda() is_cpu()
