// CPU twin of similarity_align.
//
// Scheduling: at::parallel_for over batch items; each item is solved by the
// same per-item code the CUDA kernels run (similarity_align_kernel.h,
// svd3x3_kernel.h), its points reduced in a plain loop. The loops are compiled
// for baseline x86-64 and x86-64-v3 (FMA), picked at load time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/cpu_simd.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "similarity_align.h"
#include "similarity_align_kernel.h"

namespace pgnface {
namespace {

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

// Both reductions over the item's points, then the per-item solve. With a
// status word (the forward op's value check) the first pass also checks the
// values it reads (procrustes::first_pass_status).
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE void align_item(const ItemPoints<T>& p, bool estimate_scale,
                                  procrustes::Alignment<T>& a, int32_t* status = nullptr) {
  T first[procrustes::kFirstSums] = {};
  for (int64_t i = 0; i < p.P; ++i) {
    procrustes::accumulate_first(p.x + 3 * i, p.y + 3 * i, weight_at<kWeighted>(p, i), first);
  }
  if (status) {
    int32_t bits = procrustes::first_pass_status(first, p.x, p.y, p.w, 0, p.P, 1);
    if constexpr (kWeighted) {
      // The item's weights are in L1 now; a separate OR-reduction vectorises, where a
      // running minimum inside the loop above made the weighted pass 2x slower.
      bool negative = false;
      for (int64_t i = 0; i < p.P; ++i) negative |= p.w[i] < T(0);
      if (negative) bits |= procrustes::kNegativeWeightBit;
    }
    if (bits) flag_status(status, bits);
  }
  T mu_x[3], mu_y[3];
  procrustes::centroids(first, mu_x, mu_y);
  T second[procrustes::kSecondSums] = {};
  for (int64_t i = 0; i < p.P; ++i) {
    procrustes::accumulate_second(p.x + 3 * i, p.y + 3 * i, weight_at<kWeighted>(p, i), mu_x, mu_y,
                                  second);
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
                                int64_t end, int32_t* status) {
  for (int64_t b = begin; b < end; ++b) {
    procrustes::Alignment<T> a;
    align_item<kWeighted>(item_points(args.src, args.dst, args.weights, b, args.P),
                          args.estimate_scale, a, status);
    scale[b] = a.scale;
    for (int e = 0; e < 9; ++e) R[9 * b + e] = a.R[e];
    for (int i = 0; i < 3; ++i) t[3 * b + i] = a.t[i];
  }
}

template <bool kWeighted, typename T>
PGN_CPU_CLONES void align_backward_range(const AlignArgs<T>& args, const T* g_scale, const T* g_R,
                                         const T* g_t, T* g_src, T* g_dst, T* g_w, int64_t begin,
                                         int64_t end) {
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
  return {src.data_ptr<T>(), dst.data_ptr<T>(), weights.defined() ? weights.data_ptr<T>() : nullptr,
          src.size(1), estimate_scale};
}

int64_t align_grain(int64_t P) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1)); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> similarity_align_cpu(
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale, int64_t check) {
  const auto call = similarity_align_prologue(src_in, dst_in, weights_in);
  const at::Tensor status = new_status(src_in, check);
  int32_t* st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  const at::Tensor &src = call.src, &dst = call.dst, &weights = call.weights;
  const at::Tensor &scale = call.scale, &R = call.R, &t = call.t;
  const int64_t B = call.B, P = call.P;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_cpu", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    scalar_t *s = scale.data_ptr<scalar_t>(), *r = R.data_ptr<scalar_t>(),
             *tr = t.data_ptr<scalar_t>();
    at::parallel_for(0, B, align_grain(P), [&](int64_t begin, int64_t end) {
      if (args.weights) {
        align_range<true>(args, s, r, tr, begin, end, st);
      } else {
        align_range<false>(args, s, r, tr, begin, end, st);
      }
    });
  });
  similarity_align_act_on_status(status, check, call);
  return {scale, R, t, status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cpu(
    const at::Tensor& grad_scale_in, const at::Tensor& grad_R_in, const at::Tensor& grad_t_in,
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale) {
  const auto call = similarity_align_backward_prologue(grad_scale_in, grad_R_in, grad_t_in, src_in,
                                                       dst_in, weights_in);
  const at::Tensor &src = call.src, &dst = call.dst, &weights = call.weights;
  const at::Tensor &gs = call.grad_scale, &gR = call.grad_R, &gt = call.grad_t;
  const at::Tensor &g_src = call.grad_src, &g_dst = call.grad_dst, &g_w = call.grad_weights;
  const int64_t B = call.B, P = call.P;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_backward_cpu", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    const scalar_t *gs_p = gs.data_ptr<scalar_t>(), *gR_p = gR.data_ptr<scalar_t>(),
                   *gt_p = gt.data_ptr<scalar_t>();
    scalar_t *gx = g_src.data_ptr<scalar_t>(), *gy = g_dst.data_ptr<scalar_t>();
    at::parallel_for(0, B, align_grain(P), [&](int64_t begin, int64_t end) {
      if (args.weights) {
        align_backward_range<true>(args, gs_p, gR_p, gt_p, gx, gy, g_w.data_ptr<scalar_t>(), begin,
                                   end);
      } else {
        align_backward_range<false>(args, gs_p, gR_p, gt_p, gx, gy, static_cast<scalar_t*>(nullptr),
                                    begin, end);
      }
    });
  });
  return {g_src, g_dst, g_w};
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("similarity_align", &similarity_align_cpu);
  m.impl("similarity_align_backward", &similarity_align_backward_cpu);
}

}  // namespace pgnface
