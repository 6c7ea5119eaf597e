// The 3x3 singular value decomposition M = U diag(S) V^T and its derivative,
// in registers, shared by the CPU twins (svd3x3_cpu.cpp, similarity_align_cpu.cpp) and the CUDA
// kernels (svd3x3_cuda.cu, similarity_align_cuda.cu). Matrices are row-major: m[3 * row + col].
//
// Method: one-sided (Hestenes) Jacobi. Plane rotations applied from the right
// orthogonalise the columns of A = M / max|M_ij|; the accumulated rotations
// are V, the column norms of A V are the singular values, and U comes from a
// Gram-Schmidt / cross-product QR of A V, so it is orthonormal by
// construction even for rank-1, rank-2 and zero matrices. Working on A itself
// (never on A^T A) keeps small singular values accurate to eps * |A|, and the
// normalisation makes 1e-20 and 1e20 scales as accurate as unit ones.
// Every loop has a fixed bound: at most kMaxSweeps sweeps of three rotations,
// leaving early once a sweep rotates nothing.
#pragma once

#include "../common/hostdevice.h"
#include "../common/scalar_math.h"

namespace pgnface {
namespace procrustes {

template <typename T>
struct SvdConfig;
template <>
struct SvdConfig<float> {
  static constexpr int kMaxSweeps = 6;
  // Relative width of the regularisation of 1/(s_k -+ s_j) in the backward pass.
  static constexpr float kGapEps = 1e-5f;
};
template <>
struct SvdConfig<double> {
  static constexpr int kMaxSweeps = 10;
  static constexpr double kGapEps = 1e-8;
};

template <typename T>
PGN_HD T dot3(const T* a, const T* b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

template <typename T>
PGN_HD void cross3(const T* a, const T* b, T* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

template <typename T>
PGN_HD T det3(const T* m) {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
         m[2] * (m[3] * m[7] - m[4] * m[6]);
}

// One Jacobi rotation of columns P and Q of a (and of v) that makes them
// orthogonal. Columns are stored as a[col][row]. Returns whether it rotated:
// columns already orthogonal to working precision (or NaN) are left alone.
template <int P, int Q, typename T>
PGN_HD bool jacobi_rotate(T (&a)[3][3], T (&v)[3][3]) {
  const T alpha = dot3(a[P], a[P]);
  const T beta = dot3(a[Q], a[Q]);
  const T gamma = dot3(a[P], a[Q]);
  // |gamma| <= eps sqrt(alpha beta): orthogonal to working precision. (Should
  // alpha beta underflow, both columns are below 1e-19 of the largest entry
  // and rotating them would not change the result.)
  constexpr T eps2 = Eps<T>::value * Eps<T>::value;
  if (!(gamma * gamma > eps2 * alpha * beta)) return false;
  // tan of the rotation angle: the smaller root of t^2 + 2 zeta t - 1 = 0,
  // zeta = (beta - alpha) / (2 gamma), written without forming zeta (one
  // division fewer on the critical path). No overflow: the columns are
  // normalised, and gamma^2 > 0 keeps the denominator positive.
  const T diff = beta - alpha;
  const T g2 = T(2) * gamma;
  T t = g2 / (pgn_abs(diff) + pgn_sqrt(diff * diff + g2 * g2));
  if (diff < T(0)) t = -t;
  const T c = T(1) / pgn_sqrt(T(1) + t * t);
  const T s = c * t;
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    const T ap = a[P][i], aq = a[Q][i];
    a[P][i] = c * ap - s * aq;
    a[Q][i] = s * ap + c * aq;
    const T vp = v[P][i], vq = v[Q][i];
    v[P][i] = c * vp - s * vq;
    v[Q][i] = s * vp + c * vq;
  }
  return true;
}

// Swaps columns i and j of a and v and their squared norms when norm j is larger.
template <int I, int J, typename T>
PGN_HD void sort_pair(T (&a)[3][3], T (&v)[3][3], T (&n2)[3]) {
  if (n2[I] < n2[J]) {
    pgn_swap(n2[I], n2[J]);
    PGN_UNROLL
    for (int r = 0; r < 3; ++r) {
      pgn_swap(a[I][r], a[J][r]);
      pgn_swap(v[I][r], v[J][r]);
    }
  }
}

// A unit vector orthogonal to the unit vector u: the coordinate axis least
// aligned with u, with its u component removed.
// (No indexing by the data-dependent k, so u stays in registers on CUDA.)
template <typename T>
PGN_HD void any_orthogonal(const T* u, T* out) {
  const T a0 = pgn_abs(u[0]), a1 = pgn_abs(u[1]), a2 = pgn_abs(u[2]);
  const bool k0 = a0 <= a1 && a0 <= a2;
  const bool k1 = !k0 && a1 <= a2;
  const bool k2 = !k0 && !k1;
  const T uk = k0 ? u[0] : (k1 ? u[1] : u[2]);
  out[0] = (k0 ? T(1) : T(0)) - uk * u[0];
  out[1] = (k1 ? T(1) : T(0)) - uk * u[1];
  out[2] = (k2 ? T(1) : T(0)) - uk * u[2];
  const T inv = T(1) / pgn_sqrt(dot3(out, out));  // >= sqrt(2/3): u[k]^2 <= 1/3
  out[0] *= inv;
  out[1] *= inv;
  out[2] *= inv;
}

// Working state of one decomposition, split into stages (svd_begin, then up
// to kMaxSweeps svd_sweep calls, then svd_end) so that the CPU twin can
// interleave several independent matrices: each sweep is a long chain of
// dependent divisions and square roots, and interleaving hides its latency.
template <typename T>
struct SvdState {
  T a[3][3];     // columns of A V: a[j][i] = (A V)[i][j]
  T v[3][3];     // columns of V
  T scale;       // max |M_ij|; A = M / scale
  bool trivial;  // zero or non-finite M: nothing to iterate
};

// Normalises M into the state. Returns false when M is zero or non-finite
// (svd_end then writes U = V = I, S = 0, or NaN everywhere).
template <typename T>
PGN_HD bool svd_begin(const T* M, SvdState<T>& st) {
  T scale = T(0);
  T probe = T(0);  // stays 0 unless an entry is NaN or Inf (x - x is then NaN)
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) {
    scale = pgn_max(scale, pgn_abs(M[e]));
    probe += M[e] - M[e];
  }
  if (!(probe == T(0))) scale = T(NAN);
  st.scale = scale;
  st.trivial = !(scale > T(0)) || !(scale - scale == T(0));  // zero, NaN or Inf
  const T inv_scale = T(1) / scale;
  // Divide instead when 1/scale overflowed (subnormal scale) or is itself
  // subnormal (scale near the largest finite value): both would lose bits.
  const bool divide = !(inv_scale - inv_scale == T(0)) || inv_scale < Eps<T>::min_normal;
  PGN_UNROLL
  for (int j = 0; j < 3; ++j) {
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) {
      st.a[j][i] = divide ? M[3 * i + j] / scale : M[3 * i + j] * inv_scale;
      st.v[j][i] = i == j ? T(1) : T(0);
    }
  }
  return !st.trivial;
}

// One cyclic sweep of rotations (0,1), (0,2), (1,2). Returns whether any
// rotated; once none does, further sweeps change nothing.
template <typename T>
PGN_HD bool svd_sweep(SvdState<T>& st) {
  bool rotated = jacobi_rotate<0, 1>(st.a, st.v);
  rotated = jacobi_rotate<0, 2>(st.a, st.v) || rotated;
  rotated = jacobi_rotate<1, 2>(st.a, st.v) || rotated;
  return rotated;
}

// Sorts, completes U by QR of A V and writes M = U diag(S) V^T.
template <typename T>
PGN_HD void svd_end(SvdState<T>& st, T* U, T* S, T* V) {
  if (st.trivial) {
    const T fill = st.scale == T(0) ? T(0) : T(NAN);
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) {
      const T id = (e % 4 == 0) ? T(1) : T(0);
      U[e] = st.scale == T(0) ? id : fill;
      V[e] = U[e];
    }
    S[0] = S[1] = S[2] = fill;
    return;
  }
  T(&a)[3][3] = st.a;
  T(&v)[3][3] = st.v;
  T n2[3] = {dot3(a[0], a[0]), dot3(a[1], a[1]), dot3(a[2], a[2])};
  sort_pair<0, 1>(a, v, n2);
  sort_pair<0, 2>(a, v, n2);
  sort_pair<1, 2>(a, v, n2);

