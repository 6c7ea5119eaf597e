// CPU twin of svd3x3 and similarity_align.
//
// Scheduling: at::parallel_for over matrices (svd3x3) or batch items
// (similarity_align); each matrix / item is solved by the same per-item code
// the CUDA kernels run (svd3x3.h, procrustes_kernel.h), its points reduced in
// a plain loop. The loops are compiled for baseline x86-64 and x86-64-v3
// (FMA), picked at load time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/check.h"
#include "../common/cpu_simd.h"
#include "procrustes.h"
#include "procrustes_kernel.h"
#include "svd3x3.h"

namespace pgnface {

namespace {

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef shape) {
  TORCH_CHECK(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
}

void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " must have dtype ", ref.scalar_type(),
              " like ", ref_name, ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), name, " must be on ", ref.device(), " like ", ref_name,
              ", got ", t.device());
}

}  // namespace

void check_svd3x3_args(const at::Tensor& M) {
  PGN_CHECK_FLOATING(M);
  PGN_CHECK_DIM(M, 3);
  PGN_CHECK_SIZE(M, 1, 3);
  PGN_CHECK_SIZE(M, 2, 3);
}

void check_svd3x3_backward_args(const at::Tensor& grad_U, const at::Tensor& grad_S,
                                const at::Tensor& grad_V, const at::Tensor& U,
                                const at::Tensor& S, const at::Tensor& V) {
  check_svd3x3_args(U);
  const int64_t B = U.size(0);
  check_shape(V, "V", {B, 3, 3});
  check_shape(S, "S", {B, 3});
  check_shape(grad_U, "grad_U", {B, 3, 3});
  check_shape(grad_S, "grad_S", {B, 3});
  check_shape(grad_V, "grad_V", {B, 3, 3});
  check_like(S, "S", U, "U");
  check_like(V, "V", U, "U");
  check_like(grad_U, "grad_U", U, "U");
  check_like(grad_S, "grad_S", U, "U");
  check_like(grad_V, "grad_V", U, "U");
}

void check_similarity_align_args(const at::Tensor& src, const at::Tensor& dst,
                                 const std::optional<at::Tensor>& weights) {
  PGN_CHECK_FLOATING(src);
  PGN_CHECK_DIM(src, 3);
  PGN_CHECK_SIZE(src, 2, 3);
  check_shape(dst, "dst", src.sizes());
  check_like(dst, "dst", src, "src");
  if (weights.has_value()) {
    check_shape(*weights, "weights", {src.size(0), src.size(1)});
    check_like(*weights, "weights", src, "src");
  }
}

void check_similarity_align_backward_args(const at::Tensor& grad_scale, const at::Tensor& grad_R,
                                          const at::Tensor& grad_t, const at::Tensor& src,
                                          const at::Tensor& dst,
                                          const std::optional<at::Tensor>& weights) {
  check_similarity_align_args(src, dst, weights);
  const int64_t B = src.size(0);
  check_shape(grad_scale, "grad_scale", {B});
  check_shape(grad_R, "grad_R", {B, 3, 3});
  check_shape(grad_t, "grad_t", {B, 3});
  check_like(grad_scale, "grad_scale", src, "src");
  check_like(grad_R, "grad_R", src, "src");
  check_like(grad_t, "grad_t", src, "src");
}

