// Entry points of the fused 3DMM vertex synthesis op (pgnface::synthesize).
// Schemas are declared in csrc/ext.cpp; the device-neutral prologues live in
// synthesize.cpp, the CPU implementations in synthesize_cpu.cpp and the CUDA
// ones in synthesize_cuda.cu.
//
// Shapes: mean [N,3], basis [N,3,K], coeffs [B,K], rotation [B,3,3],
// scale [B], translation [B,3]; all one floating dtype, one device.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace pgnface {

// Checked, contiguous inputs and the uninitialised output out [B,N,3].
struct SynthesizeCall {
  at::Tensor mean, basis, coeffs, rotation, scale, translation;
  at::Tensor out;
  int64_t B, N, K;
};
SynthesizeCall synthesize_prologue(const at::Tensor& mean, const at::Tensor& basis,
                                   const at::Tensor& coeffs, const at::Tensor& rotation,
                                   const at::Tensor& scale, const at::Tensor& translation);

// Checked, contiguous backward inputs and the zeroed pose and coefficient
// gradients; grad_mean / grad_basis are left to each device. out is the
// forward's output, from which the pose gradients are formed.
struct SynthesizeBackwardCall {
  at::Tensor grad_out, out, mean, basis, coeffs, rotation, scale, translation;
  at::Tensor grad_coeffs, grad_rotation, grad_scale, grad_translation;
  int64_t B, N, K;
};
SynthesizeBackwardCall synthesize_backward_prologue(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& mean,
    const at::Tensor& basis, const at::Tensor& coeffs, const at::Tensor& rotation,
    const at::Tensor& scale, const at::Tensor& translation);

// Returns (s * R (mean + basis @ c) + t as [B,N,3], status); status bits
// (common/status.h): 1 coeffs, 2 rotation, 4 scale, 8 translation non-finite.
std::tuple<at::Tensor, at::Tensor> synthesize_cpu(const at::Tensor& mean, const at::Tensor& basis,
                                                  const at::Tensor& coeffs,
                                                  const at::Tensor& rotation,
                                                  const at::Tensor& scale,
                                                  const at::Tensor& translation, int64_t check);

// Acts on the status word of a synthesize call (common/status_host.h).
void synthesize_act_on_status(const at::Tensor& status, int64_t check, const SynthesizeCall& call);

// The model's scale max_n |mean_n|_inf as a 0-dim tensor on mean's device
// (0 for an empty mesh): the X of morphable::output_path. A maximum, so it is
// exact whatever the reduction order.
at::Tensor synthesize_model_scale(const at::Tensor& mean);

// Returns (grad_mean [N,3], grad_basis [N,3,K], grad_coeffs [B,K],
// grad_rotation [B,3,3], grad_scale [B], grad_translation [B,3]) given the
// upstream gradient grad_out and the forward's output out, both [B,N,3].
// grad_mean / grad_basis are empty tensors unless need_model_grad is true.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
synthesize_backward_cpu(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& mean,
                        const at::Tensor& basis, const at::Tensor& coeffs,
                        const at::Tensor& rotation, const at::Tensor& scale,
                        const at::Tensor& translation, bool need_model_grad);

#ifdef WITH_CUDA
// The CUDA entry points (synthesize_cuda.cu), registered in csrc/cuda_ops.cpp.
std::tuple<at::Tensor, at::Tensor> synthesize_cuda(const at::Tensor& mean, const at::Tensor& basis,
                                                   const at::Tensor& coeffs,
                                                   const at::Tensor& rotation,
                                                   const at::Tensor& scale,
                                                   const at::Tensor& translation, int64_t check);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
synthesize_backward_cuda(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& mean,
                         const at::Tensor& basis, const at::Tensor& coeffs,
                         const at::Tensor& rotation, const at::Tensor& scale,
                         const at::Tensor& translation, bool need_model_grad);
#endif

}  // namespace pgnface
