// CPU twin of similarity_align.
//
// Scheduling: parallel over batch items, pieces handed out dynamically
// (common/cpu_parallel.h); each item is solved by the
// same per-item code the CUDA kernels run (similarity_align_kernel.h,
// svd3x3_kernel.h). The SIMD path (the default) reduces each item's points
// Simd<T>::width at a time (one point per lane, loaded from the interleaved
// [P,3] arrays by common/cpu_points.h's shuffles; then the sums across lanes
// of a lane group's items at once) and
// solves Simd<T>::width items at once, one per lane of the lane-type
// instantiation of the per-item code. The forward pass returns each item's sums
// ([B, kSums]); the backward pass solves the items again from them, lane groups
// as in the forward (so the same bits), without reading the points for it, and
// forms the points' gradients a lane of points at a time. The scalar path (what
// CUDA runs per item, reachable with torch.ops.pgnface.set_cpu_simd(False))
// reduces in a plain loop and solves one item at a time. The loops are compiled for baseline x86-64
// and x86-64-v3 (AVX2 + FMA), picked at load time.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/cpu_lanes.h"
#include "../common/cpu_parallel.h"
#include "../common/cpu_points.h"
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
  int64_t readable;  // points that may be read from x, y (and w): to the end of the batch
};

template <typename T>
ItemPoints<T> item_points(const T* src, const T* dst, const T* weights, int64_t b, int64_t P,
                          int64_t B) {
  return {src + b * P * 3, dst + b * P * 3, weights ? weights + b * P : nullptr, P, (B - b) * P};
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

// Both reductions over the item's points into sums (procrustes::kSums: the
// first-pass sums, then the second-pass ones). With a status word (the forward
// op's value check) the first pass also checks the values it reads
// (procrustes::first_pass_status).
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE void item_sums(const ItemPoints<T>& p, T* sums, int32_t* status = nullptr) {
  // Local sums stay in registers: sums may alias the points as far as the compiler knows.
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
  for (int k = 0; k < procrustes::kFirstSums; ++k) sums[k] = first[k];
  for (int k = 0; k < procrustes::kSecondSums; ++k) sums[procrustes::kFirstSums + k] = second[k];
}

template <typename T>
struct AlignArgs {
  const T *src, *dst, *weights;  // weights may be null
  int64_t B, P;
  bool estimate_scale;
};

// The forward's outputs: scale [B], R [B,3,3], t [B,3], sums [B,kSums].
template <typename T>
struct AlignOut {
  T *scale, *R, *t, *sums;
};

template <bool kWeighted, typename T>
PGN_CPU_CLONES void align_range(const AlignArgs<T>& args, const AlignOut<T>& out, int64_t begin,
                                int64_t end, int32_t* status) {
  constexpr int K = procrustes::kSums;
  T *scale = out.scale, *R = out.R, *t = out.t;
  for (int64_t b = begin; b < end; ++b) {
    T sums[K];  // solved from locals, like the backward, so both compile alike
    item_sums<kWeighted>(item_points(args.src, args.dst, args.weights, b, args.P, args.B), sums,
                         status);
    procrustes::Alignment<T> a;
    procrustes::solve_alignment(sums, sums + procrustes::kFirstSums, args.estimate_scale, a);
    for (int k = 0; k < K; ++k) out.sums[K * b + k] = sums[k];
    scale[b] = a.scale;
    for (int e = 0; e < 9; ++e) R[9 * b + e] = a.R[e];
    for (int i = 0; i < 3; ++i) t[3 * b + i] = a.t[i];
  }
}

template <bool kWeighted, typename T>
PGN_CPU_CLONES void align_backward_range(const AlignArgs<T>& args, const T* sums, const T* g_scale,
                                         const T* g_R, const T* g_t, T* g_src, T* g_dst, T* g_w,
                                         int64_t begin, int64_t end) {
  constexpr int K = procrustes::kSums;
  for (int64_t b = begin; b < end; ++b) {
    const ItemPoints<T> p = item_points(args.src, args.dst, args.weights, b, args.P, args.B);
    T s[K];
    for (int k = 0; k < K; ++k) s[k] = sums[K * b + k];
    procrustes::Alignment<T> a;
    procrustes::solve_alignment(s, s + procrustes::kFirstSums, args.estimate_scale, a);
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

// --- SIMD path ------------------------------------------------------------------

// Points i .. i + n - 1 (n <= width) of a [P,3] array as three lane vectors
// (x, y, z); lanes past n hold 0.
template <typename T>
PGN_ALWAYS_INLINE void load_points(const T* p, int n, LaneVec<T>* out) {
  constexpr int W = Simd<T>::width;
  if (n == W) {
    load_points3(p, out);
    return;
  }
  for (int d = 0; d < 3; ++d) out[d] = LaneVec<T>(T(0));
  for (int l = 0; l < n; ++l) {
    for (int d = 0; d < 3; ++d) out[d].v[l] = p[3 * l + d];
  }
}

template <typename T>
PGN_ALWAYS_INLINE void store_points(const LaneVec<T>* in, int n, T* p) {
  if (n == Simd<T>::width) {
    store_points3(in, p);
    return;
  }
  for (int l = 0; l < n; ++l) {
    for (int d = 0; d < 3; ++d) p[3 * l + d] = in[d].v[l];
  }
}

// Points i .. i + n - 1 (n < width) of an item as lane vectors and their
// weights (w[i..], or ones), lanes past n holding 0. Where the batch goes on
// past the item, whole-vector loads read on into the next item's points and a
// select zeroes those lanes; a vector assembled lane by lane in memory instead
// makes the vector load that reads it wait for its stores. The last item's
// tail takes that lane-by-lane path.
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE void load_tail(const ItemPoints<T>& p, int64_t i, int n, LaneVec<T>* x,
                                 LaneVec<T>* y, LaneVec<T>& w) {
  using L = LaneVec<T>;
  using M = typename SimdMask<T>::type;
  constexpr int W = Simd<T>::width;
  if (i + W <= p.readable) {
    load_points3(p.x + 3 * i, x);
    load_points3(p.y + 3 * i, y);
    const LaneMask<T> below{lane_indices<T>() < M{} + n};
    for (int d = 0; d < 3; ++d) {
      x[d] = lane_select(below, x[d], L(T(0)));
      y[d] = lane_select(below, y[d], L(T(0)));
    }
    w = lane_select(below, kWeighted ? L::load(p.w + i) : L(T(1)), L(T(0)));
    return;
  }
  load_points(p.x + 3 * i, n, x);
  load_points(p.y + 3 * i, n, y);
  w = L(T(0));
  for (int l = 0; l < n; ++l) w.v[l] = kWeighted ? p.w[i + l] : T(1);
}

// The first-pass sums of one item as lane vectors of partial sums (lane l
// sums points l, l + width, ...), its points a lane vector at a time. w_min
// receives the smallest weight read (kWeighted and kCheck only: the fused
// value check's test for negative weights).
template <bool kWeighted, bool kCheck, typename T>
PGN_ALWAYS_INLINE void item_first_simd(const ItemPoints<T>& p, LaneVec<T>* f, LaneVec<T>& w_min) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  for (int k = 0; k < procrustes::kFirstSums; ++k) f[k] = L(T(0));
  w_min = L(T(0));
  int64_t i = 0;
  for (; i + W <= p.P; i += W) {
    L x[3], y[3];
    load_points(p.x + 3 * i, W, x);
    load_points(p.y + 3 * i, W, y);
    // Unweighted: w is the constant 1 and its products fold away.
    const L w = kWeighted ? L::load(p.w + i) : L(T(1));
    if constexpr (kCheck && kWeighted) w_min = pgn_min(w_min, w);
    procrustes::accumulate_first(x, y, w, f);
  }
  if (i < p.P) {
    L x[3], y[3], w;
    load_tail<kWeighted>(p, i, static_cast<int>(p.P - i), x, y, w);  // 0 past the item
    if constexpr (kCheck && kWeighted) w_min = pgn_min(w_min, w);
    procrustes::accumulate_first(x, y, w, f);
  }
}

// The second-pass sums of one item (centroids mx, my broadcast) as lane
// vectors of partial sums.
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE void item_second_simd(const ItemPoints<T>& p, const LaneVec<T>* mx,
                                        const LaneVec<T>* my, LaneVec<T>* sec) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  for (int k = 0; k < procrustes::kSecondSums; ++k) sec[k] = L(T(0));
  int64_t i = 0;
  for (; i + W <= p.P; i += W) {
    L x[3], y[3];
    load_points(p.x + 3 * i, W, x);
    load_points(p.y + 3 * i, W, y);
    const L w = kWeighted ? L::load(p.w + i) : L(T(1));
    procrustes::accumulate_second(x, y, w, mx, my, sec);
  }
  if (i < p.P) {
    L x[3], y[3], w;
    load_tail<kWeighted>(p, i, static_cast<int>(p.P - i), x, y, w);
    procrustes::accumulate_second(x, y, w, mx, my, sec);
  }
}

// The sums (procrustes::kSums) of items b .. b + n - 1 (n <= width), one item
// per lane; lanes past n repeat item b + n - 1. Each item's partial sums are
// reduced across their lanes for all items of the group at once (lane_sums),
// so the centroids, the second pass's input, are lane vectors too. With a
// status word (the forward op's value check, fused into the first pass: its
// sums are finite unless an input is NaN or Inf or a sum overflowed), an item
// that looks bad is read again by the scalar path, which sets the bits naming
// the argument.
template <bool kWeighted, typename T>
PGN_ALWAYS_INLINE void item_sums_lanes(const AlignArgs<T>& args, int64_t b, int n, LaneVec<T>* sums,
                                       int32_t* status) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  constexpr int K1 = procrustes::kFirstSums, K2 = procrustes::kSecondSums;
  L part[W][K2 > K1 ? K2 : K1];  // per item: its partial sums
  L w_min[W];
  for (int l = 0; l < n; ++l) {
    const ItemPoints<T> p = item_points(args.src, args.dst, args.weights, b + l, args.P, args.B);
    if (status) {
      item_first_simd<kWeighted, true>(p, part[l], w_min[l]);
    } else {
      item_first_simd<kWeighted, false>(p, part[l], w_min[l]);
    }
  }
  for (int l = n; l < W; ++l) {
    for (int k = 0; k < K1; ++k) part[l][k] = part[n - 1][k];
  }
  L* first = sums;
  for (int k = 0; k < K1; ++k) first[k] = lane_sums(part, k);
  if (status) {
    L probe(T(0));
    for (int k = 0; k < K1; ++k) probe += finite_probe(first[k]);
    for (int l = 0; l < n; ++l) {
      bool suspect = !sum_is_finite(probe[l]);
      if constexpr (kWeighted) suspect = suspect || lane_any(w_min[l] < L(T(0)));
      if (suspect) {
        T scalar[procrustes::kSums];
        item_sums<kWeighted>(item_points(args.src, args.dst, args.weights, b + l, args.P, args.B),
                             scalar, status);
      }
    }
  }
  L mu_x[3], mu_y[3];
  procrustes::centroids(first, mu_x, mu_y);
  for (int l = 0; l < n; ++l) {
    const L mx[3] = {L(mu_x[0][l]), L(mu_x[1][l]), L(mu_x[2][l])};
    const L my[3] = {L(mu_y[0][l]), L(mu_y[1][l]), L(mu_y[2][l])};
    item_second_simd<kWeighted>(
        item_points(args.src, args.dst, args.weights, b + l, args.P, args.B), mx, my, part[l]);
  }
  for (int l = n; l < W; ++l) {
    for (int k = 0; k < K2; ++k) part[l][k] = part[n - 1][k];
  }
  for (int k = 0; k < K2; ++k) sums[K1 + k] = lane_sums(part, k);
}

