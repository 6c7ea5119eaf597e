// CUDA kernels of similarity_align.
//
// One warp per batch item. The lanes stride over the item's points and reduce
// the first-pass sums (weight, weighted src and dst sums) and then the
// second-pass sums over centred points (3x3 cross-covariance, src variance)
// with butterfly shuffles, so every lane ends with the totals and solves the
// item itself (SVD, reflection fix, scale, t: same instructions on all lanes,
// no broadcast, no divergence); lane 0 writes scale, R and t, and lanes
// 0 .. 16 the item's 17 sums, which the forward op returns for its backward.
// The backward pass reads those sums (one coalesced load, then shuffles),
// solves the item from them with the forward's code, forms the
// per-item gradient coefficients (similarity_align_kernel.h) and each lane
// writes the gradients of its points: one pass over the points instead of
// three. No atomics (deterministic), no host synchronisation (CUDA-graph
// capturable).
// Points are [P, 3]: a lane reading its own point's three values would make
// each warp request span three times the bytes it uses (one sector in three).
// So each pass walks the points 32 at a time, the warp copying their 96
// contiguous src and dst values into its shared tile with coalesced loads,
// and each lane then reads its point from the tile; a lane still takes points
// lane, lane + 32, ..., so the sums keep their order.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>

#include "../common/cuda_guard.h"
#include "../common/launch.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "similarity_align.h"
#include "similarity_align_kernel.h"

namespace pgnface {
namespace {

constexpr int kWarps = 4;  // batch items per block

dim3 blocks_for(int64_t work, int per_block) {
  return grid_for("similarity_align", work, per_block);
}

// Sums v over the warp; every lane receives the totals.
template <typename T, int N>
__device__ __forceinline__ void warp_allreduce(T (&v)[N]) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
#pragma unroll
    for (int n = 0; n < N; ++n) v[n] += __shfl_xor_sync(0xffffffffu, v[n], offset);
  }
}

template <typename T>
struct AlignArgs {
  const T* __restrict__ src;      // [B,P,3]
  const T* __restrict__ dst;      // [B,P,3]
  const T* __restrict__ weights;  // [B,P] or null (all ones)
  int64_t B, P;
  bool estimate_scale;
};

// Points of a warp's pass: 32 at a time.
constexpr int kChunk = 32;

// The warp's shared copy of kChunk points of src (x) and of dst (y).
template <typename T>
struct PointTile {
  T x[3 * kChunk];
  T y[3 * kChunk];
};

// Copies points [i0, min(i0 + kChunk, P)) of x and y into tile, the lanes
// striding over their contiguous values (coalesced).
template <typename T>
__device__ __forceinline__ void stage_points(const T* __restrict__ x, const T* __restrict__ y,
                                             int64_t i0, int64_t P, int lane, PointTile<T>& tile) {
  const int n = static_cast<int>(3 * (P - i0 < kChunk ? P - i0 : kChunk));
  __syncwarp();  // the lanes are done with the previous chunk
  for (int e = lane; e < n; e += 32) {
    tile.x[e] = x[3 * i0 + e];
    tile.y[e] = y[3 * i0 + e];
  }
  __syncwarp();
}

