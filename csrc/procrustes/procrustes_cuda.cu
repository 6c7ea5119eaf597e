// CUDA kernels of svd3x3 and similarity_align.
//
// svd3x3: one thread per matrix, the whole decomposition in registers
// (svd3x3.h). A block of 128 threads stages its 128 input matrices and its
// outputs through shared memory, so every global load and store is coalesced.
// The backward pass is one thread per matrix as well.
//
// similarity_align: one warp per batch item. The lanes stride over the item's
// points and reduce the first-pass sums (weight, weighted src and dst sums)
// and then the second-pass sums over centred points (3x3 cross-covariance,
// src variance) with butterfly shuffles, so every lane ends with the totals
// and solves the item itself (SVD, reflection fix, scale, t: same
// instructions on all lanes, no broadcast, no divergence); lane 0 writes.
// The backward pass recomputes the item the same way, forms the per-item
// gradient coefficients (procrustes_kernel.h) and each lane writes the
// gradients of its points. No atomics (deterministic), no host
// synchronisation (CUDA-graph capturable).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/check.h"
#include "procrustes.h"
#include "procrustes_kernel.h"
#include "svd3x3.h"

namespace pgnface {
namespace {

constexpr int kSvdThreads = 128;  // matrices per block
constexpr int kWarps = 4;         // batch items per block in similarity_align

int64_t blocks_for(int64_t work, int per_block) { return (work + per_block - 1) / per_block; }

// Copies n * width contiguous values global -> shared (or back) with all threads.
template <typename T>
__device__ __forceinline__ void copy_tile(const T* __restrict__ from, T* __restrict__ to,
                                          int count) {
  for (int e = threadIdx.x; e < count; e += blockDim.x) to[e] = from[e];
}

template <typename T>
__global__ void __launch_bounds__(kSvdThreads)
    svd3x3_kernel(const T* __restrict__ M, T* __restrict__ U, T* __restrict__ S,
                  T* __restrict__ V, int64_t B) {
  __shared__ T m_s[kSvdThreads * 9];
  __shared__ T u_s[kSvdThreads * 9];
  __shared__ T v_s[kSvdThreads * 9];
  __shared__ T s_s[kSvdThreads * 3];
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * kSvdThreads;
  const int n = static_cast<int>(B - b0 < kSvdThreads ? B - b0 : kSvdThreads);
  copy_tile(M + 9 * b0, m_s, 9 * n);
  __syncthreads();
  const int k = threadIdx.x;
  if (k < n) {
    T m[9], u[9], s[3], v[9];
#pragma unroll
    for (int e = 0; e < 9; ++e) m[e] = m_s[9 * k + e];
    procrustes::svd3x3(m, u, s, v);
#pragma unroll
    for (int e = 0; e < 9; ++e) {
      u_s[9 * k + e] = u[e];
      v_s[9 * k + e] = v[e];
    }
#pragma unroll
    for (int e = 0; e < 3; ++e) s_s[3 * k + e] = s[e];
  }
  __syncthreads();
  copy_tile(u_s, U + 9 * b0, 9 * n);
  copy_tile(v_s, V + 9 * b0, 9 * n);
  copy_tile(s_s, S + 3 * b0, 3 * n);
}

template <typename T>
__global__ void svd3x3_backward_kernel(const T* __restrict__ gU, const T* __restrict__ gS,
                                       const T* __restrict__ gV, const T* __restrict__ U,
                                       const T* __restrict__ S, const T* __restrict__ V,
                                       T* __restrict__ gM, int64_t B) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  T u[9], v[9], gu[9], gv[9], s[3], gs[3], gm[9];
#pragma unroll
  for (int e = 0; e < 9; ++e) {
    u[e] = U[9 * b + e];
    v[e] = V[9 * b + e];
    gu[e] = gU[9 * b + e];
    gv[e] = gV[9 * b + e];
  }
#pragma unroll
  for (int e = 0; e < 3; ++e) {
    s[e] = S[3 * b + e];
    gs[e] = gS[3 * b + e];
  }
  procrustes::svd3x3_backward(u, s, v, gu, gs, gv, gm);
#pragma unroll
  for (int e = 0; e < 9; ++e) gM[9 * b + e] = gm[e];
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

// The whole warp solves item b (both passes over its points).
template <typename T>
__device__ __forceinline__ void align_item_warp(const AlignArgs<T>& args, int64_t b, int lane,
                                                procrustes::Alignment<T>& a) {
  const T* x = args.src + b * args.P * 3;
  const T* y = args.dst + b * args.P * 3;
  const T* w = args.weights ? args.weights + b * args.P : nullptr;
  T first[procrustes::kFirstSums];
#pragma unroll
  for (int e = 0; e < procrustes::kFirstSums; ++e) first[e] = T(0);
  for (int64_t i = lane; i < args.P; i += 32) {
    procrustes::accumulate_first(x + 3 * i, y + 3 * i, w ? w[i] : T(1), first);
  }
  warp_allreduce(first);
  T mu_x[3], mu_y[3];
  procrustes::centroids(first, mu_x, mu_y);
  T second[procrustes::kSecondSums];
#pragma unroll
  for (int e = 0; e < procrustes::kSecondSums; ++e) second[e] = T(0);
  for (int64_t i = lane; i < args.P; i += 32) {
    procrustes::accumulate_second(x + 3 * i, y + 3 * i, w ? w[i] : T(1), mu_x, mu_y, second);
  }
  warp_allreduce(second);
  procrustes::solve_alignment(first, second, args.estimate_scale, a);
}

template <typename T>
__global__ void __launch_bounds__(32 * kWarps)
    similarity_align_kernel(AlignArgs<T> args, T* __restrict__ scale, T* __restrict__ R,
                            T* __restrict__ t) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.y;
  if (b >= args.B) return;  // uniform across the warp
  const int lane = threadIdx.x;
  procrustes::Alignment<T> a;
  align_item_warp(args, b, lane, a);
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
    similarity_align_backward_kernel(AlignArgs<T> args, const T* __restrict__ g_scale,
                                     const T* __restrict__ g_R, const T* __restrict__ g_t,
                                     T* __restrict__ g_src, T* __restrict__ g_dst,
                                     T* __restrict__ g_w) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.y;
  if (b >= args.B) return;  // uniform across the warp
  const int lane = threadIdx.x;
  procrustes::Alignment<T> a;
  align_item_warp(args, b, lane, a);
  T gR[9], gt[3];
#pragma unroll
  for (int e = 0; e < 9; ++e) gR[e] = g_R[9 * b + e];
#pragma unroll
  for (int i = 0; i < 3; ++i) gt[i] = g_t[3 * b + i];
  procrustes::AlignmentGrad<T> g;
  procrustes::alignment_backward(a, g_scale[b], gR, gt, g);
  const int64_t base = b * args.P;
  for (int64_t i = lane; i < args.P; i += 32) {
    const int64_t p = base + i;
    const T w = args.weights ? args.weights[p] : T(1);
    T gw;
    procrustes::alignment_point_grad(a, g, args.src + 3 * p, args.dst + 3 * p, w, g_src + 3 * p,
                                     g_dst + 3 * p, g_w ? &gw : nullptr);
    if (g_w) g_w[p] = gw;
  }
}

template <typename T>
AlignArgs<T> align_args(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& weights,
                        bool estimate_scale) {
  return {src.data_ptr<T>(), dst.data_ptr<T>(),
          weights.defined() ? weights.data_ptr<T>() : nullptr, src.size(0), src.size(1),
          estimate_scale};
}

void check_cuda_input(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.is_cuda(), op, " (CUDA): expected CUDA tensors, got ", x.device());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> svd3x3_cuda(const at::Tensor& M_in) {
  check_svd3x3_args(M_in);
  check_cuda_input(M_in, "svd3x3");
  const c10::cuda::CUDAGuard guard(M_in.device());
  const at::Tensor M = M_in.contiguous();
  const int64_t B = M.size(0);
  at::Tensor U = at::empty({B, 3, 3}, M.options());
  at::Tensor S = at::empty({B, 3}, M.options());
  at::Tensor V = at::empty({B, 3, 3}, M.options());
  if (B == 0) return {U, S, V};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "svd3x3_cuda", [&] {
    svd3x3_kernel<scalar_t><<<blocks_for(B, kSvdThreads), kSvdThreads, 0, stream>>>(
        M.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(),
        V.data_ptr<scalar_t>(), B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {U, S, V};
}

at::Tensor svd3x3_backward_cuda(const at::Tensor& grad_U_in, const at::Tensor& grad_S_in,
                                const at::Tensor& grad_V_in, const at::Tensor& U_in,
                                const at::Tensor& S_in, const at::Tensor& V_in) {
  check_svd3x3_backward_args(grad_U_in, grad_S_in, grad_V_in, U_in, S_in, V_in);
  check_cuda_input(U_in, "svd3x3_backward");
  const c10::cuda::CUDAGuard guard(U_in.device());
  const at::Tensor gU = grad_U_in.contiguous(), gS = grad_S_in.contiguous(),
                   gV = grad_V_in.contiguous(), U = U_in.contiguous(), S = S_in.contiguous(),
                   V = V_in.contiguous();
  const int64_t B = U.size(0);
  at::Tensor gM = at::empty({B, 3, 3}, U.options());
  if (B == 0) return gM;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  constexpr int threads = 128;
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "svd3x3_backward_cuda", [&] {
    svd3x3_backward_kernel<scalar_t><<<blocks_for(B, threads), threads, 0, stream>>>(
        gU.data_ptr<scalar_t>(), gS.data_ptr<scalar_t>(), gV.data_ptr<scalar_t>(),
        U.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(), V.data_ptr<scalar_t>(),
        gM.data_ptr<scalar_t>(), B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gM;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_cuda(
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale) {
  check_similarity_align_args(src_in, dst_in, weights_in);
  check_cuda_input(src_in, "similarity_align");
  const c10::cuda::CUDAGuard guard(src_in.device());
  const AlignBuffers in = contiguous_align_inputs(src_in, dst_in, weights_in);
  const at::Tensor &src = in.src, &dst = in.dst, &weights = in.weights;
  const int64_t B = in.B;
  at::Tensor scale, R, t;
  std::tie(scale, R, t) = empty_align_outputs(in);  // (no structured bindings: lambdas capture them)
  if (B == 0) return {scale, R, t};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_cuda", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    similarity_align_kernel<scalar_t><<<blocks_for(B, kWarps), dim3(32, kWarps), 0, stream>>>(
        args, scale.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(), t.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {scale, R, t};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> similarity_align_backward_cuda(
    const at::Tensor& grad_scale_in, const at::Tensor& grad_R_in, const at::Tensor& grad_t_in,
    const at::Tensor& src_in, const at::Tensor& dst_in, const std::optional<at::Tensor>& weights_in,
    bool estimate_scale) {
  check_similarity_align_backward_args(grad_scale_in, grad_R_in, grad_t_in, src_in, dst_in,
                                       weights_in);
  check_cuda_input(src_in, "similarity_align_backward");
  const c10::cuda::CUDAGuard guard(src_in.device());
  const AlignBuffers in = contiguous_align_inputs(src_in, dst_in, weights_in);
  const at::Tensor &src = in.src, &dst = in.dst, &weights = in.weights;
  const at::Tensor gs = grad_scale_in.contiguous(), gR = grad_R_in.contiguous(),
                   gt = grad_t_in.contiguous();
  const int64_t B = in.B;
  at::Tensor g_src, g_dst, g_w;
  std::tie(g_src, g_dst, g_w) = empty_align_grads(in);
  if (B == 0) return {g_src, g_dst, g_w};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "similarity_align_backward_cuda", [&] {
    const auto args = align_args<scalar_t>(src, dst, weights, estimate_scale);
    similarity_align_backward_kernel<scalar_t>
        <<<blocks_for(B, kWarps), dim3(32, kWarps), 0, stream>>>(
            args, gs.data_ptr<scalar_t>(), gR.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(),
            g_src.data_ptr<scalar_t>(), g_dst.data_ptr<scalar_t>(),
            weights.defined() ? g_w.data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g_src, g_dst, g_w};
}

TORCH_LIBRARY_IMPL(pgnface, CUDA, m) {
  m.impl("svd3x3", &svd3x3_cuda);
  m.impl("svd3x3_backward", &svd3x3_backward_cuda);
  m.impl("similarity_align", &similarity_align_cuda);
  m.impl("similarity_align_backward", &similarity_align_backward_cuda);
}

}  // namespace pgnface
