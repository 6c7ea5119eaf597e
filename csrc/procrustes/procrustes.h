// Entry points of the batched 3x3 SVD (pgnface::svd3x3) and of weighted
// similarity alignment (pgnface::similarity_align), with their backward ops.
// Schemas are declared in csrc/ext.cpp; the CPU implementations are registered
// in procrustes_cpu.cpp and the CUDA ones in procrustes_cuda.cu.
//
// Shapes: M, U, V [B,3,3], S [B,3]; src, dst [B,P,3], weights [B,P],
// scale [B], R [B,3,3], t [B,3]; all one floating dtype, one device.
#pragma once

#include <torch/types.h>

#include <optional>
#include <tuple>

namespace pgnface {

// Returns (U, S, V) with M = U diag(S) V^T, S descending and non-negative.
std::tuple<at::Tensor, at::Tensor, at::Tensor> svd3x3_cpu(const at::Tensor& M);

// Returns dL/dM [B,3,3] from dL/dU, dL/dS, dL/dV and the forward's outputs.
at::Tensor svd3x3_backward_cpu(const at::Tensor& grad_U, const at::Tensor& grad_S,
                               const at::Tensor& grad_V, const at::Tensor& U,
                               const at::Tensor& S, const at::Tensor& V);

// Returns (scale [B], R [B,3,3], t [B,3]) minimising
// sum_i w_i |scale R src_i + t - dst_i|^2; weights absent means all ones.
std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_cpu(
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    bool estimate_scale);

// Returns (grad_src [B,P,3], grad_dst [B,P,3], grad_weights [B,P], or an empty
// tensor when weights is absent).
std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cpu(
    const at::Tensor& grad_scale, const at::Tensor& grad_R, const at::Tensor& grad_t,
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    bool estimate_scale);

// Contiguous similarity_align inputs (weights undefined when absent) and
// the output buffers both devices fill; shared by the CPU and CUDA entry points.
struct AlignBuffers {
  at::Tensor src, dst, weights;
  int64_t B, P;
};
AlignBuffers contiguous_align_inputs(const at::Tensor& src, const at::Tensor& dst,
                                     const std::optional<at::Tensor>& weights);
// (scale [B], R [B,3,3], t [B,3]), uninitialised.
std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_align_outputs(const AlignBuffers& in);
// (grad_src [B,P,3], grad_dst [B,P,3], grad_weights [B,P] or [0]), uninitialised.
std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_align_grads(const AlignBuffers& in);

// Argument checks shared by the CPU and CUDA entry points.
void check_svd3x3_args(const at::Tensor& M);
void check_svd3x3_backward_args(const at::Tensor& grad_U, const at::Tensor& grad_S,
                                const at::Tensor& grad_V, const at::Tensor& U,
                                const at::Tensor& S, const at::Tensor& V);
void check_similarity_align_args(const at::Tensor& src, const at::Tensor& dst,
                                 const std::optional<at::Tensor>& weights);
void check_similarity_align_backward_args(const at::Tensor& grad_scale, const at::Tensor& grad_R,
                                          const at::Tensor& grad_t, const at::Tensor& src,
                                          const at::Tensor& dst,
                                          const std::optional<at::Tensor>& weights);

}  // namespace pgnface
