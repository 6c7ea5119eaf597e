// Per-element math of 3DMM vertex synthesis, shared by the CPU twin
// (synthesize_cpu.cpp) and the CUDA kernels (synthesize_cuda.cu).
//
// For batch item b and vertex n:
//   shape[b,n] = mean[n] + basis[n] @ coeffs[b]          (3)
//   out[b,n]   = s_b * R_b @ shape[b,n] + t_b            (3)
// The contraction basis[n] @ coeffs[b] is a tiled reduction whose scheduling
// differs between CPU and CUDA; everything a single (b, n) element does before
// and after it is written once here. T is float or double on CUDA; the CPU
// twin also instantiates these with T = a SIMD vector of batch items (see
// common/cpu_simd.h), which is why they use only +, * and assignment.
#pragma once

#include "../common/hostdevice.h"
#include "../common/mat3.h"

namespace pgnface {
namespace morphable {

// Number of per-batch-item partial sums the backward pass reduces over
// vertices: G = sum_n g (x) shape (9 values, row-major) then sum_n g (3).
constexpr int kPoseGradSize = 12;

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
// acc[3*i + j] += g_i * shape_j, acc[9 + i] += g_i.
template <typename T>
PGN_HD void accumulate_pose_grad(const T* g, const T* shape, T* acc) {
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) acc[3 * i + j] += g[i] * shape[j];
    acc[9 + i] += g[i];
  }
}

// Turns the reduced pose partial sums of one batch item into gradients:
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

}  // namespace morphable
}  // namespace pgnface
