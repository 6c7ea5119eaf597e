// CPU twin of svd3x3.
//
// Scheduling: at::parallel_for over matrices; each matrix is solved by the
// same per-matrix code the CUDA kernels run (svd3x3_kernel.h). The loops are
// compiled for baseline x86-64 and x86-64-v3 (FMA), picked at load time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/cpu_simd.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "svd3x3.h"
#include "svd3x3_kernel.h"

namespace pgnface {
namespace {

// Matrices decomposed in lockstep: their sweeps are independent dependency
// chains the core overlaps. A converged matrix's extra sweeps are no-ops.
constexpr int kInterleave = 8;

template <typename T>
PGN_CPU_CLONES void svd_range(const T* M, T* U, T* S, T* V, int64_t begin, int64_t end) {
  int64_t b = begin;
  for (; b + kInterleave <= end; b += kInterleave) {
    procrustes::SvdState<T> st[kInterleave];
    for (int k = 0; k < kInterleave; ++k) procrustes::svd_begin(M + 9 * (b + k), st[k]);
    for (int sweep = 0; sweep < procrustes::SvdConfig<T>::kMaxSweeps; ++sweep) {
      bool any = false;
      for (int k = 0; k < kInterleave; ++k) any = procrustes::svd_sweep(st[k]) || any;
      if (!any) break;
    }
    for (int k = 0; k < kInterleave; ++k) {
      procrustes::svd_end(st[k], U + 9 * (b + k), S + 3 * (b + k), V + 9 * (b + k));
    }
  }
  for (; b < end; ++b) procrustes::svd3x3(M + 9 * b, U + 9 * b, S + 3 * b, V + 9 * b);
}

template <typename T>
PGN_CPU_CLONES void svd_backward_range(const T* gU, const T* gS, const T* gV, const T* U,
                                       const T* S, const T* V, T* gM, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    procrustes::svd3x3_backward(U + 9 * b, S + 3 * b, V + 9 * b, gU + 9 * b, gS + 3 * b, gV + 9 * b,
                                gM + 9 * b);
  }
}

// The value check: svd_begin's probe (M - M summed) turns a non-finite M's S
// into NaN, and only then, so testing the S just written (in cache) names
// every such matrix without reading M again.
template <typename T>
void check_range(const T* S, int64_t begin, int64_t end, int32_t* status) {
  bool bad = false;
  for (int64_t b = begin; b < end; ++b) bad |= S[3 * b] != S[3 * b];
  if (bad) flag_status(status, 1);
}

// Matrices per parallel chunk: a few microseconds of work each.
constexpr int64_t kSvdGrain = 1024;

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> svd3x3_cpu(const at::Tensor& M_in,
                                                                      int64_t check) {
  const auto call = svd3x3_prologue(M_in);
  const at::Tensor status = new_status(M_in, check);
  int32_t* st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  const at::Tensor &M = call.M, &U = call.U, &S = call.S, &V = call.V;
  const int64_t B = call.B;
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "svd3x3_cpu", [&] {
    const scalar_t* m = M.data_ptr<scalar_t>();
    scalar_t *u = U.data_ptr<scalar_t>(), *s = S.data_ptr<scalar_t>(), *v = V.data_ptr<scalar_t>();
    at::parallel_for(0, B, kSvdGrain, [&](int64_t begin, int64_t end) {
      svd_range(m, u, s, v, begin, end);
      if (st) check_range(s, begin, end, st);
    });
  });
  svd3x3_act_on_status(status, check, call.M);
  return {U, S, V, status};
}

at::Tensor svd3x3_backward_cpu(const at::Tensor& grad_U_in, const at::Tensor& grad_S_in,
                               const at::Tensor& grad_V_in, const at::Tensor& U_in,
                               const at::Tensor& S_in, const at::Tensor& V_in) {
  const auto call = svd3x3_backward_prologue(grad_U_in, grad_S_in, grad_V_in, U_in, S_in, V_in);
  const at::Tensor &gU = call.grad_U, &gS = call.grad_S, &gV = call.grad_V, &U = call.U,
                   &S = call.S, &V = call.V, &gM = call.grad_M;
  const int64_t B = call.B;
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "svd3x3_backward_cpu", [&] {
    at::parallel_for(0, B, kSvdGrain, [&](int64_t begin, int64_t end) {
      svd_backward_range(gU.data_ptr<scalar_t>(), gS.data_ptr<scalar_t>(), gV.data_ptr<scalar_t>(),
                         U.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(), V.data_ptr<scalar_t>(),
                         gM.data_ptr<scalar_t>(), begin, end);
    });
  });
  return gM;
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("svd3x3", &svd3x3_cpu);
  m.impl("svd3x3_backward", &svd3x3_backward_cpu);
}

}  // namespace pgnface