// Reduces and solves the items of [begin, end) a lane vector at a time (one
// item per lane) and stores their outputs, sums included.
template <bool kWeighted, typename T>
PGN_CPU_CLONES PGN_FLATTEN void align_range_simd(const AlignArgs<T>& args, const AlignOut<T>& out,
                                                 int64_t begin, int64_t end, int32_t* status) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  constexpr int K = procrustes::kSums;
  for (int64_t b = begin; b < end; b += W) {
    const int n = static_cast<int>(std::min<int64_t>(W, end - b));
    L sums[K];
    item_sums_lanes<kWeighted>(args, b, n, sums, status);
    procrustes::Alignment<L> a;
    procrustes::solve_alignment(sums, sums + procrustes::kFirstSums, args.estimate_scale, a);
    store_lanes<1>(&a.scale, n, out.scale + b);
    store_lanes<9>(a.R, n, out.R + 9 * b);
    store_lanes<3>(a.t, n, out.t + 3 * b);
    store_lanes<K>(sums, n, out.sums + K * b);
  }
}

// Solves the items of [begin, end) from their sums in the forward's lane
// groups (lanes past n repeat item b + n - 1 there and here: the solve's
// iteration counts depend on all its lanes, so this gives the forward's bits),
// then forms each item's points' gradients a lane vector of points at a time.
template <bool kWeighted, typename T>
PGN_CPU_CLONES PGN_FLATTEN void align_backward_range_simd(const AlignArgs<T>& args, const T* sums,
                                                          const T* g_scale, const T* g_R,
                                                          const T* g_t, T* g_src, T* g_dst, T* g_w,
                                                          int64_t begin, int64_t end) {
  using L = LaneVec<T>;
  constexpr int W = L::width;
  constexpr int K = procrustes::kSums;
  for (int64_t b = begin; b < end; b += W) {
    const int n = static_cast<int>(std::min<int64_t>(W, end - b));
    L s[K];
    load_lanes<K>(sums + K * b, n, s);
    procrustes::Alignment<L> a;
    procrustes::solve_alignment(s, s + procrustes::kFirstSums, args.estimate_scale, a);
    L gs, gR[9], gt[3];
    load_lanes<1>(g_scale + b, n, &gs);
    load_lanes<9>(g_R + 9 * b, n, gR);
    load_lanes<3>(g_t + 3 * b, n, gt);
    procrustes::AlignmentGrad<L> g;
    procrustes::alignment_backward(a, gs, gR, gt, g);
    // Each item's points, a lane vector of points at a time, with the item's
    // coefficients broadcast.
    for (int l = 0; l < n; ++l) {
      procrustes::AlignmentGrad<L> gi;
      for (int e = 0; e < 9; ++e) gi.G[e] = L(g.G[e][l]);
      gi.gv = L(g.gv[l]);
      for (int d = 0; d < 3; ++d) {
        gi.g_mu_x[d] = L(g.g_mu_x[d][l]);
        gi.g_mu_y[d] = L(g.g_mu_y[d][l]);
      }
      gi.inv_w = L(g.inv_w[l]);
      gi.c0 = L(g.c0[l]);
      const L mx[3] = {L(a.mu_x[0][l]), L(a.mu_x[1][l]), L(a.mu_x[2][l])};
      const L my[3] = {L(a.mu_y[0][l]), L(a.mu_y[1][l]), L(a.mu_y[2][l])};
      const ItemPoints<T> p = item_points(args.src, args.dst, args.weights, b + l, args.P, args.B);
      const int64_t base = (b + l) * args.P;
      for (int64_t i = 0; i < p.P; i += W) {
        const int m = static_cast<int>(std::min<int64_t>(W, p.P - i));
        L x[3], y[3], w, gx[3], gy[3], gw;
        if (m == W) {
          load_points3(p.x + 3 * i, x);
          load_points3(p.y + 3 * i, y);
          w = kWeighted ? L::load(p.w + i) : L(T(1));
        } else {
          load_tail<kWeighted>(p, i, m, x, y, w);
        }
        procrustes::alignment_point_grad(mx, my, gi, x, y, w, gx, gy, kWeighted ? &gw : nullptr);
        store_points(gx, m, g_src + 3 * (base + i));
        store_points(gy, m, g_dst + 3 * (base + i));
        if constexpr (kWeighted) store_lanes<1>(&gw, m, g_w + base + i);
      }
    }
  }
}

