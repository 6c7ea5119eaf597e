// Entry points of the batched 3x3 SVD (pgnface::svd3x3) and its backward op.
// Schemas are declared in csrc/ext.cpp; the device-neutral prologues live in
// svd3x3.cpp, the CPU implementations in svd3x3_cpu.cpp and the CUDA ones in
// svd3x3_cuda.cu.
//
// Shapes: M, U, V [B,3,3], S [B,3]; all one floating dtype, one device.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace pgnface {

// Checked, contiguous M and the uninitialised outputs U, S, V.
struct Svd3x3Call {
  at::Tensor M, U, S, V;
  int64_t B;
};
Svd3x3Call svd3x3_prologue(const at::Tensor& M);

// Checked, contiguous backward inputs and the uninitialised grad_M.
struct Svd3x3BackwardCall {
  at::Tensor grad_U, grad_S, grad_V, U, S, V, grad_M;
  int64_t B;
};
Svd3x3BackwardCall svd3x3_backward_prologue(const at::Tensor& grad_U, const at::Tensor& grad_S,
                                            const at::Tensor& grad_V, const at::Tensor& U,
                                            const at::Tensor& S, const at::Tensor& V);

// Returns (U, S, V, status) with M = U diag(S) V^T, S descending and
// non-negative; status bit 1: M holds NaN or Inf (see common/status.h).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> svd3x3_cpu(const at::Tensor& M,
                                                                      int64_t check);

// Acts on the status word of an svd3x3 call (common/status_host.h).
void svd3x3_act_on_status(const at::Tensor& status, int64_t check, const at::Tensor& M);

// Returns dL/dM [B,3,3] from dL/dU, dL/dS, dL/dV and the forward's outputs.
at::Tensor svd3x3_backward_cpu(const at::Tensor& grad_U, const at::Tensor& grad_S,
                               const at::Tensor& grad_V, const at::Tensor& U, const at::Tensor& S,
                               const at::Tensor& V);

#ifdef WITH_CUDA
// The CUDA entry points (svd3x3_cuda.cu), registered in csrc/cuda_ops.cpp.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> svd3x3_cuda(const at::Tensor& M,
                                                                       int64_t check);
at::Tensor svd3x3_backward_cuda(const at::Tensor& grad_U, const at::Tensor& grad_S,
                                const at::Tensor& grad_V, const at::Tensor& U, const at::Tensor& S,
                                const at::Tensor& V);
#endif

}  // namespace pgnface
