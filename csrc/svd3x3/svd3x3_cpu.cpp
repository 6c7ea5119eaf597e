// CPU twin of svd3x3.
//
// Scheduling: parallel over matrices, pieces handed out dynamically
// (common/cpu_parallel.h, so a thread that another process holds up delays
// only its piece); each matrix is solved by the
// same per-matrix code the CUDA kernels run (svd3x3_kernel.h), instantiated
// for a SIMD lane type: Simd<T>::width matrices at a time, one per lane (8
// floats / 4 doubles with AVX2), transposed into lanes on load and back on
// store. The loops are compiled for baseline x86-64 and x86-64-v3 (AVX2 +
// FMA), picked at load time. The scalar instantiation (what CUDA runs) stays
// reachable for the tests: torch.ops.pgnface.set_cpu_simd(False).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/cpu_lanes.h"
#include "../common/cpu_parallel.h"
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

// Lane groups decomposed in lockstep, for the same reason as kInterleave.
constexpr int kLaneGroups = 2;

template <typename T>
PGN_CPU_CLONES PGN_FLATTEN void svd_range_simd(const T* M, T* U, T* S, T* V, int64_t begin,
                                               int64_t end) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  for (int64_t b = begin; b < end; b += kLaneGroups * W) {
    procrustes::SvdState<L> st[kLaneGroups];
    int n[kLaneGroups];
    for (int g = 0; g < kLaneGroups; ++g) {
      const int64_t first = std::min(b + g * W, end - 1);  // a spare group repeats the last
      n[g] = static_cast<int>(std::clamp<int64_t>(end - (b + g * W), 0, W));
      L m[9];
      load_lanes<9>(M + 9 * first, std::max(n[g], 1), m);
      procrustes::svd_begin(m, st[g]);
    }
    for (int sweep = 0; sweep < procrustes::SvdConfig<T>::kMaxSweeps; ++sweep) {
      bool any = false;
      for (int g = 0; g < kLaneGroups; ++g) any = procrustes::svd_sweep(st[g]) || any;
      if (!any) break;
    }
    for (int g = 0; g < kLaneGroups; ++g) {
      if (n[g] == 0) continue;
      const int64_t first = b + g * W;
      L u[9], s[3], v[9];
      procrustes::svd_end(st[g], u, s, v);
      store_lanes<9>(u, n[g], U + 9 * first);
      store_lanes<3>(s, n[g], S + 3 * first);
      store_lanes<9>(v, n[g], V + 9 * first);
    }
  }
}

template <typename T>
PGN_CPU_CLONES PGN_FLATTEN void svd_backward_range_simd(const T* gU, const T* gS, const T* gV,
                                                        const T* U, const T* S, const T* V, T* gM,
                                                        int64_t begin, int64_t end) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  for (int64_t b = begin; b < end; b += W) {
    const int n = static_cast<int>(std::min<int64_t>(W, end - b));
    L u[9], s[3], v[9], gu[9], gs[3], gv[9], gm[9];
    load_lanes<9>(U + 9 * b, n, u);
    load_lanes<3>(S + 3 * b, n, s);
    load_lanes<9>(V + 9 * b, n, v);
    load_lanes<9>(gU + 9 * b, n, gu);
    load_lanes<3>(gS + 3 * b, n, gs);
    load_lanes<9>(gV + 9 * b, n, gv);
    procrustes::svd3x3_backward(u, s, v, gu, gs, gv, gm);
    store_lanes<9>(gm, n, gM + 9 * b);
  }
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

// Matrices per parallel piece: tens of microseconds of work each.
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
    const bool simd = cpu_simd_enabled();
    parallel_for_dynamic(B, kSvdGrain, [&](int64_t begin, int64_t end) {
      if (simd) {
        svd_range_simd(m, u, s, v, begin, end);
      } else {
        svd_range(m, u, s, v, begin, end);
      }
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
    const bool simd = cpu_simd_enabled();
    parallel_for_dynamic(B, kSvdGrain, [&](int64_t begin, int64_t end) {
      const scalar_t *gu = gU.data_ptr<scalar_t>(), *gs = gS.data_ptr<scalar_t>(),
                     *gv = gV.data_ptr<scalar_t>(), *u = U.data_ptr<scalar_t>(),
                     *s = S.data_ptr<scalar_t>(), *v = V.data_ptr<scalar_t>();
      scalar_t* gm = gM.data_ptr<scalar_t>();
      if (simd) {
        svd_backward_range_simd(gu, gs, gv, u, s, v, gm, begin, end);
      } else {
        svd_backward_range(gu, gs, gv, u, s, v, gm, begin, end);
      }
    });
  });
  return gM;
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("svd3x3", &svd3x3_cpu);
  m.impl("svd3x3_backward", &svd3x3_backward_cpu);
}

}  // namespace pgnface
