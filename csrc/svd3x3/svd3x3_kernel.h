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
// orthogonal. Columns are stored as a[col][row]. Returns which lanes rotated:
// columns already orthogonal to working precision (or NaN) are left alone.
template <int P, int Q, typename L>
PGN_HD lane_mask_t<L> jacobi_rotate(L (&a)[3][3], L (&v)[3][3]) {
  using T = lane_scalar_t<L>;
  const L alpha = dot3(a[P], a[P]);
  const L beta = dot3(a[Q], a[Q]);
  const L gamma = dot3(a[P], a[Q]);
  // |gamma| <= eps sqrt(alpha beta): orthogonal to working precision. (Should
  // alpha beta underflow, both columns are below 1e-19 of the largest entry
  // and rotating them would not change the result.)
  constexpr T eps2 = Eps<T>::value * Eps<T>::value;
  const lane_mask_t<L> rotate = gamma * gamma > L(eps2) * alpha * beta;
  if (!lane_any(rotate)) return rotate;
  // t = tan of the rotation angle, the smaller root of t^2 + 2 zeta t - 1 = 0
  // with zeta = (beta - alpha) / (2 gamma), is sign(beta - alpha) g2 / q for
  // g2 = 2 gamma, r = sqrt((beta - alpha)^2 + g2^2), q = |beta - alpha| + r.
  // Then c = 1 / sqrt(1 + t^2) = q / h and |s| = c |t| = |g2| / h with
  // h^2 = q^2 + g2^2 = 2 r q: two square roots and one division per rotation,
  // since the divider is what the CPU twin's lanes wait on. No overflow: the
  // columns are normalised, and gamma^2 > 0 keeps h positive. (Lanes that do
  // not rotate may compute NaN here; the selects below discard it.)
  const L diff = beta - alpha;
  const L g2 = L(2) * gamma;
  const L r = pgn_sqrt(diff * diff + g2 * g2);
  const L q = pgn_abs(diff) + r;
  const L inv_h = L(1) / pgn_sqrt(L(2) * r * q);
  const L c = q * inv_h;
  const L s_abs = g2 * inv_h;
  const L s = lane_select(diff < L(0), -s_abs, s_abs);
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    const L ap = a[P][i], aq = a[Q][i];
    a[P][i] = lane_select(rotate, c * ap - s * aq, ap);
    a[Q][i] = lane_select(rotate, s * ap + c * aq, aq);
    const L vp = v[P][i], vq = v[Q][i];
    v[P][i] = lane_select(rotate, c * vp - s * vq, vp);
    v[Q][i] = lane_select(rotate, s * vp + c * vq, vq);
  }
  return rotate;
}

// Swaps columns i and j of a and v and their squared norms when norm j is larger.
template <int I, int J, typename L>
PGN_HD void sort_pair(L (&a)[3][3], L (&v)[3][3], L (&n2)[3]) {
  const lane_mask_t<L> swap = n2[I] < n2[J];
  if (!lane_any(swap)) return;
  const L ni = n2[I], nj = n2[J];
  n2[I] = lane_select(swap, nj, ni);
  n2[J] = lane_select(swap, ni, nj);
  PGN_UNROLL
  for (int r = 0; r < 3; ++r) {
    const L ai = a[I][r], aj = a[J][r], vi = v[I][r], vj = v[J][r];
    a[I][r] = lane_select(swap, aj, ai);
    a[J][r] = lane_select(swap, ai, aj);
    v[I][r] = lane_select(swap, vj, vi);
    v[J][r] = lane_select(swap, vi, vj);
  }
}

// A unit vector orthogonal to the unit vector u: the coordinate axis least
// aligned with u, with its u component removed.
// (No indexing by the data-dependent k, so u stays in registers on CUDA.)
template <typename L>
PGN_HD void any_orthogonal(const L* u, L* out) {
  const L a0 = pgn_abs(u[0]), a1 = pgn_abs(u[1]), a2 = pgn_abs(u[2]);
  const lane_mask_t<L> k0 = a0 <= a1 && a0 <= a2;
  const lane_mask_t<L> k1 = !k0 && a1 <= a2;
  const lane_mask_t<L> k2 = !k0 && !k1;
  const L uk = lane_select(k0, u[0], lane_select(k1, u[1], u[2]));
  out[0] = lane_select(k0, L(1), L(0)) - uk * u[0];
  out[1] = lane_select(k1, L(1), L(0)) - uk * u[1];
  out[2] = lane_select(k2, L(1), L(0)) - uk * u[2];
  const L inv = L(1) / pgn_sqrt(dot3(out, out));  // >= sqrt(2/3): u[k]^2 <= 1/3
  out[0] *= inv;
  out[1] *= inv;
  out[2] *= inv;
}

