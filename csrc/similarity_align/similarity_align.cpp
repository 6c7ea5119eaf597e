// Device-neutral prologues of similarity_align and its backward op: argument
// checks, contiguous inputs and output allocation, shared by
// similarity_align_cpu.cpp and similarity_align_cuda.cu.
#include "similarity_align.h"

#include <ATen/ops/empty.h>

#include "../common/check.h"
#include "../common/output_memory.h"
#include "../common/status_host.h"
#include "similarity_align_kernel.h"

namespace pgnface {
namespace {

void check_points(const at::Tensor& src, const at::Tensor& dst) {
  PGN_CHECK_FLOATING(src);
  PGN_CHECK_DIM(src, 3);
  PGN_CHECK_SIZE(src, 2, 3);
  PGN_CHECK_SHAPE(dst, src.sizes());
  PGN_CHECK_LIKE(dst, src);
}

void check_weights(const at::Tensor& weights, const at::Tensor& src) {
  PGN_CHECK_SHAPE(weights, {src.size(0), src.size(1)});
  PGN_CHECK_LIKE(weights, src);
}

// Contiguous src, dst and weights (undefined when absent) of either call.
template <typename Call>
void set_inputs(Call& call, const at::Tensor& src, const at::Tensor& dst,
                const std::optional<at::Tensor>& weights) {
  call.src = src.contiguous();
  call.dst = dst.contiguous();
  call.weights = weights.has_value() ? weights->contiguous() : at::Tensor();
  call.B = src.size(0);
  call.P = src.size(1);
}

}  // namespace

SimilarityAlignCall similarity_align_prologue(const at::Tensor& src, const at::Tensor& dst,
                                              const std::optional<at::Tensor>& weights) {
  check_points(src, dst);
  if (weights.has_value()) check_weights(*weights, src);
  SimilarityAlignCall call;
  set_inputs(call, src, dst, weights);
  const auto opts = src.options();
  call.scale = at::empty({call.B}, opts);
  call.R = at::empty({call.B, 3, 3}, opts);
  call.t = at::empty({call.B, 3}, opts);
  call.sums = at::empty({call.B, procrustes::kSums}, opts);
  return call;
}

SimilarityAlignBackwardCall similarity_align_backward_prologue(
    const at::Tensor& grad_scale, const at::Tensor& grad_R, const at::Tensor& grad_t,
    const at::Tensor& src, const at::Tensor& dst, const std::optional<at::Tensor>& weights,
    const at::Tensor& sums) {
  check_points(src, dst);
  if (weights.has_value()) check_weights(*weights, src);
  const int64_t B = src.size(0);
  PGN_CHECK_SHAPE(sums, {B, procrustes::kSums});
  PGN_CHECK_LIKE(sums, src);
  PGN_CHECK_SHAPE(grad_scale, {B});
  PGN_CHECK_SHAPE(grad_R, {B, 3, 3});
  PGN_CHECK_SHAPE(grad_t, {B, 3});
  PGN_CHECK_LIKE(grad_scale, src);
  PGN_CHECK_LIKE(grad_R, src);
  PGN_CHECK_LIKE(grad_t, src);
  SimilarityAlignBackwardCall call;
  set_inputs(call, src, dst, weights);
  call.sums = sums.contiguous();
  call.grad_scale = grad_scale.contiguous();
  call.grad_R = grad_R.contiguous();
  call.grad_t = grad_t.contiguous();
  const auto opts = src.options();
  call.grad_src = empty_output({call.B, call.P, 3}, opts);
  call.grad_dst = empty_output({call.B, call.P, 3}, opts);
  call.grad_weights =
      weights.has_value() ? at::empty({call.B, call.P}, opts) : at::empty({0}, opts);
  return call;
}

void similarity_align_act_on_status(const at::Tensor& status, int64_t check,
                                    const SimilarityAlignCall& call) {
  const at::Tensor& w = call.weights;
  act_on_status(status, check, "similarity_align",
                {{.bit = 1, .name = "src", .kind = StatusBit::kFinite, .value = call.src},
                 {.bit = 2, .name = "dst", .kind = StatusBit::kFinite, .value = call.dst},
                 {.bit = 4, .name = "weights", .kind = StatusBit::kFinite, .value = w},
                 {.bit = 8, .name = "weights", .kind = StatusBit::kNonNegative, .value = w}});
}

}  // namespace pgnface
