// Entry points of weighted similarity alignment (pgnface::similarity_align)
// and its backward op. Schemas are declared in csrc/ext.cpp; the
// device-neutral prologues live in similarity_align.cpp, the CPU
// implementations in similarity_align_cpu.cpp and the CUDA ones in
// similarity_align_cuda.cu.
//
// Shapes: src, dst [B,P,3], weights [B,P], scale [B], R [B,3,3], t [B,3],
// sums [B,17] (each item's sums over its points, similarity_align_kernel.h);
// all one floating dtype, one device.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace pgnface {

// Checked, contiguous inputs (weights undefined when absent) and the
// uninitialised outputs scale [B], R [B,3,3], t [B,3], sums [B,17].
struct SimilarityAlignCall {
  at::Tensor src, dst, weights;
  at::Tensor scale, R, t, sums;
  int64_t B, P;
};
SimilarityAlignCall similarity_align_prologue(const at::Tensor& src, const at::Tensor& dst,
                                              const std::optional<at::Tensor>& weights);

// Checked, contiguous backward inputs and the uninitialised gradients
// grad_src, grad_dst [B,P,3] and grad_weights [B,P] (or [0] without weights).
struct SimilarityAlignBackwardCall {
  at::Tensor src, dst, weights, sums;
  at::Tensor grad_scale, grad_R, grad_t;
  at::Tensor grad_src, grad_dst, grad_weights;
  int64_t B, P;
};
SimilarityAlignBackwardCall similarity_align_backward_prologue(
    const at::Tensor& grad_scale, const at::Tensor& grad_R, const at::Tensor& grad_t,
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    const at::Tensor& sums);

// Returns (scale [B], R [B,3,3], t [B,3], sums [B,17], status) minimising
// sum_i w_i |scale R src_i + t - dst_i|^2; weights absent means all ones.
// Status bits (common/status.h): 1 src, 2 dst, 4 weights non-finite, 8 weights negative.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> similarity_align_cpu(
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    bool estimate_scale, int64_t check);

// Acts on the status word of a similarity_align call (common/status_host.h).
void similarity_align_act_on_status(const at::Tensor& status, int64_t check,
                                    const SimilarityAlignCall& call);

// Returns (grad_src [B,P,3], grad_dst [B,P,3], grad_weights [B,P], or an empty
// tensor when weights is absent); sums are the forward's, for the same inputs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cpu(
    const at::Tensor& grad_scale, const at::Tensor& grad_R, const at::Tensor& grad_t,
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    const at::Tensor& sums, bool estimate_scale);

#ifdef WITH_CUDA
// The CUDA entry points (similarity_align_cuda.cu), registered in csrc/cuda_ops.cpp.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> similarity_align_cuda(
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    bool estimate_scale, int64_t check);
std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cuda(
    const at::Tensor& grad_scale, const at::Tensor& grad_R, const at::Tensor& grad_t,
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    const at::Tensor& sums, bool estimate_scale);
#endif

}  // namespace pgnface
