// Entry points of the fused 3DMM vertex synthesis op (pgnface::synthesize).
// Schemas are declared in csrc/ext.cpp; the CPU implementations are registered
// in morphable_cpu.cpp and the CUDA ones in morphable_cuda.cu.
//
// Shapes: mean [N,3], basis [N,3,K], coeffs [B,K], rotation [B,3,3],
// scale [B], translation [B,3]; all one floating dtype, one device.
#pragma once

#include <torch/types.h>

#include <tuple>

namespace pgnface {

// Returns s * R (mean + basis @ c) + t as [B,N,3].
at::Tensor synthesize_cpu(const at::Tensor& mean, const at::Tensor& basis,
                          const at::Tensor& coeffs, const at::Tensor& rotation,
                          const at::Tensor& scale, const at::Tensor& translation);

// Returns (grad_mean [N,3], grad_basis [N,3,K], grad_coeffs [B,K],
// grad_rotation [B,3,3], grad_scale [B], grad_translation [B,3]).
// grad_mean / grad_basis are empty tensors unless need_model_grad is true.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
synthesize_backward_cpu(const at::Tensor& grad_out, const at::Tensor& mean,
                        const at::Tensor& basis, const at::Tensor& coeffs,
                        const at::Tensor& rotation, const at::Tensor& scale,
                        const at::Tensor& translation, bool need_model_grad);

// Validates the forward arguments (shared by the CPU and CUDA entry points).
void check_synthesize_args(const at::Tensor& mean, const at::Tensor& basis,
                           const at::Tensor& coeffs, const at::Tensor& rotation,
                           const at::Tensor& scale, const at::Tensor& translation);

}  // namespace pgnface
