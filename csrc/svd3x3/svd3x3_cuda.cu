// CUDA kernels of svd3x3.
//
// Forward: one thread per matrix, the whole decomposition in registers
// (svd3x3_kernel.h). A block of 128 threads stages its 128 input matrices and
// its outputs through shared memory, so every global load and store is
// coalesced. The backward pass is one thread per matrix as well, its six
// inputs and its output staged the same way, one array at a time through one
// buffer (a thread reading its own 9 values straight from global memory would
// touch 9 sectors a request where the warp's data fills about 4).
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>

#include "../common/cuda_guard.h"
#include "../common/launch.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "svd3x3.h"
#include "svd3x3_kernel.h"

namespace pgnface {
namespace {

constexpr int kSvdThreads = 128;  // matrices per block

dim3 blocks_for(int64_t work, int per_block) { return grid_for("svd3x3", work, per_block); }

// Copies n * width contiguous values global -> shared (or back) with all threads.
template <typename T>
__device__ __forceinline__ void copy_tile(const T* __restrict__ from, T* __restrict__ to,
                                          int count) {
  for (int e = threadIdx.x; e < count; e += blockDim.x) to[e] = from[e];
}

template <typename T>
__global__ void __launch_bounds__(kSvdThreads)
    svd3x3_kernel(const T* __restrict__ M, T* __restrict__ U, T* __restrict__ S, T* __restrict__ V,
                  int64_t B, int32_t* __restrict__ status) {
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
    // The value check: svd_begin's probe makes S NaN exactly when M is non-finite.
    if (status && s[0] != s[0]) flag_status(status, 1);
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

// Loads rows [b0, b0 + n) of a [B, kWidth] array, staged through stage
// (kWidth * kSvdThreads values) with coalesced loads: thread k < n gets row
// b0 + k in out.
template <int kWidth, typename T>
__device__ __forceinline__ void load_rows(const T* __restrict__ from, int64_t b0, int n,
                                          T* __restrict__ stage, T (&out)[kWidth]) {
  __syncthreads();  // the previous array's reads of stage are done
  copy_tile(from + kWidth * b0, stage, kWidth * n);
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < n) {
#pragma unroll
    for (int e = 0; e < kWidth; ++e) out[e] = stage[kWidth * threadIdx.x + e];
  }
}

template <typename T>
__global__ void __launch_bounds__(kSvdThreads)
    svd3x3_backward_kernel(const T* __restrict__ gU, const T* __restrict__ gS,
                           const T* __restrict__ gV, const T* __restrict__ U,
                           const T* __restrict__ S, const T* __restrict__ V, T* __restrict__ gM,
                           int64_t B) {
  __shared__ T stage[kSvdThreads * 9];
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * kSvdThreads;
  const int n = static_cast<int>(B - b0 < kSvdThreads ? B - b0 : kSvdThreads);
  const int k = threadIdx.x;
  T u[9], v[9], gu[9], gv[9], s[3], gs[3], gm[9];
  load_rows(U, b0, n, stage, u);
  load_rows(V, b0, n, stage, v);
  load_rows(gU, b0, n, stage, gu);
  load_rows(gV, b0, n, stage, gv);
  load_rows(S, b0, n, stage, s);
  load_rows(gS, b0, n, stage, gs);
  __syncthreads();  // every thread has read its last row of stage
  if (k < n) {
    procrustes::svd3x3_backward(u, s, v, gu, gs, gv, gm);
#pragma unroll
    for (int e = 0; e < 9; ++e) stage[9 * k + e] = gm[e];
  }
  __syncthreads();
  copy_tile(stage, gM + 9 * b0, 9 * n);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> svd3x3_cuda(const at::Tensor& M_in,
                                                                       int64_t check) {
  const auto call = svd3x3_prologue(M_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(M_in, "svd3x3");
  const at::Tensor &M = call.M, &U = call.U, &S = call.S, &V = call.V;
  const at::Tensor status = new_status(M_in, check);
  const int64_t B = call.B;
  if (B == 0) return {U, S, V, status};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "svd3x3_cuda", [&] {
    PGN_LAUNCH(blocks_for(B, kSvdThreads), kSvdThreads, 0, stream, svd3x3_kernel<scalar_t>)(
        M.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(),
        V.data_ptr<scalar_t>(), B, check == kCheckOff ? nullptr : status.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  svd3x3_act_on_status(status, check, M);
  return {U, S, V, status};
}

at::Tensor svd3x3_backward_cuda(const at::Tensor& grad_U_in, const at::Tensor& grad_S_in,
                                const at::Tensor& grad_V_in, const at::Tensor& U_in,
                                const at::Tensor& S_in, const at::Tensor& V_in) {
  const auto call = svd3x3_backward_prologue(grad_U_in, grad_S_in, grad_V_in, U_in, S_in, V_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(U_in, "svd3x3_backward");
  const at::Tensor &gU = call.grad_U, &gS = call.grad_S, &gV = call.grad_V, &U = call.U,
                   &S = call.S, &V = call.V, &gM = call.grad_M;
  const int64_t B = call.B;
  if (B == 0) return gM;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "svd3x3_backward_cuda", [&] {
    PGN_LAUNCH(blocks_for(B, kSvdThreads), kSvdThreads, 0, stream,
               svd3x3_backward_kernel<scalar_t>)(gU.data_ptr<scalar_t>(), gS.data_ptr<scalar_t>(),
                                                 gV.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(),
                                                 S.data_ptr<scalar_t>(), V.data_ptr<scalar_t>(),
                                                 gM.data_ptr<scalar_t>(), B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gM;
}

}  // namespace pgnface
