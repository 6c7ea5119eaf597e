// Per-batch-item math of weighted similarity alignment (Umeyama 1991), shared
// by the CPU twin (similarity_align_cpu.cpp) and the CUDA kernels
// (similarity_align_cuda.cu). Only the reduction over points is scheduled
// differently (a loop on CPU, a warp on CUDA); everything else is here.
//
// For one item with points x_i (src), y_i (dst) and weights w_i >= 0:
//   W = sum w_i,  mu_x = sum w_i x_i / W,  mu_y = sum w_i y_i / W
//   C = sum w_i (y_i - mu_y)(x_i - mu_x)^T / W = U diag(D) V^T   (svd3x3)
//   var_x = sum w_i |x_i - mu_x|^2 / W
//   d = sign(det U det V),  R = U diag(1, 1, d) V^T   (a rotation, det +1)
//   scale = (D_0 + D_1 + d D_2) / var_x   (1 without estimate_scale)
//   t = mu_y - scale R mu_x
// Degenerate items (W = 0, or src points that all coincide: var_x at rounding
// level, var_x <= (16 eps |mu_x|)^2) give R = I, scale = 1, t = mu_y - mu_x
// (mu = 0 when W = 0).
// The centroids come first and the covariance is summed over centred points
// (two passes), which keeps float32 accurate for points far from the origin.
#pragma once

#include "../common/hostdevice.h"
#include "../common/mat3.h"
#include "../common/scalar_math.h"
#include "../common/status.h"
#include "../svd3x3/svd3x3_kernel.h"

namespace pgnface {
namespace procrustes {

// First-pass sums of one item: W, sum w x (3), sum w y (3).
constexpr int kFirstSums = 7;
// Second-pass sums: sum w (y - mu_y)(x - mu_x)^T (9, row-major), sum w |x - mu_x|^2.
constexpr int kSecondSums = 10;
// All sums of one item, first-pass then second-pass: the forward op returns them
// ([B, kSums]) so that its backward op solves each item from them instead of
// reducing the points again; solve_alignment is a function of the sums alone.
constexpr int kSums = kFirstSums + kSecondSums;

template <typename T>
PGN_HD void accumulate_first(const T* x, const T* y, T w, T* acc) {
  acc[0] += w;
  PGN_UNROLL
  for (int d = 0; d < 3; ++d) {
    acc[1 + d] += w * x[d];
    acc[4 + d] += w * y[d];
  }
}

// The value check of similarity_align, fused into the first pass. Its sums
// are finite unless an input is NaN or Inf (0 * Inf is NaN too) or a sum
// overflowed: only then are the item's points read again (points begin,
// begin + step, ... < end: a lane's share on CUDA) to tell which argument is
// at fault. Returns the status bits: 1 src, 2 dst, 4 weights (w may be null).
template <typename T>
PGN_HD int32_t first_pass_status(const T* first, const T* x, const T* y, const T* w, int64_t begin,
                                 int64_t end, int64_t step) {
  T probe = T(0);
  PGN_UNROLL
  for (int e = 0; e < kFirstSums; ++e) probe += finite_probe(first[e]);
  if (sum_is_finite(probe)) return 0;
  T px = T(0), py = T(0), pw = T(0);
  for (int64_t i = begin; i < end; i += step) {
    px += finite_probe(x[3 * i]) + finite_probe(x[3 * i + 1]) + finite_probe(x[3 * i + 2]);
    py += finite_probe(y[3 * i]) + finite_probe(y[3 * i + 1]) + finite_probe(y[3 * i + 2]);
    if (w) pw += finite_probe(w[i]);
  }
  return (sum_is_finite(px) ? 0 : 1) | (sum_is_finite(py) ? 0 : 2) | (sum_is_finite(pw) ? 0 : 4);
}

// Status bit 8 of similarity_align: a negative weight (on CUDA from w_min, the
// smallest weight the first pass read; on CPU from the pass over the weights;
// NaN weights are bit 4's).
constexpr int32_t kNegativeWeightBit = 8;

// Centroids from the first-pass sums; zero when W = 0.
template <typename T>
PGN_HD void centroids(const T* first, T* mu_x, T* mu_y) {
  const T inv = lane_select(first[0] > T(0), T(1) / first[0], T(0));
  PGN_UNROLL
  for (int d = 0; d < 3; ++d) {
    mu_x[d] = first[1 + d] * inv;
    mu_y[d] = first[4 + d] * inv;
  }
}

template <typename T>
PGN_HD void accumulate_second(const T* x, const T* y, T w, const T* mu_x, const T* mu_y, T* acc) {
  const T xc[3] = {x[0] - mu_x[0], x[1] - mu_x[1], x[2] - mu_x[2]};
  const T yc[3] = {w * (y[0] - mu_y[0]), w * (y[1] - mu_y[1]), w * (y[2] - mu_y[2])};
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) acc[3 * i + j] += yc[i] * xc[j];
  }
  acc[9] += w * dot3(xc, xc);
}