AlignBuffers contiguous_align_inputs(const at::Tensor& src, const at::Tensor& dst,
                                     const std::optional<at::Tensor>& weights) {
  return {src.contiguous(), dst.contiguous(),
          weights.has_value() ? weights->contiguous() : at::Tensor(), src.size(0), src.size(1)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_align_outputs(const AlignBuffers& in) {
  const auto opts = in.src.options();
  return {at::empty({in.B}, opts), at::empty({in.B, 3, 3}, opts), at::empty({in.B, 3}, opts)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_align_grads(const AlignBuffers& in) {
  const auto opts = in.src.options();
  return {at::empty({in.B, in.P, 3}, opts), at::empty({in.B, in.P, 3}, opts),
          in.weights.defined() ? at::empty({in.B, in.P}, opts) : at::empty({0}, opts)};
}

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
                                       const T* S, const T* V, T* gM, int64_t begin,
                                       int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    procrustes::svd3x3_backward(U + 9 * b, S + 3 * b, V + 9 * b, gU + 9 * b, gS + 3 * b,
                                gV + 9 * b, gM + 9 * b);
  }
}

// Points of one batch item.
template <typename T>
struct ItemPoints {
  const T* x;  // [P,3]
  const T* y;  // [P,3]
  const T* w;  // [P] or null (all ones)
  int64_t P;
};

template <typename T>
ItemPoints<T> item_points(const T* src, const T* dst, const T* weights, int64_t b, int64_t P) {
  return {src + b * P * 3, dst + b * P * 3, weights ? weights + b * P : nullptr, P};
}

// Point i's weight; a separate instantiation for "no weights" keeps a
// per-point null test out of the hot loops (it made them 2x slower).
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE T weight_at(const ItemPoints<T>& p, int64_t i) {
  if constexpr (kWeighted) {
    return p.w[i];
  } else {
    return T(1);
  }
}

// Both reductions over the item's points, then the per-item solve.
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE void align_item(const ItemPoints<T>& p, bool estimate_scale,
                                  procrustes::Alignment<T>& a) {
  T first[procrustes::kFirstSums] = {};
  for (int64_t i = 0; i < p.P; ++i) {
    procrustes::accumulate_first(p.x + 3 * i, p.y + 3 * i, weight_at<kWeighted>(p, i), first);
  }
  T mu_x[3], mu_y[3];
  procrustes::centroids(first, mu_x, mu_y);
  T second[procrustes::kSecondSums] = {};
  for (int64_t i = 0; i < p.P; ++i) {
    procrustes::accumulate_second(p.x + 3 * i, p.y + 3 * i, weight_at<kWeighted>(p, i), mu_x,
                                  mu_y, second);
  }
  procrustes::solve_alignment(first, second, estimate_scale, a);
}

template <typename T>
struct AlignArgs {
  const T *src, *dst, *weights;  // weights may be null
  int64_t P;
  bool estimate_scale;
};

template <bool kWeighted, typename T>
PGN_CPU_CLONES void align_range(const AlignArgs<T>& args, T* scale, T* R, T* t, int64_t begin,
                                int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    procrustes::Alignment<T> a;
    align_item<kWeighted>(item_points(args.src, args.dst, args.weights, b, args.P),
                          args.estimate_scale, a);
    scale[b] = a.scale;
    for (int e = 0; e < 9; ++e) R[9 * b + e] = a.R[e];
    for (int i = 0; i < 3; ++i) t[3 * b + i] = a.t[i];
  }
}

template <bool kWeighted, typename T>
PGN_CPU_CLONES void align_backward_range(const AlignArgs<T>& args, const T* g_scale,
                                         const T* g_R, const T* g_t, T* g_src, T* g_dst,
                                         T* g_w, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    const ItemPoints<T> p = item_points(args.src, args.dst, args.weights, b, args.P);
    procrustes::Alignment<T> a;
    align_item<kWeighted>(p, args.estimate_scale, a);
    procrustes::AlignmentGrad<T> g;
    procrustes::alignment_backward(a, g_scale[b], g_R + 9 * b, g_t + 3 * b, g);
    const int64_t base = b * args.P;
    for (int64_t i = 0; i < args.P; ++i) {
      procrustes::alignment_point_grad(a, g, p.x + 3 * i, p.y + 3 * i, weight_at<kWeighted>(p, i),
                                       g_src + 3 * (base + i), g_dst + 3 * (base + i),
                                       g_w ? g_w + base + i : nullptr);
    }
  }
}

template <typename T>
AlignArgs<T> align_args(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& weights,
                        bool estimate_scale) {
  return {src.data_ptr<T>(), dst.data_ptr<T>(),
          weights.defined() ? weights.data_ptr<T>() : nullptr, src.size(1), estimate_scale};
}

// Matrices per parallel chunk: a few microseconds of work each.
constexpr int64_t kSvdGrain = 1024;

int64_t align_grain(int64_t P) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1)); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> svd3x3_cpu(const at::Tensor& M_in) {
  check_svd3x3_args(M_in);
  const at::Tensor M = M_in.contiguous();
  const int64_t B = M.size(0);
  at::Tensor U = at::empty({B, 3, 3}, M.options());
  at::Tensor S = at::empty({B, 3}, M.options());
  at::Tensor V = at::empty({B, 3, 3}, M.options());
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "svd3x3_cpu", [&] {
    const scalar_t* m = M.data_ptr<scalar_t>();
    scalar_t *u = U.data_ptr<scalar_t>(), *s = S.data_ptr<scalar_t>(), *v = V.data_ptr<scalar_t>();
    at::parallel_for(0, B, kSvdGrain,
                     [&](int64_t begin, int64_t end) { svd_range(m, u, s, v, begin, end); });
  });
  return {U, S, V};
}