// The whole warp reduces item b's first and second sums (both passes over its
// points, staged through tile); every lane receives them.
template <typename T>
__device__ __forceinline__ void item_sums_warp(const AlignArgs<T>& args, int64_t b, int lane,
                                               PointTile<T>& tile,
                                               T (&first)[procrustes::kFirstSums],
                                               T (&second)[procrustes::kSecondSums],
                                               int32_t* status) {
  const T* x = args.src + b * args.P * 3;
  const T* y = args.dst + b * args.P * 3;
  const T* w = args.weights ? args.weights + b * args.P : nullptr;
#pragma unroll
  for (int e = 0; e < procrustes::kFirstSums; ++e) first[e] = T(0);
  T w_min = T(0);
  for (int64_t i0 = 0; i0 < args.P; i0 += kChunk) {
    stage_points(x, y, i0, args.P, lane, tile);
    const int64_t i = i0 + lane;
    if (i >= args.P) continue;
    const T wi = w ? w[i] : T(1);
    procrustes::accumulate_first(tile.x + 3 * lane, tile.y + 3 * lane, wi, first);
    w_min = wi < w_min ? wi : w_min;
  }
  warp_allreduce(first);
  if (status) {  // the value check, fused into the first pass (each lane its own points)
    const int32_t bits = procrustes::first_pass_status(first, x, y, w, lane, args.P, 32) |
                         (w_min < T(0) ? procrustes::kNegativeWeightBit : 0);
    if (bits) flag_status(status, bits);
  }
  T mu_x[3], mu_y[3];
  procrustes::centroids(first, mu_x, mu_y);
#pragma unroll
  for (int e = 0; e < procrustes::kSecondSums; ++e) second[e] = T(0);
  for (int64_t i0 = 0; i0 < args.P; i0 += kChunk) {
    stage_points(x, y, i0, args.P, lane, tile);
    const int64_t i = i0 + lane;
    if (i >= args.P) continue;
    procrustes::accumulate_second(tile.x + 3 * lane, tile.y + 3 * lane, w ? w[i] : T(1), mu_x, mu_y,
                                  second);
  }
  warp_allreduce(second);
}

template <typename T>
__global__ void __launch_bounds__(32 * kWarps)
    similarity_align_kernel(AlignArgs<T> args, T* __restrict__ scale, T* __restrict__ R,
                            T* __restrict__ t, T* __restrict__ sums, int32_t* __restrict__ status) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.y;
  __shared__ PointTile<T> tiles[kWarps];
  if (b >= args.B) return;  // uniform across the warp
  const int lane = threadIdx.x;
  T first[procrustes::kFirstSums], second[procrustes::kSecondSums];
  item_sums_warp(args, b, lane, tiles[threadIdx.y], first, second, status);
  procrustes::Alignment<T> a;
  procrustes::solve_alignment(first, second, args.estimate_scale, a);
  // Lane k < kSums stores sum k (one coalesced store; selects keep the arrays in registers).
  T mine = T(0);
#pragma unroll
  for (int e = 0; e < procrustes::kFirstSums; ++e) mine = lane == e ? first[e] : mine;
#pragma unroll
  for (int e = 0; e < procrustes::kSecondSums; ++e) {
    mine = lane == procrustes::kFirstSums + e ? second[e] : mine;
  }
  if (lane < procrustes::kSums) sums[procrustes::kSums * b + lane] = mine;
  if (lane == 0) {
    scale[b] = a.scale;
#pragma unroll
    for (int e = 0; e < 9; ++e) R[9 * b + e] = a.R[e];
#pragma unroll
    for (int i = 0; i < 3; ++i) t[3 * b + i] = a.t[i];
  }
}

template <typename T>
__global__ void __launch_bounds__(32 * kWarps)
    similarity_align_backward_kernel(AlignArgs<T> args, const T* __restrict__ sums,
                                     const T* __restrict__ g_scale, const T* __restrict__ g_R,
                                     const T* __restrict__ g_t, T* __restrict__ g_src,
                                     T* __restrict__ g_dst, T* __restrict__ g_w) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.y;
  __shared__ PointTile<T> tiles[kWarps];
  if (b >= args.B) return;  // uniform across the warp
  const int lane = threadIdx.x;
  PointTile<T>& tile = tiles[threadIdx.y];
  // The item's sums: lane k < kSums loads sum k, then every lane receives all of them.
  const T mine = lane < procrustes::kSums ? sums[procrustes::kSums * b + lane] : T(0);
  T first[procrustes::kFirstSums], second[procrustes::kSecondSums];
#pragma unroll
  for (int e = 0; e < procrustes::kFirstSums; ++e) first[e] = __shfl_sync(0xffffffffu, mine, e);