// Everything the forward pass computes for one item (one per lane of L); the
// backward pass solves it again from the item's sums (kSums) rather than storing it.
template <typename L>
struct Alignment {
  L W;
  L mu_x[3], mu_y[3];
  L cov[9];  // C
  L var_x;
  L U[9], D[3], V[9];
  L d;  // +1, or -1 when the reflection is fixed
  lane_mask_t<L> degenerate;
  bool estimate_scale;
  L scale, R[9], t[3];
};

// Solves one item from its first and second sums.
template <typename L>
PGN_HD void solve_alignment(const L* first, const L* second, bool estimate_scale, Alignment<L>& a) {
  using T = lane_scalar_t<L>;
  a.W = first[0];
  a.estimate_scale = estimate_scale;
  centroids(first, a.mu_x, a.mu_y);
  const L inv_w = lane_select(a.W > L(0), L(1) / a.W, L(0));
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) a.cov[e] = second[e] * inv_w;
  a.var_x = second[9] * inv_w;
  L probe = L(0);  // stays 0 unless a sum is NaN or Inf (x - x is then NaN)
  PGN_UNROLL
  for (int e = 0; e < kFirstSums; ++e) probe += first[e] - first[e];
  PGN_UNROLL
  for (int e = 0; e < kSecondSums; ++e) probe += second[e] - second[e];
  // Non-finite input: NaN results for this item only.
  const lane_mask_t<L> bad = !(probe == L(0));
  const L nan = L(T(NAN));
  if (lane_all(bad)) {
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) a.U[e] = a.V[e] = a.R[e] = a.cov[e] = nan;
    a.D[0] = a.D[1] = a.D[2] = a.t[0] = a.t[1] = a.t[2] = a.scale = a.var_x = a.W = nan;
    a.d = L(1);
    a.degenerate = !(L(0) == L(0));
    return;
  }
  // Coinciding src points leave centred coordinates at the rounding level of
  // |mu_x| (a few ulps), so var_x at (a few eps |mu_x|)^2.
  const L noise = L(T(256) * Eps<T>::value * Eps<T>::value) * dot3(a.mu_x, a.mu_x);
  a.degenerate = !bad && (!(a.W > L(0)) || !(a.var_x > noise) || !(a.var_x > L(0)));
  if (lane_all(a.degenerate)) {
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) {
      const L id = (e % 4 == 0) ? L(1) : L(0);
      a.U[e] = a.V[e] = a.R[e] = id;
    }
    a.D[0] = a.D[1] = a.D[2] = L(0);
    a.d = L(1);
    a.scale = L(1);
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) a.t[i] = a.mu_y[i] - a.mu_x[i];
    return;
  }
  svd3x3(a.cov, a.U, a.D, a.V);
  a.d = lane_select(det3(a.U) * det3(a.V) < L(0), L(-1), L(1));
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) {
      a.R[3 * i + j] = a.U[3 * i] * a.V[3 * j] + a.U[3 * i + 1] * a.V[3 * j + 1] +
                       a.d * a.U[3 * i + 2] * a.V[3 * j + 2];
    }
  }
  a.scale = estimate_scale ? (a.D[0] + a.D[1] + a.d * a.D[2]) / a.var_x : L(1);
  L rmu[3];
  mat3_mul_vec(a.R, a.mu_x, rmu);
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) a.t[i] = a.mu_y[i] - a.scale * rmu[i];
  if (lane_any(a.degenerate || bad)) {  // only when lanes disagree (never for scalar lanes)
    const lane_mask_t<L> deg = a.degenerate;
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) {
      const L id = (e % 4 == 0) ? L(1) : L(0);
      a.U[e] = lane_select(bad, nan, lane_select(deg, id, a.U[e]));
      a.V[e] = lane_select(bad, nan, lane_select(deg, id, a.V[e]));
      a.R[e] = lane_select(bad, nan, lane_select(deg, id, a.R[e]));
      a.cov[e] = lane_select(bad, nan, a.cov[e]);
    }
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) {
      a.D[i] = lane_select(bad, nan, lane_select(deg, L(0), a.D[i]));
      a.t[i] = lane_select(bad, nan, lane_select(deg, a.mu_y[i] - a.mu_x[i], a.t[i]));
    }
    a.d = lane_select(bad || deg, L(1), a.d);
    a.scale = lane_select(bad, nan, lane_select(deg, L(1), a.scale));
    a.var_x = lane_select(bad, nan, a.var_x);
    a.W = lane_select(bad, nan, a.W);
  }
}