// Working state of one decomposition (one per lane), split into stages
// (svd_begin, then up to kMaxSweeps svd_sweep calls, then svd_end) so that the
// CPU twin can interleave several independent matrices: each sweep is a long
// chain of dependent divisions and square roots, and interleaving hides its
// latency.
template <typename L>
struct SvdState {
  L a[3][3];               // columns of A V: a[j][i] = (A V)[i][j]
  L v[3][3];               // columns of V
  L scale;                 // max |M_ij|; A = M / scale
  lane_mask_t<L> trivial;  // zero or non-finite M: nothing to iterate
};

// Normalises M into the state. Returns false when M is zero or non-finite in
// every lane (svd_end then writes U = V = I, S = 0, or NaN everywhere).
template <typename L>
PGN_HD bool svd_begin(const L* M, SvdState<L>& st) {
  using T = lane_scalar_t<L>;
  L scale = L(0);
  L probe = L(0);  // stays 0 unless an entry is NaN or Inf (x - x is then NaN)
  PGN_UNROLL
  for (int e = 0; e < 9; ++e) {
    scale = pgn_max(scale, pgn_abs(M[e]));
    probe += M[e] - M[e];
  }
  scale = lane_select(!(probe == L(0)), L(T(NAN)), scale);
  st.scale = scale;
  st.trivial = !(scale > L(0)) || !(scale - scale == L(0));  // zero, NaN or Inf
  const L inv_scale = L(1) / scale;
  // Divide instead when 1/scale overflowed (subnormal scale) or is itself
  // subnormal (scale near the largest finite value): both would lose bits.
  const lane_mask_t<L> divide =
      !(inv_scale - inv_scale == L(0)) || inv_scale < L(Eps<T>::min_normal);
  const bool any_divide = lane_any(divide);
  PGN_UNROLL
  for (int j = 0; j < 3; ++j) {
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) {
      const L m = M[3 * i + j];
      st.a[j][i] = any_divide ? lane_select(divide, m / scale, m * inv_scale) : m * inv_scale;
      st.v[j][i] = i == j ? L(1) : L(0);
    }
  }
  return !lane_all(st.trivial);
}

// One cyclic sweep of rotations (0,1), (0,2), (1,2). Returns whether any lane
// rotated; once none does, further sweeps change nothing.
template <typename L>
PGN_HD bool svd_sweep(SvdState<L>& st) {
  const lane_mask_t<L> r01 = jacobi_rotate<0, 1>(st.a, st.v);
  const lane_mask_t<L> r02 = jacobi_rotate<0, 2>(st.a, st.v);
  const lane_mask_t<L> r12 = jacobi_rotate<1, 2>(st.a, st.v);
  return lane_any(r01 || r02 || r12);
}

// Sorts, completes U by QR of A V and writes M = U diag(S) V^T.
template <typename L>
PGN_HD void svd_end(SvdState<L>& st, L* U, L* S, L* V) {
  using T = lane_scalar_t<L>;
  // Trivial lanes: U = V = I, S = 0 for a zero M, NaN everywhere otherwise.
  const lane_mask_t<L> zero = st.scale == L(0);
  const L fill = lane_select(zero, L(0), L(T(NAN)));
  if (lane_all(st.trivial)) {
    PGN_UNROLL
    for (int e = 0; e < 9; ++e) {
      const L id = (e % 4 == 0) ? L(1) : L(0);
      U[e] = lane_select(zero, id, fill);
      V[e] = U[e];
    }
    S[0] = S[1] = S[2] = fill;
    return;
  }
  L(&a)[3][3] = st.a;
  L(&v)[3][3] = st.v;
  L n2[3] = {dot3(a[0], a[0]), dot3(a[1], a[1]), dot3(a[2], a[2])};
  sort_pair<0, 1>(a, v, n2);
  sort_pair<0, 2>(a, v, n2);
  sort_pair<1, 2>(a, v, n2);

  // QR of A V = [a0 a1 a2]: the columns are orthogonal up to rounding, so R is
  // diagonal up to rounding and its diagonal holds the singular values.
  L u[3][3];
  const L s0 = pgn_sqrt(n2[0]);  // >= 1/sqrt(3): |A|_F >= max|A_ij| = 1
  const L inv_s0 = L(1) / s0;
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) u[0][i] = a[0][i] * inv_s0;
  const L p = dot3(u[0], a[1]);
  const L w[3] = {a[1][0] - p * u[0][0], a[1][1] - p * u[0][1], a[1][2] - p * u[0][2]};
  L s1 = pgn_sqrt(dot3(w, w));
  const lane_mask_t<L> full = s1 > L(T(4) * Eps<T>::value) * s0;
  if (lane_any(full)) {
    const L inv_s1 = L(1) / s1;
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) u[1][i] = w[i] * inv_s1;
  }
  if (!lane_all(full)) {  // rank 1 (or zero beyond rounding): any direction completes U
    L o[3];
    any_orthogonal(u[0], o);
    PGN_UNROLL
    for (int i = 0; i < 3; ++i) u[1][i] = lane_all(!full) ? o[i] : lane_select(full, u[1][i], o[i]);
  }
  cross3(u[0], u[1], u[2]);
  L s2 = dot3(u[2], a[2]);
  const lane_mask_t<L> flip = s2 < L(0);
  s2 = lane_select(flip, -s2, s2);
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) u[2][i] = lane_select(flip, -u[2][i], u[2][i]);
  // Rounding can leave a repeated value an ulp out of order.
  s1 = pgn_min(s1, s0);
  s2 = pgn_min(s2, s1);
  const L scale = st.scale;
  const lane_mask_t<L> trivial = st.trivial;
  S[0] = lane_select(trivial, fill, s0 * scale);
  S[1] = lane_select(trivial, fill, s1 * scale);
  S[2] = lane_select(trivial, fill, s2 * scale);
  PGN_UNROLL
  for (int i = 0; i < 3; ++i) {
    PGN_UNROLL
    for (int j = 0; j < 3; ++j) {
      const L id = i == j ? L(1) : L(0);
      const L fill_ij = lane_select(zero, id, fill);
      U[3 * i + j] = lane_select(trivial, fill_ij, u[j][i]);
      V[3 * i + j] = lane_select(trivial, fill_ij, v[j][i]);
    }
  }
}