template <typename T>
AlignArgs<T> align_args(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& weights,
                        bool estimate_scale) {
  return {src.data_ptr<T>(), dst.data_ptr<T>(), weights.defined() ? weights.data_ptr<T>() : nullptr,
          src.size(0),       src.size(1),       estimate_scale};
}

// Items per piece of the parallel loop: about 4096 points, a whole number of
// lane groups (8 covers both widths) so that no piece leaves lanes idle.
int64_t align_grain(int64_t P) {
  const int64_t items = std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1));
  return (items + 7) / 8 * 8;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> similarity_align_cpu(
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale, int64_t check) {
  const auto call = similarity_align_prologue(src_in, dst_in, weights_in);
  const at::Tensor status = new_status(src_in, check);
  int32_t* st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  const at::Tensor &src = call.src, &dst = call.dst, &weights = call.weights;
  const int64_t B = call.B, P = call.P;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_cpu", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    const AlignOut<scalar_t> out = {call.scale.data_ptr<scalar_t>(), call.R.data_ptr<scalar_t>(),
                                    call.t.data_ptr<scalar_t>(), call.sums.data_ptr<scalar_t>()};
    const bool simd = cpu_simd_enabled();
    parallel_for_dynamic(B, align_grain(P), [&](int64_t begin, int64_t end) {
      if (simd) {
        if (args.weights) {
          align_range_simd<true>(args, out, begin, end, st);
        } else {
          align_range_simd<false>(args, out, begin, end, st);
        }
      } else if (args.weights) {
        align_range<true>(args, out, begin, end, st);
      } else {
        align_range<false>(args, out, begin, end, st);
      }
    });
  });
  similarity_align_act_on_status(status, check, call);
  return {call.scale, call.R, call.t, call.sums, status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cpu(
    const at::Tensor& grad_scale_in, const at::Tensor& grad_R_in, const at::Tensor& grad_t_in,
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    const at::Tensor& sums_in, bool estimate_scale) {
  const auto call = similarity_align_backward_prologue(grad_scale_in, grad_R_in, grad_t_in, src_in,
                                                       dst_in, weights_in, sums_in);
  const at::Tensor &src = call.src, &dst = call.dst, &weights = call.weights;
  const at::Tensor &gs = call.grad_scale, &gR = call.grad_R, &gt = call.grad_t;
  const at::Tensor &g_src = call.grad_src, &g_dst = call.grad_dst, &g_w = call.grad_weights;
  const int64_t B = call.B, P = call.P;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_backward_cpu", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    const scalar_t *gs_p = gs.data_ptr<scalar_t>(), *gR_p = gR.data_ptr<scalar_t>(),
                   *gt_p = gt.data_ptr<scalar_t>(), *sums = call.sums.data_ptr<scalar_t>();
    scalar_t *gx = g_src.data_ptr<scalar_t>(), *gy = g_dst.data_ptr<scalar_t>();
    const bool simd = cpu_simd_enabled();
    parallel_for_dynamic(B, align_grain(P), [&](int64_t begin, int64_t end) {
      if (simd) {
        if (args.weights) {
          align_backward_range_simd<true>(args, sums, gs_p, gR_p, gt_p, gx, gy,
                                          g_w.data_ptr<scalar_t>(), begin, end);
        } else {
          align_backward_range_simd<false>(args, sums, gs_p, gR_p, gt_p, gx, gy,
                                           static_cast<scalar_t*>(nullptr), begin, end);
        }
      } else if (args.weights) {
        align_backward_range<true>(args, sums, gs_p, gR_p, gt_p, gx, gy, g_w.data_ptr<scalar_t>(),
                                   begin, end);
      } else {
        align_backward_range<false>(args, sums, gs_p, gR_p, gt_p, gx, gy,
                                    static_cast<scalar_t*>(nullptr), begin, end);
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
