// Device-neutral prologues of synthesize and synthesize_backward: argument
// checks, contiguous inputs and output allocation, shared by
// synthesize_cpu.cpp and synthesize_cuda.cu.
#include "synthesize.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "../common/check.h"
#include "../common/output_memory.h"
#include "../common/status_host.h"

namespace pgnface {
namespace {

void check_synthesize_args(const at::Tensor& mean, const at::Tensor& basis,
                           const at::Tensor& coeffs, const at::Tensor& rotation,
                           const at::Tensor& scale, const at::Tensor& translation) {
  PGN_CHECK_FLOATING(mean);
  PGN_CHECK_DIM(mean, 2);
  PGN_CHECK_SIZE(mean, 1, 3);
  const int64_t N = mean.size(0);
  PGN_CHECK_DIM(basis, 3);
  PGN_CHECK_SIZE(basis, 0, N);
  PGN_CHECK_SIZE(basis, 1, 3);
  const int64_t K = basis.size(2);
  PGN_CHECK_DIM(coeffs, 2);
  PGN_CHECK_SIZE(coeffs, 1, K);
  const int64_t B = coeffs.size(0);
  PGN_CHECK_SHAPE(rotation, {B, 3, 3});
  PGN_CHECK_SHAPE(scale, {B});
  PGN_CHECK_SHAPE(translation, {B, 3});
  PGN_CHECK_LIKE(basis, mean);
  PGN_CHECK_LIKE(coeffs, mean);
  PGN_CHECK_LIKE(rotation, mean);
  PGN_CHECK_LIKE(scale, mean);
  PGN_CHECK_LIKE(translation, mean);
}

// Contiguous inputs and sizes of either call.
template <typename Call>
void set_inputs(Call& call, const at::Tensor& mean, const at::Tensor& basis,
                const at::Tensor& coeffs, const at::Tensor& rotation, const at::Tensor& scale,
                const at::Tensor& translation) {
  call.mean = mean.contiguous();
  call.basis = basis.contiguous();
  call.coeffs = coeffs.contiguous();
  call.rotation = rotation.contiguous();
  call.scale = scale.contiguous();
  call.translation = translation.contiguous();
  call.B = coeffs.size(0);
  call.N = mean.size(0);
  call.K = basis.size(2);
}

}  // namespace

SynthesizeCall synthesize_prologue(const at::Tensor& mean, const at::Tensor& basis,
                                   const at::Tensor& coeffs, const at::Tensor& rotation,
                                   const at::Tensor& scale, const at::Tensor& translation) {
  check_synthesize_args(mean, basis, coeffs, rotation, scale, translation);
  SynthesizeCall call;
  set_inputs(call, mean, basis, coeffs, rotation, scale, translation);
  call.out = empty_output({call.B, call.N, 3}, mean.options());
  return call;
}

SynthesizeBackwardCall synthesize_backward_prologue(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& mean,
    const at::Tensor& basis, const at::Tensor& coeffs, const at::Tensor& rotation,
    const at::Tensor& scale, const at::Tensor& translation) {
  check_synthesize_args(mean, basis, coeffs, rotation, scale, translation);
  PGN_CHECK_LIKE(grad_out, mean);
  PGN_CHECK_SHAPE(grad_out, {coeffs.size(0), mean.size(0), 3});
  PGN_CHECK_LIKE(out, mean);
  PGN_CHECK_SHAPE(out, {coeffs.size(0), mean.size(0), 3});
  SynthesizeBackwardCall call;
  set_inputs(call, mean, basis, coeffs, rotation, scale, translation);
  call.grad_out = contiguous_copy(grad_out);
  call.out = contiguous_copy(out);
  const auto opts = mean.options();
  call.grad_coeffs = at::zeros({call.B, call.K}, opts);
  call.grad_rotation = at::zeros({call.B, 3, 3}, opts);
  call.grad_scale = at::zeros({call.B}, opts);
  call.grad_translation = at::zeros({call.B, 3}, opts);
  return call;
}

at::Tensor synthesize_model_scale(const at::Tensor& mean) {
  if (mean.numel() == 0) return at::zeros({}, mean.options());
  return mean.abs().amax();
}

void synthesize_act_on_status(const at::Tensor& status, int64_t check, const SynthesizeCall& call) {
  act_on_status(
      status, check, "synthesize",
      {{.bit = 1, .name = "coeffs", .kind = StatusBit::kFinite, .value = call.coeffs},
       {.bit = 2, .name = "rotation", .kind = StatusBit::kFinite, .value = call.rotation},
       {.bit = 4, .name = "scale", .kind = StatusBit::kFinite, .value = call.scale},
       {.bit = 8, .name = "translation", .kind = StatusBit::kFinite, .value = call.translation}});
}

}  // namespace pgnface
