// Small-batch schedule of the synthesize CPU twin (B <= kSmallBatch).
//
// The main schedule vectorises over batch items, which wastes most lanes when
// there are only a few (single-image fitting is a common case). Here each
// basis row is contracted with each coefficient vector along K instead:
// dot products and axpys vectorised over the components, the basis still
// read once per vertex (in the backward, for recompute-path items, once for
// the shape and the coefficient gradient together). The per-element math is
// the same synthesize_kernel.h.
#pragma once

#include <ATen/core/Tensor.h>

namespace pgnface {
namespace morphable_cpu {

constexpr int64_t kSmallBatch = 4;

// out [B,N,3] = s R (mean + basis c) + t for contiguous inputs with B <= kSmallBatch.
// With a status word, the task that reads the per-item inputs first also ORs
// their value-check bits (1 coeffs, 2 rotation, 4 scale, 8 translation) into it.
void synthesize_small_batch(const at::Tensor& mean, const at::Tensor& basis,
                            const at::Tensor& coeffs, const at::Tensor& rotation,
                            const at::Tensor& scale, const at::Tensor& translation, at::Tensor& out,
                            int32_t* status);

// Per-chunk partial sums of the backward pass for contiguous inputs:
// pose_part [chunks,B,12] and coeff_part [chunks,B,K] (zero-initialised by
// the caller) and, when defined, grad_mean [N,3] and grad_basis [N,3,K].
// path [B,kOutputPathSize] holds each item's output_path record: the pose
// partial sums of output-path items are taken from out - t, those of the
// others from recomputed shapes.
void synthesize_backward_small_batch(const at::Tensor& grad_out, const at::Tensor& out,
                                     const at::Tensor& mean, const at::Tensor& basis,
                                     const at::Tensor& coeffs, const at::Tensor& rotation,
                                     const at::Tensor& scale, const at::Tensor& translation,
                                     const at::Tensor& path, int64_t chunk_verts,
                                     at::Tensor& pose_part, at::Tensor& coeff_part,
                                     at::Tensor& grad_mean, at::Tensor& grad_basis);

}  // namespace morphable_cpu
}  // namespace pgnface