// What the backward pass needs per item to form each point's gradient:
//   grad x_i = w_i / W (G^T yc_i + 2 gv xc_i + g_mu_x)
//   grad y_i = w_i / W (G xc_i + g_mu_y)
//   grad w_i = 1 / W (yc_i^T G xc_i + gv |xc_i|^2 + g_mu_x . xc_i + g_mu_y . yc_i - c0)
// with xc_i = x_i - mu_x, yc_i = y_i - mu_y, G = dL/dC, gv = dL/dvar_x.
// (The centring itself adds nothing: sum w_i xc_i = sum w_i yc_i = 0.)
template <typename L>
struct AlignmentGrad {
  L G[9];
  L gv;
  L g_mu_x[3], g_mu_y[3];
  L inv_w;  // 1 / W, 0 when W = 0 (no point receives gradient)
  L c0;     // <G, C> + gv var_x
};

// Backpropagates dL/dscale, dL/dR, dL/dt of one item to the per-item
// coefficients above. The reflection sign d is piecewise constant.
template <typename L>
PGN_HD void alignment_backward(const Alignment<L>& a, L g_scale, const L* g_R, const L* g_t,
                               AlignmentGrad<L>& out) {
  out.inv_w = lane_select(a.W > L(0), L(1) / a.W, L(0));
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) out.g_mu_y[i] = g_t[i];
  if (lane_all(a.degenerate)) {  // t = mu_y - mu_x; R and scale are constants
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) out.G[e] = L(0);
    out.gv = L(0);
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) out.g_mu_x[i] = -g_t[i];
    out.c0 = L(0);
    return;
  }
  // t = mu_y - scale R mu_x
  L rmu[3], rtg[3];
  mat3_mul_vec(a.R, a.mu_x, rmu);
  mat3_tmul_vec(a.R, g_t, rtg);
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) out.g_mu_x[i] = -a.scale * rtg[i];
  L gR[9];
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) gR[3 * i + j] = g_R[3 * i + j] - a.scale * g_t[i] * a.mu_x[j];
  }
  // scale = tau / var_x, tau = D_0 + D_1 + d D_2
  L g_tau = L(0);
  out.gv = L(0);
  if (a.estimate_scale) {
    const L g_c = g_scale - dot3(g_t, rmu);
    g_tau = g_c / a.var_x;
    out.gv = -g_c * a.scale / a.var_x;
  }
  const L g_D[3] = {g_tau, g_tau, a.d * g_tau};
  // R = U diag(1, 1, d) V^T: gU = gR V diag(1,1,d), gV = gR^T U diag(1,1,d)
  L gU[9], gV[9];
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      const L dk = k == 2 ? a.d : L(1);
      gU[3 * i + k] =
          dk * (gR[3 * i] * a.V[k] + gR[3 * i + 1] * a.V[3 + k] + gR[3 * i + 2] * a.V[6 + k]);
      gV[3 * i + k] = dk * (gR[i] * a.U[k] + gR[3 + i] * a.U[3 + k] + gR[6 + i] * a.U[6 + k]);
    }
  }
  svd3x3_backward(a.U, a.D, a.V, gU, g_D, gV, out.G);
  L c0 = out.gv * a.var_x;
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) c0 += out.G[e] * a.cov[e];
  out.c0 = c0;
  if (lane_any(a.degenerate)) {  // only when lanes disagree (never for scalar lanes)
    const lane_mask_t<L> deg = a.degenerate;
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) out.G[e] = lane_select(deg, L(0), out.G[e]);
    out.gv = lane_select(deg, L(0), out.gv);
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) out.g_mu_x[i] = lane_select(deg, -g_t[i], out.g_mu_x[i]);
    out.c0 = lane_select(deg, L(0), out.c0);
  }
}

// One point's gradients from the item's centroids and coefficients. gw may be null.
template <typename T>
PGN_HD void alignment_point_grad(const T* mu_x, const T* mu_y, const AlignmentGrad<T>& g,
                                 const T* x, const T* y, T w, T* gx, T* gy, T* gw) {
  const T xc[3] = {x[0] - mu_x[0], x[1] - mu_x[1], x[2] - mu_x[2]};
  const T yc[3] = {y[0] - mu_y[0], y[1] - mu_y[1], y[2] - mu_y[2]};
  T Gx[3], Gty[3];
  mat3_mul_vec(g.G, xc, Gx);
  mat3_tmul_vec(g.G, yc, Gty);
  const T f = w * g.inv_w;
  PGN_UNROLL
  for (int d = 0; d < 3; ++d) {
    gx[d] = f * (Gty[d] + T(2) * g.gv * xc[d] + g.g_mu_x[d]);
    gy[d] = f * (Gx[d] + g.g_mu_y[d]);
  }
  if (gw) {
    *gw = g.inv_w *
          (dot3(yc, Gx) + g.gv * dot3(xc, xc) + dot3(g.g_mu_x, xc) + dot3(g.g_mu_y, yc) - g.c0);
  }
}

// The same from the item's solve.
template <typename T>
PGN_HD void alignment_point_grad(const Alignment<T>& a, const AlignmentGrad<T>& g, const T* x,
                                 const T* y, T w, T* gx, T* gy, T* gw) {
  alignment_point_grad(a.mu_x, a.mu_y, g, x, y, w, gx, gy, gw);
}

}  // namespace procrustes
}  // namespace pgnface