// M = U diag(S) V^T with S[0] >= S[1] >= S[2] >= 0 and U, V orthogonal
// (either determinant). A zero M gives U = V = I, S = 0; a non-finite M gives
// NaN everywhere. L is a lane type (see common/scalar_math.h).
template <typename L>
PGN_HD void svd3x3(const L* M, L* U, L* S, L* V) {
  SvdState<L> st;
  if (svd_begin(M, st)) {
    for (int sweep = 0; sweep < SvdConfig<lane_scalar_t<L>>::kMaxSweeps; ++sweep) {
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
template <typename L>
PGN_HD void svd3x3_backward(const L* U, const L* S, const L* V, const L* gU, const L* gS,
                            const L* gV, L* gM) {
  using T = lane_scalar_t<L>;
  L J[9], K[9];  // U^T gU, V^T gV
  PGN_UNROLL
  for (int j = 0; j < 3; ++j) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      J[3 * j + k] = U[j] * gU[k] + U[3 + j] * gU[3 + k] + U[6 + j] * gU[6 + k];
      K[3 * j + k] = V[j] * gV[k] + V[3 + j] * gV[3 + k] + V[6 + j] * gV[6 + k];
    }
  }
  L G[9];
  const L s_max = S[0];
  // Gaps are measured relative to s_max so that 1e-20 and 1e20 scales neither
  // underflow nor overflow: 1/x = (1/s_max) / (x/s_max).
  const lane_mask_t<L> nonzero = s_max > L(0);
  const L inv_max = lane_select(nonzero, L(1) / s_max, L(0));
  const L eps = L(SvdConfig<T>::kGapEps);
  // The inverse gaps of each pair j < k, shared by entries (j, k) and (k, j):
  // soft_inverse is odd and negation is exact, so entry (k, j) takes -minus.
  L minus[3], plus[3];
  PGN_UNROLL
  for (int pair = 0; pair < 3; ++pair) {
    const int j = pair == 2 ? 1 : 0, k = pair == 0 ? 1 : 2;
    minus[pair] = soft_inverse((S[k] - S[j]) * inv_max, eps) * inv_max;
    plus[pair] = soft_inverse((S[k] + S[j]) * inv_max, eps) * inv_max;
  }
  PGN_UNROLL
  for (int j = 0; j < 3; ++j) {
    PGN_UNROLL
    for (int k = 0; k < 3; ++k) {
      if (j == k) {
        G[3 * j + k] = gS[j];
        continue;
      }
      const int pair = j + k - 1;  // (0, 1) -> 0, (0, 2) -> 1, (1, 2) -> 2
      const L skewJ = J[3 * j + k] - J[3 * k + j];
      const L skewK = K[3 * j + k] - K[3 * k + j];
      const L minus_jk = j < k ? minus[pair] : -minus[pair];
      // zero matrix: only the singular values move
      G[3 * j + k] = lane_select(
          nonzero, L(0.5) * (skewJ + skewK) * minus_jk + L(0.5) * (skewJ - skewK) * plus[pair],
          L(0));
    }
  }
  // gM = U G V^T
  L UG[9];
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