  // QR of A V = [a0 a1 a2]: the columns are orthogonal up to rounding, so R is
  // diagonal up to rounding and its diagonal holds the singular values.
  T u[3][3];
  const T s0 = pgn_sqrt(n2[0]);  // >= 1/sqrt(3): |A|_F >= max|A_ij| = 1
  const T inv_s0 = T(1) / s0;
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) u[0][i] = a[0][i] * inv_s0;
  const T p = dot3(u[0], a[1]);
  T w[3] = {a[1][0] - p * u[0][0], a[1][1] - p * u[0][1], a[1][2] - p * u[0][2]};
  T s1 = pgn_sqrt(dot3(w, w));
  if (s1 > T(4) * Eps<T>::value * s0) {
    const T inv_s1 = T(1) / s1;
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) u[1][i] = w[i] * inv_s1;
  } else {  // rank 1 (or zero beyond rounding): any direction completes U
    any_orthogonal(u[0], u[1]);
  }
  cross3(u[0], u[1], u[2]);
  T s2 = dot3(u[2], a[2]);
  if (s2 < T(0)) {
    s2 = -s2;
    u[2][0] = -u[2][0];
    u[2][1] = -u[2][1];
    u[2][2] = -u[2][2];
  }
  // Rounding can leave a repeated value an ulp out of order.
  s1 = pgn_min(s1, s0);
  s2 = pgn_min(s2, s1);
  const T scale = st.scale;
  S[0] = s0 * scale;
  S[1] = s1 * scale;
  S[2] = s2 * scale;
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) {
      U[3 * i + j] = u[j][i];
      V[3 * i + j] = v[j][i];
    }
  }
}