#pragma unroll
  for (int e = 0; e < procrustes::kSecondSums; ++e) {
    second[e] = __shfl_sync(0xffffffffu, mine, procrustes::kFirstSums + e);
  }
  procrustes::Alignment<T> a;
  procrustes::solve_alignment(first, second, args.estimate_scale, a);
  T gR[9], gt[3];
#pragma unroll
  for (int e = 0; e < 9; ++e) gR[e] = g_R[9 * b + e];
#pragma unroll
  for (int i = 0; i < 3; ++i) gt[i] = g_t[3 * b + i];
  procrustes::AlignmentGrad<T> g;
  procrustes::alignment_backward(a, g_scale[b], gR, gt, g);
  const int64_t base = b * args.P;
  for (int64_t i0 = 0; i0 < args.P; i0 += kChunk) {
    stage_points(args.src + 3 * base, args.dst + 3 * base, i0, args.P, lane, tile);
    const int64_t i = i0 + lane;
    if (i >= args.P) continue;
    const int64_t p = base + i;
    const T w = args.weights ? args.weights[p] : T(1);
    T gw;
    procrustes::alignment_point_grad(a, g, tile.x + 3 * lane, tile.y + 3 * lane, w, g_src + 3 * p,
                                     g_dst + 3 * p, g_w ? &gw : nullptr);
    if (g_w) g_w[p] = gw;
  }
}

template <typename T>
AlignArgs<T> align_args(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& weights,
                        bool estimate_scale) {
  return {src.data_ptr<T>(), dst.data_ptr<T>(), weights.defined() ? weights.data_ptr<T>() : nullptr,
          src.size(0),       src.size(1),       estimate_scale};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> similarity_align_cuda(
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale, int64_t check) {
  const auto call = similarity_align_prologue(src_in, dst_in, weights_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(src_in, "similarity_align");
  const at::Tensor &src = call.src, &dst = call.dst, &weights = call.weights;
  const at::Tensor &scale = call.scale, &R = call.R, &t = call.t;
  const at::Tensor status = new_status(src_in, check);
  const int64_t B = call.B;
  if (B == 0) return {scale, R, t, call.sums, status};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_cuda", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    PGN_LAUNCH(blocks_for(B, kWarps), dim3(32, kWarps), 0, stream,
               similarity_align_kernel<scalar_t>)(
        args, scale.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
        call.sums.data_ptr<scalar_t>(), check == kCheckOff ? nullptr : status.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  similarity_align_act_on_status(status, check, call);
  return {scale, R, t, call.sums, status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cuda(
    const at::Tensor& grad_scale_in, const at::Tensor& grad_R_in, const at::Tensor& grad_t_in,
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    const at::Tensor& sums_in, bool estimate_scale) {
  const auto call = similarity_align_backward_prologue(grad_scale_in, grad_R_in, grad_t_in, src_in,
                                                       dst_in, weights_in, sums_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(src_in, "similarity_align_backward");
  const at::Tensor &src = call.src, &dst = call.dst, &weights = call.weights;
  const at::Tensor &gs = call.grad_scale, &gR = call.grad_R, &gt = call.grad_t;
  const at::Tensor &g_src = call.grad_src, &g_dst = call.grad_dst, &g_w = call.grad_weights;
  const int64_t B = call.B;
  if (B == 0) return {g_src, g_dst, g_w};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_backward_cuda", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    PGN_LAUNCH(blocks_for(B, kWarps), dim3(32, kWarps), 0, stream,
               similarity_align_backward_kernel<scalar_t>)(
        args, call.sums.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), gR.data_ptr<scalar_t>(),
        gt.data_ptr<scalar_t>(), g_src.data_ptr<scalar_t>(), g_dst.data_ptr<scalar_t>(),
        weights.defined() ? g_w.data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g_src, g_dst, g_w};
}

}  // namespace pgnface
