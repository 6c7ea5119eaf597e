// Per-element math of 3DMM vertex synthesis, shared by the CPU twin
// (synthesize_cpu.cpp) and the CUDA kernels (synthesize_cuda.cu).
//
// For batch item b and vertex n:
//   shape[b,n] = mean[n] + basis[n] @ coeffs[b]          (3)
//   out[b,n]   = s_b * R_b @ shape[b,n] + t_b            (3)
// The contraction basis[n] @ coeffs[b] is a tiled reduction whose scheduling
// differs between CPU and CUDA; everything a single (b, n) element does before
// and after it is written once here. T is float or double on CUDA; the CPU
// twin also instantiates the per-vertex ones with T = a SIMD vector of batch
// items (see common/cpu_simd.h), which is why they use only +, * and
// assignment. The backward forms the pose gradients from the forward's output
// where output_path allows it, so that only the coefficient contraction
// touches the basis.
#pragma once

#include "../common/hostdevice.h"
#include "../common/mat3.h"

namespace pgnface {
namespace morphable {

// Number of per-batch-item partial sums the backward pass reduces over
// vertices: G = sum_n g (x) q (9 values, row-major) then sum_n g (3), where q
// is the shape (recompute path) or p = out - t = s R shape (output path).
constexpr int kPoseGradSize = 12;

// Per-item record of the backward's path choice: R^{-1} (9, row-major), then
// 1 for the output path or 0 for the recompute path.
constexpr int kOutputPathSize = 10;

// Bound on each of the two error amplifications output_path accepts.
constexpr double kMaxOutputAmplification = 32;

// out = s * R @ shape + t, for one vertex of one batch item.
template <typename T>
PGN_HD void transform_point(const T* R, T s, const T* t, const T* shape, T* out) {
  T rotated[3];
  mat3_mul_vec(R, shape, rotated);
  out[0] = s * rotated[0] + t[0];
  out[1] = s * rotated[1] + t[1];
  out[2] = s * rotated[2] + t[2];
}

// Gradient w.r.t. the un-posed shape point: d out / d shape ^T g = s R^T g.
template <typename T>
PGN_HD void shape_grad(const T* R, T s, const T* g, T* grad_shape) {
  mat3_tmul_vec(R, g, grad_shape);
  grad_shape[0] *= s;
  grad_shape[1] *= s;
  grad_shape[2] *= s;
}

// Adds one vertex's contribution to the pose partial sums:
// acc[3*i + j] += g_i * q_j, acc[9 + i] += g_i (q: shape or p, kPoseGradSize).
template <typename T>
PGN_HD void accumulate_pose_grad(const T* g, const T* q, T* acc) {
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) acc[3 * i + j] += g[i] * q[j];
    acc[9 + i] += g[i];
  }
}

// Decides whether the backward of batch item (R, s, t) takes its shape-space
// moments from the forward output and, if so, writes R^{-1} (row-major) and
// returns true. The output path uses p = out - t = s R shape in place of the
// recomputed shape; recovering shape = R^{-1} p / s amplifies the rounding of
// out (about eps |out| per value, |out| <= |s R| |shape| + |t|) relative to
// the model's scale X = max_n |mean_n|_inf by at most
// cond_F(R) + |(s R)^{-1}|_F |t| / X. Each term must stay below
// kMaxOutputAmplification, so the output path's gradients lose at most a few
// bits against the recompute in either dtype; otherwise (s = 0 or so small
// that t swamps s R shape, a singular or ill-conditioned R, X = 0,
// non-finite values) the item takes the recompute path. Squared norms avoid
// square roots; any overflow or underflow fails the comparisons, which
// chooses the recompute.
template <typename T>
PGN_HD bool output_path(const T* R, T s, const T* t, T model_scale, T* Rinv) {
  T adj[9];  // adjugate: R^{-1} = adj / det
  adj[0] = R[4] * R[8] - R[5] * R[7];
  adj[1] = R[2] * R[7] - R[1] * R[8];
  adj[2] = R[1] * R[5] - R[2] * R[4];
  adj[3] = R[5] * R[6] - R[3] * R[8];
  adj[4] = R[0] * R[8] - R[2] * R[6];
  adj[5] = R[2] * R[3] - R[0] * R[5];
  adj[6] = R[3] * R[7] - R[4] * R[6];
  adj[7] = R[1] * R[6] - R[0] * R[7];
  adj[8] = R[0] * R[4] - R[1] * R[3];
  const T det = R[0] * adj[0] + R[1] * adj[3] + R[2] * adj[6];
  T r2 = T(0), a2 = T(0);
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) {
    r2 += R[e] * R[e];
    a2 += adj[e] * adj[e];
  }
  const T t2 = t[0] * t[0] + t[1] * t[1] + t[2] * t[2];
  const T bound = T(kMaxOutputAmplification * kMaxOutputAmplification);
  const T det2 = det * det, sx2 = s * s * model_scale * model_scale;
  // cond_F(R)^2 = |R|^2 |adj|^2 / det^2; (|(s R)^{-1}| |t| / X)^2 = |adj|^2 |t|^2 / (det^2 s^2
  // X^2).
  const bool ok =
      det2 > T(0) && sx2 > T(0) && r2 * a2 <= bound * det2 && a2 * t2 <= bound * det2 * sx2;
  if (!ok) return false;
  const T inv_det = T(1) / det;
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) Rinv[e] = adj[e] * inv_det;
  return true;
}

// Turns the reduced recompute-path partial sums of one batch item
// (G = sum_n g (x) shape) into gradients:
// grad_R = s * G, grad_s = <G, R>_F, grad_t = sum_n g.
template <typename T>
PGN_HD void finish_pose_grad(const T* acc, const T* R, T s, T* grad_R, T* grad_s, T* grad_t) {
  T dot = T(0);
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) {
    grad_R[e] = s * acc[e];
    dot += acc[e] * R[e];
  }
  *grad_s = dot;
  grad_t[0] = acc[9];
  grad_t[1] = acc[10];
  grad_t[2] = acc[11];
}

// The same for the output path, whose partial sums hold M = sum_n g (x) p,
// p = s R shape: s G = M R^{-T}, so grad_R = M R^{-T}, grad_s = <M R^{-T}, R>_F / s.
template <typename T>
PGN_HD void finish_pose_grad_output(const T* acc, const T* Rinv, const T* R, T s, T* grad_R,
                                    T* grad_s, T* grad_t) {
  T dot = T(0);
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      const T v = acc[3 * i] * Rinv[3 * k] + acc[3 * i + 1] * Rinv[3 * k + 1] +
                  acc[3 * i + 2] * Rinv[3 * k + 2];
      grad_R[3 * i + k] = v;
      dot += v * R[3 * i + k];
    }
  }
  *grad_s = dot / s;
  grad_t[0] = acc[9];
  grad_t[1] = acc[10];
  grad_t[2] = acc[11];
}

}  // namespace morphable
}  // namespace pgnface