at::Tensor svd3x3_backward_cpu(const at::Tensor& grad_U_in, const at::Tensor& grad_S_in,
                               const at::Tensor& grad_V_in, const at::Tensor& U_in,
                               const at::Tensor& S_in, const at::Tensor& V_in) {
  check_svd3x3_backward_args(grad_U_in, grad_S_in, grad_V_in, U_in, S_in, V_in);
  const at::Tensor gU = grad_U_in.contiguous(), gS = grad_S_in.contiguous(),
                   gV = grad_V_in.contiguous(), U = U_in.contiguous(), S = S_in.contiguous(),
                   V = V_in.contiguous();
  const int64_t B = U.size(0);
  at::Tensor gM = at::empty({B, 3, 3}, U.options());
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "svd3x3_backward_cpu", [&] {
    at::parallel_for(0, B, kSvdGrain, [&](int64_t begin, int64_t end) {
      svd_backward_range(gU.data_ptr<scalar_t>(), gS.data_ptr<scalar_t>(),
                         gV.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(),
                         V.data_ptr<scalar_t>(), gM.data_ptr<scalar_t>(), begin, end);
    });
  });
  return gM;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_cpu(
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale) {
  check_similarity_align_args(src_in, dst_in, weights_in);
  const AlignBuffers in = contiguous_align_inputs(src_in, dst_in, weights_in);
  const at::Tensor &src = in.src, &dst = in.dst, &weights = in.weights;
  const int64_t B = in.B, P = in.P;
  at::Tensor scale, R, t;
  std::tie(scale, R, t) = empty_align_outputs(in);  // (no structured bindings: lambdas capture them)
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_cpu", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    scalar_t *s = scale.data_ptr<scalar_t>(), *r = R.data_ptr<scalar_t>(),
             *tr = t.data_ptr<scalar_t>();
    at::parallel_for(0, B, align_grain(P), [&](int64_t begin, int64_t end) {
      if (args.weights) {
        align_range<true>(args, s, r, tr, begin, end);
      } else {
        align_range<false>(args, s, r, tr, begin, end);
      }
    });
  });
  return {scale, R, t};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cpu(
    const at::Tensor& grad_scale_in, const at::Tensor& grad_R_in, const at::Tensor& grad_t_in,
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale) {
  check_similarity_align_backward_args(grad_scale_in, grad_R_in, grad_t_in, src_in, dst_in,
                                       weights_in);
  const AlignBuffers in = contiguous_align_inputs(src_in, dst_in, weights_in);
  const at::Tensor &src = in.src, &dst = in.dst, &weights = in.weights;
  const at::Tensor gs = grad_scale_in.contiguous(), gR = grad_R_in.contiguous(),
                   gt = grad_t_in.contiguous();
  const int64_t B = in.B, P = in.P;
  at::Tensor g_src, g_dst, g_w;
  std::tie(g_src, g_dst, g_w) = empty_align_grads(in);
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_backward_cpu", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    const scalar_t *gs_p = gs.data_ptr<scalar_t>(), *gR_p = gR.data_ptr<scalar_t>(),
                   *gt_p = gt.data_ptr<scalar_t>();
    scalar_t *gx = g_src.data_ptr<scalar_t>(), *gy = g_dst.data_ptr<scalar_t>();
    at::parallel_for(0, B, align_grain(P), [&](int64_t begin, int64_t end) {
      if (args.weights) {
        align_backward_range<true>(args, gs_p, gR_p, gt_p, gx, gy, g_w.data_ptr<scalar_t>(),
                                   begin, end);
      } else {
        align_backward_range<false>(args, gs_p, gR_p, gt_p, gx, gy, static_cast<scalar_t*>(nullptr),
                                    begin, end);
      }
    });
  });
  return {g_src, g_dst, g_w};
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("svd3x3", &svd3x3_cpu);
  m.impl("svd3x3_backward", &svd3x3_backward_cpu);
  m.impl("similarity_align", &similarity_align_cpu);
  m.impl("similarity_align_backward", &similarity_align_backward_cpu);
}

}  // namespace pgnface