// M = U diag(S) V^T with S[0] >= S[1] >= S[2] >= 0 and U, V orthogonal
// (either determinant). A zero M gives U = V = I, S = 0; a non-finite M gives
// NaN everywhere.
template <typename T>
PGN_HD void svd3x3(const T* M, T* U, T* S, T* V) {
  SvdState<T> st;
  if (svd_begin(M, st)) {
    for (int sweep = 0; sweep < SvdConfig<T>::kMaxSweeps; ++sweep) {
      if (!svd_sweep(st)) break;
    }
  }
  svd_end(st, U, S, V);
}

// x / (x^2 + eps^2): 1/x for |x| >> eps, smoothly 0 at x = 0, |.| <= 1/(2 eps).
template <typename T>
PGN_HD T soft_inverse(T x, T eps) {
  return x / (x * x + eps * eps);
}

// Vector-Jacobian product of svd3x3: given dL/dU, dL/dS, dL/dV at
// (U, S, V) = svd3x3(M), writes dL/dM.
//
// The standard formula (Townsend 2016; torch's linalg_svd backward) is
//   dL/dM = U [ diag(gS) + (skew(U^T gU) o E) S + S (skew(V^T gV) o E) ] V^T,
// E_jk = 1 / (s_k^2 - s_j^2), skew(X) = X - X^T. Its (j, k) entry,
// (J_jk s_k + s_j K_jk) / (s_k^2 - s_j^2), is rewritten as
//   (J_jk + K_jk) / (2 (s_k - s_j)) + (J_jk - K_jk) / (2 (s_k + s_j)),
// and each 1/x is replaced by soft_inverse(x / s_0, kGapEps) / s_0. For a loss that
// is invariant to the rotations U, V are free to make within a repeated
// singular value (e.g. the polar factor U V^T) the first numerator vanishes,
// so the gradient stays exact at repeated values; otherwise the gradient of an
// ill-defined quantity is damped to a finite value instead of Inf/NaN.
template <typename T>
PGN_HD void svd3x3_backward(const T* U, const T* S, const T* V, const T* gU, const T* gS,
                            const T* gV, T* gM) {
  T J[9], K[9];  // U^T gU, V^T gV
  PGN_UNROLL
  for (int j = 0; j < 3; ++j) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      J[3 * j + k] = U[j] * gU[k] + U[3 + j] * gU[3 + k] + U[6 + j] * gU[6 + k];
      K[3 * j + k] = V[j] * gV[k] + V[3 + j] * gV[3 + k] + V[6 + j] * gV[6 + k];
    }
  }
  T G[9];
  const T s_max = S[0];
  // Gaps are measured relative to s_max so that 1e-20 and 1e20 scales neither
  // underflow nor overflow: 1/x = (1/s_max) / (x/s_max).
  const T inv_max = s_max > T(0) ? T(1) / s_max : T(0);
  const T eps = SvdConfig<T>::kGapEps;
  PGN_UNROLL
  for (int j = 0; j < 3; ++j) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      if (j == k) {
        G[3 * j + k] = gS[j];
        continue;
      }
      if (!(s_max > T(0))) {  // zero matrix: only the singular values move
        G[3 * j + k] = T(0);
        continue;
      }
      const T skewJ = J[3 * j + k] - J[3 * k + j];
      const T skewK = K[3 * j + k] - K[3 * k + j];
      const T minus = soft_inverse((S[k] - S[j]) * inv_max, eps) * inv_max;
      const T plus = soft_inverse((S[k] + S[j]) * inv_max, eps) * inv_max;
      G[3 * j + k] = T(0.5) * (skewJ + skewK) * minus + T(0.5) * (skewJ - skewK) * plus;
    }
  }
  // gM = U G V^T
  T UG[9];
  PGN_UNROLL
  for (int a = 0; a < 3; ++a) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      UG[3 * a + k] = U[3 * a] * G[k] + U[3 * a + 1] * G[3 + k] + U[3 * a + 2] * G[6 + k];
    }
  }
  PGN_UNROLL
  for (int a = 0; a < 3; ++a) {
    PGN_UNROLL
    for (int b = 0; b < 3; ++b) {
      gM[3 * a + b] =
          UG[3 * a] * V[3 * b] + UG[3 * a + 1] * V[3 * b + 1] + UG[3 * a + 2] * V[3 * b + 2];
    }
  }
}

}  // namespace procrustes
}  // namespace pgnface
