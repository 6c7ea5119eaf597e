// Device-neutral prologues of svd3x3 and svd3x3_backward: argument checks,
// contiguous inputs and output allocation, shared by svd3x3_cpu.cpp and
// svd3x3_cuda.cu.
#include "svd3x3.h"

#include <ATen/ops/empty.h>

#include "../common/check.h"
#include "../common/output_memory.h"
#include "../common/status_host.h"

namespace pgnface {
namespace {

// A batch of 3x3 matrices [B,3,3] (the forward's M, the backward's U).
void check_matrices(const at::Tensor& M) {
  PGN_CHECK_FLOATING(M);
  PGN_CHECK_DIM(M, 3);
  PGN_CHECK_SIZE(M, 1, 3);
  PGN_CHECK_SIZE(M, 2, 3);
}

}  // namespace

Svd3x3Call svd3x3_prologue(const at::Tensor& M) {
  check_matrices(M);
  const int64_t B = M.size(0);
  return {.M = M.contiguous(),
          .U = empty_output({B, 3, 3}, M.options()),
          .S = empty_output({B, 3}, M.options()),
          .V = empty_output({B, 3, 3}, M.options()),
          .B = B};
}

Svd3x3BackwardCall svd3x3_backward_prologue(const at::Tensor& grad_U, const at::Tensor& grad_S,
                                            const at::Tensor& grad_V, const at::Tensor& U,
                                            const at::Tensor& S, const at::Tensor& V) {
  check_matrices(U);
  const int64_t B = U.size(0);
  PGN_CHECK_SHAPE(V, {B, 3, 3});
  PGN_CHECK_SHAPE(S, {B, 3});
  PGN_CHECK_SHAPE(grad_U, {B, 3, 3});
  PGN_CHECK_SHAPE(grad_S, {B, 3});
  PGN_CHECK_SHAPE(grad_V, {B, 3, 3});
  PGN_CHECK_LIKE(S, U);
  PGN_CHECK_LIKE(V, U);
  PGN_CHECK_LIKE(grad_U, U);
  PGN_CHECK_LIKE(grad_S, U);
  PGN_CHECK_LIKE(grad_V, U);
  return {.grad_U = grad_U.contiguous(),
          .grad_S = grad_S.contiguous(),
          .grad_V = grad_V.contiguous(),
          .U = U.contiguous(),
          .S = S.contiguous(),
          .V = V.contiguous(),
          .grad_M = empty_output({B, 3, 3}, U.options()),
          .B = B};
}

void svd3x3_act_on_status(const at::Tensor& status, int64_t check, const at::Tensor& M) {
  act_on_status(status, check, "svd3x3",
                {{.bit = 1, .name = "M", .kind = StatusBit::kFinite, .value = M}});
}

}  // namespace pgnface
