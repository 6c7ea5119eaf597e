// CUDA kernels of the fused 3DMM vertex synthesis op.
//
// Thread mapping (both passes): a block of 32 x 4 threads owns a tile of
// kTileV = 32 vertices x TB batch items; thread (x, y) owns vertex n0 + x and
// the BPT = TB / 4 batch items b0 + y * BPT + j. The basis slice of a vertex
// tile, basis[n0 : n0 + 32], is one contiguous block of memory; it is staged
// through shared memory KC components at a time (KC * sizeof(T) = 128 bytes
// per row, so loads coalesce), and each staged element is used for all TB
// batch items: the basis is read once per batch tile, never once per item.
// Per-element math (pose transform, shape gradient, pose partial sums, the
// backward's choice between the forward output and a recompute of the shape)
// comes from synthesize_kernel.h, the same code the CPU twin runs.
//
// Determinism: no kernel here uses atomics, and every sum has an order fixed
// by the shapes alone (never by the device: the backward split into vertex
// blocks is a constant, and the partial sums are added by sum_slices_kernel,
// not by a torch reduction whose split may follow the device). So gradients
// are bitwise reproducible on one GPU model, with or without
// torch.use_deterministic_algorithms, and the sums are grouped the same way
// on every model.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

#include "../common/cuda_guard.h"
#include "../common/fixed_order_sum.h"
#include "../common/launch.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "synthesize.h"
#include "synthesize_kernel.h"

namespace pgnface {
namespace {

constexpr int kTileV = 32;    // vertices per tile = threads along x (one warp)
constexpr int kThreadsY = 4;  // warps per block
constexpr int kThreads = kTileV * kThreadsY;

// Components per shared-memory stage: 128 bytes of one basis row.
template <typename T>
constexpr int kStageK = 128 / static_cast<int>(sizeof(T));

// Shared-memory staging buffers of one block. The vertex axis and the batch
// axis are padded by one so that the transposing stores (consecutive threads
// write consecutive kk, a stride of one padded row) and the per-k reads are
// bank-conflict free (bench/emu_counters measures it).
template <typename T, int TB>
struct Stage {
  T basis[kStageK<T>][3][kTileV + 1];  // basis[n0 + v, d, k0 + kk] at [kk][d][v]
  T coeffs[kStageK<T>][TB + 1];        // coeffs[b0 + bb, k0 + kk] at [kk][bb]
};

// Loads basis[n0 : n0+32, :, k0 : k0+KC] into stage.basis (zeros outside).
template <typename T, int TB>
__device__ __forceinline__ void load_basis_stage(Stage<T, TB>& stage, const T* __restrict__ basis,
                                                 int64_t N, int64_t K, int64_t n0, int64_t k0,
                                                 int tid) {
  constexpr int KC = kStageK<T>;
  for (int e = tid; e < kTileV * 3 * KC; e += kThreads) {
    const int kk = e % KC;
    const int d = (e / KC) % 3;
    const int v = e / (3 * KC);
    const int64_t n = n0 + v, k = k0 + kk;
    stage.basis[kk][d][v] = (n < N && k < K) ? basis[(n * 3 + d) * K + k] : T(0);
  }
}

// Loads coeffs[b0 : b0+TB, k0 : k0+KC] into stage.coeffs (zeros outside).
template <typename T, int TB>
__device__ __forceinline__ void load_coeff_stage(Stage<T, TB>& stage, const T* __restrict__ coeffs,
                                                 int64_t B, int64_t K, int64_t b0, int64_t k0,
                                                 int tid) {
  constexpr int KC = kStageK<T>;
  for (int e = tid; e < TB * KC; e += kThreads) {
    const int kk = e % KC;
    const int bb = e / KC;
    const int64_t b = b0 + bb, k = k0 + kk;
    stage.coeffs[kk][bb] = (b < B && k < K) ? coeffs[b * K + k] : T(0);
  }
}

// acc[j][d] = sum_k basis[n0 + x, d, k] * coeffs[b0 + y*BPT + j, k].
// Must be reached by every thread of the block (it synchronises).
template <typename T, int TB, int BPT>
__device__ __forceinline__ void contract_basis_tile(Stage<T, TB>& stage,
                                                    const T* __restrict__ basis,
                                                    const T* __restrict__ coeffs, int64_t B,
                                                    int64_t N, int64_t K, int64_t n0, int64_t b0,
                                                    T acc[BPT][3]) {
  constexpr int KC = kStageK<T>;
  const int x = threadIdx.x, y = threadIdx.y, tid = y * kTileV + x;
#pragma unroll
  for (int j = 0; j < BPT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = T(0);
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    load_basis_stage(stage, basis, N, K, n0, k0, tid);
    load_coeff_stage(stage, coeffs, B, K, b0, k0, tid);
    __syncthreads();
#pragma unroll 4
    for (int kk = 0; kk < KC; ++kk) {
      const T w0 = stage.basis[kk][0][x], w1 = stage.basis[kk][1][x], w2 = stage.basis[kk][2][x];
#pragma unroll
      for (int j = 0; j < BPT; ++j) {
        const T c = stage.coeffs[kk][y * BPT + j];
        acc[j][0] += w0 * c;
        acc[j][1] += w1 * c;
        acc[j][2] += w2 * c;
      }
    }
    __syncthreads();
  }
}

// Loads the three values of each lane's vertex n0 + lane from p = array + 3
// * n0 of a [*, 3] array, of which `valid` vertices from n0 exist (0 for the
// rest). A lane reading its own three values would make each request touch
// three times the sectors it uses; instead the warp reads the 96 contiguous
// values coalesced (lane l takes l, l + 32, l + 64) and the lanes exchange
// them by shuffles. Call with the whole warp (blockDim.x = kTileV = 32).
template <typename T>
__device__ __forceinline__ void load_vertex_warp(const T* __restrict__ p, int64_t valid, int lane,
                                                 T (&v)[3]) {
  T r[3];
#pragma unroll
  for (int s = 0; s < 3; ++s) {
    const int e = lane + 32 * s;
    r[s] = e < 3 * valid ? p[e] : T(0);
  }
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const int e = 3 * lane + k, from = e & 31, slot = e >> 5;
    const T v0 = __shfl_sync(0xffffffffu, r[0], from);
    const T v1 = __shfl_sync(0xffffffffu, r[1], from);
    const T v2 = __shfl_sync(0xffffffffu, r[2], from);
    v[k] = slot == 0 ? v0 : (slot == 1 ? v1 : v2);
  }
}

template <typename T, int TB, int BPT>
__global__ void __launch_bounds__(kThreads)
    synthesize_forward_kernel(const T* __restrict__ mean, const T* __restrict__ basis,
                              const T* __restrict__ coeffs, const T* __restrict__ rotation,
                              const T* __restrict__ scale, const T* __restrict__ translation,
                              T* __restrict__ out, int64_t B, int64_t N, int64_t K,
                              int32_t* __restrict__ status) {
  __shared__ Stage<T, TB> stage;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileV;
  const int64_t b0 = static_cast<int64_t>(blockIdx.y) * TB;
  if (status && blockIdx.x == 0) {
    // The value check: the first vertex tile's blocks read their batch tile's
    // coefficients and pose once. Status bits 1 coeffs, 2 rotation, 4 scale, 8 translation.
    const int tid = threadIdx.y * kTileV + threadIdx.x;
    const int64_t nb = B - b0 < TB ? B - b0 : TB;
    const int32_t bits = (finite_share(coeffs + b0 * K, nb * K, tid, kThreads) ? 0 : 1) |
                         (finite_share(rotation + b0 * 9, nb * 9, tid, kThreads) ? 0 : 2) |
                         (finite_share(scale + b0, nb, tid, kThreads) ? 0 : 4) |
                         (finite_share(translation + b0 * 3, nb * 3, tid, kThreads) ? 0 : 8);
    if (bits) flag_status(status, bits);
  }
  T acc[BPT][3];
  contract_basis_tile<T, TB, BPT>(stage, basis, coeffs, B, N, K, n0, b0, acc);
  const int64_t n = n0 + threadIdx.x;
  T m[3];
  load_vertex_warp(mean + 3 * n0, N - n0, threadIdx.x, m);
  if (n >= N) return;
#pragma unroll
  for (int j = 0; j < BPT; ++j) {
    const int64_t b = b0 + threadIdx.y * BPT + j;
    if (b >= B) break;
    const T shape[3] = {m[0] + acc[j][0], m[1] + acc[j][1], m[2] + acc[j][2]};
    morphable::transform_point(rotation + 9 * b, scale[b], translation + 3 * b, shape,
                               out + (b * N + n) * 3);
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Backward pass over the vertex tiles [blockIdx.x * tiles_per_block, ...) of
// batch tile blockIdx.y. Block blockIdx.x alone owns the partial-sum slices
// pose_part[blockIdx.x] [B,12] and coeff_part[blockIdx.x] [B,K], so they are
// accumulated without atomics and the result is deterministic. The pose
// partial sums take p = out - t for output-path items (path [B,10], see
// synthesize_kernel.h's output_path); only a batch tile holding a
// recompute-path item contracts the basis for the shapes as well.
template <typename T, int TB, int BPT>
__global__ void __launch_bounds__(kThreads)
    synthesize_backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ out,
                               const T* __restrict__ mean, const T* __restrict__ basis,
                               const T* __restrict__ coeffs, const T* __restrict__ rotation,
                               const T* __restrict__ scale, const T* __restrict__ translation,
                               const T* __restrict__ path, T* __restrict__ pose_part,
                               T* __restrict__ coeff_part, int64_t B, int64_t N, int64_t K,
                               int64_t tiles_per_block) {
  constexpr int KC = kStageK<T>;
  __shared__ Stage<T, TB> stage;
  __shared__ T gl_s[TB][3][kTileV + 1];  // shape-space gradient s R^T g of the tile
  const int x = threadIdx.x, y = threadIdx.y, tid = y * kTileV + x;
  const int64_t b0 = static_cast<int64_t>(blockIdx.y) * TB;
  T* pose_slice = pose_part + static_cast<int64_t>(blockIdx.x) * B * morphable::kPoseGradSize;
  T* coeff_slice = coeff_part + static_cast<int64_t>(blockIdx.x) * B * K;
  // Uniform across the block: every thread reads the same records.
  bool recompute = false;
  for (int bb = 0; bb < TB && b0 + bb < B; ++bb)
    recompute = recompute || path[(b0 + bb) * morphable::kOutputPathSize + 9] == T(0);

  for (int64_t tile = 0; tile < tiles_per_block; ++tile) {
    const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * tiles_per_block + tile) * kTileV;
    if (n0 >= N) break;  // uniform across the block
    T acc[BPT][3] = {};
    T m[3] = {T(0), T(0), T(0)};
    if (recompute) {
      contract_basis_tile<T, TB, BPT>(stage, basis, coeffs, B, N, K, n0, b0, acc);
      load_vertex_warp(mean + 3 * n0, N - n0, x, m);
    }

    // Per element: shape-space gradient into shared memory, pose partial sums
    // reduced over the warp's 32 vertices.
    const int64_t n = n0 + x;
    const bool vertex_ok = n < N;
#pragma unroll
    for (int j = 0; j < BPT; ++j) {
      const int bb = y * BPT + j;
      const int64_t b = b0 + bb;
      T pose[morphable::kPoseGradSize];
#pragma unroll
      for (int e = 0; e < morphable::kPoseGradSize; ++e) pose[e] = T(0);
      T gs[3] = {T(0), T(0), T(0)};
      if (b < B) {  // uniform across the warp (one warp per y), as is the path
        T g[3], q[3];
        load_vertex_warp(grad_out + (b * N + n0) * 3, N - n0, x, g);
        if (path[b * morphable::kOutputPathSize + 9] != T(0)) {
          load_vertex_warp(out + (b * N + n0) * 3, N - n0, x, q);
          q[0] -= translation[3 * b];
          q[1] -= translation[3 * b + 1];
          q[2] -= translation[3 * b + 2];
        } else {
          q[0] = m[0] + acc[j][0];
          q[1] = m[1] + acc[j][1];
          q[2] = m[2] + acc[j][2];
        }
        if (vertex_ok) {
          morphable::shape_grad(rotation + 9 * b, scale[b], g, gs);
          morphable::accumulate_pose_grad(g, q, pose);
        }
      }
      gl_s[bb][0][x] = gs[0];
      gl_s[bb][1][x] = gs[1];
      gl_s[bb][2][x] = gs[2];
#pragma unroll
      for (int e = 0; e < morphable::kPoseGradSize; ++e) pose[e] = warp_sum(pose[e]);
      if (x == 0 && b < B) {
        T* dst = pose_slice + b * morphable::kPoseGradSize;
#pragma unroll
        for (int e = 0; e < morphable::kPoseGradSize; ++e) dst[e] += pose[e];
      }
    }
    __syncthreads();  // gl_s complete

    // coeff_part[b, k] += sum_{v,d} basis[n0 + v, d, k] * gl[b, d, v]
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      load_basis_stage(stage, basis, N, K, n0, k0, tid);
      __syncthreads();
      for (int p = tid; p < TB * KC; p += kThreads) {
        const int kk = p % KC;
        const int bb = p / KC;
        const int64_t b = b0 + bb, k = k0 + kk;
        if (b >= B || k >= K) continue;
        T sum = T(0);
#pragma unroll 4
        for (int v = 0; v < kTileV; ++v) {
          sum += stage.basis[kk][0][v] * gl_s[bb][0][v] + stage.basis[kk][1][v] * gl_s[bb][1][v] +
                 stage.basis[kk][2][v] * gl_s[bb][2][v];
        }
        coeff_slice[b * K + k] += sum;
      }
      __syncthreads();  // stage.basis and gl_s are rewritten next
    }
  }
}

// Terms of fixed_order_sum_kernel: out[i] = sum over s in [0, slices) of
// part[s * count + i], in s order.
template <typename T>
struct SliceTerms {
  const T* part;
  int64_t slices, count;
  __device__ int64_t begin(int64_t) const { return 0; }
  __device__ int64_t end(int64_t) const { return slices; }
  __device__ T operator()(int64_t i, int64_t, int64_t s) const { return part[s * count + i]; }
};

// grad_basis[r, k] = sum over b of grad_shape[b, r] * coeffs[b, k], r in
// [0, 3N), in b order. An own kernel rather than cuBLAS (at::mm): cuBLAS
// computes float32 products in TF32 when the user enables
// torch.backends.cuda.matmul.allow_tf32 (10-bit mantissas), and its split of
// the batch sum depends on the device and the library version. (No test can
// set TF32 on the emulator, which runs on CPU tensors without cuBLAS; the
// guarantee is that this file calls no cuBLAS routine. tests/test_cuda_emu_ops
// holds this kernel to the CPU twin.)
template <typename T>
__global__ void basis_grad_kernel(const T* __restrict__ grad_shape, const T* __restrict__ coeffs,
                                  T* __restrict__ grad_basis, int64_t B, int64_t rows, int64_t K) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * K) return;
  const int64_t r = i / K, k = i % K;
  T sum = T(0);
  for (int64_t b = 0; b < B; ++b) sum += grad_shape[b * rows + r] * coeffs[b * K + k];
  grad_basis[i] = sum;
}

// Each item's output_path record [B, kOutputPathSize] (model_scale: the
// 0-dim tensor of synthesize_model_scale).
template <typename T>
__global__ void output_path_kernel(const T* __restrict__ rotation, const T* __restrict__ scale,
                                   const T* __restrict__ translation,
                                   const T* __restrict__ model_scale, T* __restrict__ path,
                                   int64_t B) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  T* rec = path + b * morphable::kOutputPathSize;
  T Rinv[9];
  const bool output =
      morphable::output_path(rotation + 9 * b, scale[b], translation + 3 * b, *model_scale, Rinv);
#pragma unroll
  for (int e = 0; e < 9; ++e) rec[e] = output ? Rinv[e] : T(0);
  rec[9] = output ? T(1) : T(0);
}

template <typename T>
__global__ void finish_pose_grad_kernel(const T* __restrict__ pose, const T* __restrict__ path,
                                        const T* __restrict__ rotation, const T* __restrict__ scale,
                                        T* __restrict__ grad_rotation, T* __restrict__ grad_scale,
                                        T* __restrict__ grad_translation, int64_t B) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const T* rec = path + b * morphable::kOutputPathSize;
  const T* acc = pose + b * morphable::kPoseGradSize;
  if (rec[9] != T(0)) {
    morphable::finish_pose_grad_output(acc, rec, rotation + 9 * b, scale[b], grad_rotation + 9 * b,
                                       grad_scale + b, grad_translation + 3 * b);
  } else {
    morphable::finish_pose_grad(acc, rotation + 9 * b, scale[b], grad_rotation + 9 * b,
                                grad_scale + b, grad_translation + 3 * b);
  }
}

// grad_shape[b, n] = s_b R_b^T grad_out[b, n]; used only when the model itself
// (mean / basis) needs a gradient, which is rare in training.
template <typename T>
__global__ void shape_grad_kernel(const T* __restrict__ grad_out, const T* __restrict__ rotation,
                                  const T* __restrict__ scale, T* __restrict__ grad_shape,
                                  int64_t B, int64_t N) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * N) return;
  const int64_t b = i / N;
  morphable::shape_grad(rotation + 9 * b, scale[b], grad_out + 3 * i, grad_shape + 3 * i);
}

int64_t blocks_for(int64_t work, int threads) { return (work + threads - 1) / threads; }

// The backward pass splits the vertex tiles among about this many blocks (over
// all batch tiles): enough to fill a large GPU a few times over (an H100 has
// 132 SMs), while each block walks several tiles so the partial buffers stay
// small. A constant, not a function of multiProcessorCount: the split fixes
// how the partial sums are grouped, so it must not change with the device.
constexpr int64_t kBackwardBlocks = 512;

// Sums part [slices, count] over its first axis into out [count], in slice order.
template <typename T>
void sum_slices(const at::Tensor& part, at::Tensor& out, int64_t slices, int64_t count,
                cudaStream_t stream) {
  constexpr int threads = 256;
  if (count == 0) return;
  PGN_LAUNCH(grid_for("synthesize_backward", count, threads), threads, 0, stream,
             fixed_order_sum_kernel<T, SliceTerms<T>>)(
      SliceTerms<T>{part.data_ptr<T>(), slices, count}, out.data_ptr<T>(), count, 1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Batch tiles run along grid.y, which CUDA caps at 65535.
int64_t batch_tiles_for(int64_t B, int tile) {
  const int64_t tiles = blocks_for(B, tile);
  TORCH_CHECK(tiles <= 65535, "synthesize (CUDA): batch size ", B, " is above the supported ",
              65535LL * tile, "; split the batch");
  return tiles;
}

// Launches one (TB, BPT) configuration of forward or backward.
template <typename T, int TB, int BPT>
struct Launcher {
  static void forward(const at::Tensor& mean, const at::Tensor& basis, const at::Tensor& coeffs,
                      const at::Tensor& rotation, const at::Tensor& scale,
                      const at::Tensor& translation, at::Tensor& out, int32_t* status,
                      cudaStream_t stream) {
    const int64_t B = coeffs.size(0), N = mean.size(0), K = basis.size(2);
    const dim3 grid = launch_grid("synthesize", blocks_for(N, kTileV), batch_tiles_for(B, TB));
    PGN_LAUNCH(grid, dim3(kTileV, kThreadsY), 0, stream, synthesize_forward_kernel<T, TB, BPT>)(
        mean.data_ptr<T>(), basis.data_ptr<T>(), coeffs.data_ptr<T>(), rotation.data_ptr<T>(),
        scale.data_ptr<T>(), translation.data_ptr<T>(), out.data_ptr<T>(), B, N, K, status);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // Returns (pose partial sums [B,12], grad_coeffs [B,K]).
  static std::pair<at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& mean,
      const at::Tensor& basis, const at::Tensor& coeffs, const at::Tensor& rotation,
      const at::Tensor& scale, const at::Tensor& translation, const at::Tensor& path,
      cudaStream_t stream) {
    const int64_t B = coeffs.size(0), N = mean.size(0), K = basis.size(2);
    const int64_t tiles = blocks_for(N, kTileV);
    const int64_t batch_tiles = batch_tiles_for(B, TB);
    const int64_t want_blocks = std::max<int64_t>(1, kBackwardBlocks / batch_tiles);
    const int64_t tiles_per_block =
        blocks_for(tiles, static_cast<int>(std::min(tiles, want_blocks)));
    const int64_t vertex_blocks = blocks_for(tiles, static_cast<int>(tiles_per_block));
    at::Tensor pose_part = at::zeros({vertex_blocks, B, morphable::kPoseGradSize}, mean.options());
    at::Tensor coeff_part = at::zeros({vertex_blocks, B, K}, mean.options());
    const dim3 grid = launch_grid("synthesize_backward", vertex_blocks, batch_tiles);
    PGN_LAUNCH(grid, dim3(kTileV, kThreadsY), 0, stream, synthesize_backward_kernel<T, TB, BPT>)(
        grad_out.data_ptr<T>(), out.data_ptr<T>(), mean.data_ptr<T>(), basis.data_ptr<T>(),
        coeffs.data_ptr<T>(), rotation.data_ptr<T>(), scale.data_ptr<T>(),
        translation.data_ptr<T>(), path.data_ptr<T>(), pose_part.data_ptr<T>(),
        coeff_part.data_ptr<T>(), B, N, K, tiles_per_block);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor pose = at::empty({B, morphable::kPoseGradSize}, mean.options());
    at::Tensor grad_coeffs = at::empty({B, K}, mean.options());
    sum_slices<T>(pose_part, pose, vertex_blocks, B * morphable::kPoseGradSize, stream);
    sum_slices<T>(coeff_part, grad_coeffs, vertex_blocks, B * K, stream);
    return {pose, grad_coeffs};
  }
};

// Small batches use narrower batch tiles so fewer threads idle.
//
// Registers (nvcc 13.0 -O3, sm_90, `-Xptxas -v`): forward 48-72 (float) and
// 56-128 (double); backward 56-115 (float) and 82-162 (double), the most for
// TB = 32 in double, whose 8 x 3 double accumulators alone take 48. At 162 x
// 128 threads three blocks (12 warps) fit an SM; shared memory (42 KB a block)
// would allow five. Left as is: the tile keeps the basis read once per 32
// items (the register tile is what makes that possible), and capping registers
// (__launch_bounds__ min-blocks) would trade that for spills, unmeasured
// without a GPU. ptxas also reports small spills (4 bytes in
// forward<float, 32, 8>, 16 bytes in backward<double, 16, 4>), far below the
// 255-register cap: not register pressure but ptxas keeping one or two values
// on the stack; left until a GPU profile shows them on the hot path.
template <typename T, typename F>
void with_batch_tile(int64_t B, F&& f) {
  if (B <= 4) {
    f(Launcher<T, 4, 1>{});
  } else if (B <= 16) {
    f(Launcher<T, 16, 4>{});
  } else {
    f(Launcher<T, 32, 8>{});
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> synthesize_cuda(
    const at::Tensor& mean_in, const at::Tensor& basis_in, const at::Tensor& coeffs_in,
    const at::Tensor& rotation_in, const at::Tensor& scale_in, const at::Tensor& translation_in,
    int64_t check) {
  const auto call =
      synthesize_prologue(mean_in, basis_in, coeffs_in, rotation_in, scale_in, translation_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(mean_in, "synthesize");
  const at::Tensor &mean = call.mean, &basis = call.basis, &coeffs = call.coeffs,
                   &rotation = call.rotation, &scale = call.scale, &translation = call.translation;
  const int64_t B = call.B, N = call.N;
  at::Tensor out = call.out;
  const at::Tensor status = new_status(mean_in, check);
  if (B == 0 || N == 0) return {out, status};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  int32_t* st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_cuda", [&] {
    with_batch_tile<scalar_t>(B, [&](auto launcher) {
      decltype(launcher)::forward(mean, basis, coeffs, rotation, scale, translation, out, st,
                                  stream);
    });
  });
  synthesize_act_on_status(status, check, call);
  return {out, status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
synthesize_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& out_in,
                         const at::Tensor& mean_in, const at::Tensor& basis_in,
                         const at::Tensor& coeffs_in, const at::Tensor& rotation_in,
                         const at::Tensor& scale_in, const at::Tensor& translation_in,
                         bool need_model_grad) {
  const auto call = synthesize_backward_prologue(grad_out_in, out_in, mean_in, basis_in, coeffs_in,
                                                 rotation_in, scale_in, translation_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(mean_in, "synthesize");
  const at::Tensor &mean = call.mean, &basis = call.basis, &coeffs = call.coeffs,
                   &rotation = call.rotation, &scale = call.scale, &translation = call.translation,
                   &grad_out = call.grad_out, &out = call.out;
  const int64_t B = call.B, N = call.N, K = call.K;
  const auto opts = mean.options();
  at::Tensor grad_mean = at::empty({0}, opts), grad_basis = at::empty({0}, opts);
  at::Tensor grad_coeffs = call.grad_coeffs;
  const at::Tensor &grad_rotation = call.grad_rotation, &grad_scale = call.grad_scale,
                   &grad_translation = call.grad_translation;
  if (B == 0 || N == 0) {
    if (need_model_grad) {
      grad_mean = at::zeros({N, 3}, opts);
      grad_basis = at::zeros({N, 3, K}, opts);
    }
    return {grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation};
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_backward_cuda", [&] {
    constexpr int threads = 128;
    // Each item's path; the model scale stays on the device (no host sync).
    const at::Tensor model_scale = synthesize_model_scale(mean);
    at::Tensor path = at::empty({B, morphable::kOutputPathSize}, opts);
    PGN_LAUNCH(grid_for("synthesize_backward", B, threads), threads, 0, stream,
               output_path_kernel<scalar_t>)(
        rotation.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(), translation.data_ptr<scalar_t>(),
        model_scale.data_ptr<scalar_t>(), path.data_ptr<scalar_t>(), B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor pose;
    with_batch_tile<scalar_t>(B, [&](auto launcher) {
      auto [pose_sum, coeff_sum] = decltype(launcher)::backward(
          grad_out, out, mean, basis, coeffs, rotation, scale, translation, path, stream);
      pose = pose_sum;
      grad_coeffs = coeff_sum;
    });
    PGN_LAUNCH(grid_for("synthesize_backward", B, threads), threads, 0, stream,
               finish_pose_grad_kernel<scalar_t>)(
        pose.data_ptr<scalar_t>(), path.data_ptr<scalar_t>(), rotation.data_ptr<scalar_t>(),
        scale.data_ptr<scalar_t>(), grad_rotation.data_ptr<scalar_t>(),
        grad_scale.data_ptr<scalar_t>(), grad_translation.data_ptr<scalar_t>(), B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (need_model_grad) {
      // Rare path (learning the model itself): materialise s R^T g once and
      // reduce it over the batch in fixed order (basis_grad_kernel says why
      // not cuBLAS).
      at::Tensor grad_shape = at::empty({B, N, 3}, opts);
      constexpr int eltwise_threads = 256;
      PGN_LAUNCH(grid_for("synthesize_backward", B * N, eltwise_threads), eltwise_threads, 0,
                 stream, shape_grad_kernel<scalar_t>)(
          grad_out.data_ptr<scalar_t>(), rotation.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(),
          grad_shape.data_ptr<scalar_t>(), B, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      grad_mean = at::empty({N, 3}, opts);
      sum_slices<scalar_t>(grad_shape, grad_mean, B, N * 3, stream);
      grad_basis = at::empty({N, 3, K}, opts);
      if (K > 0) {
        PGN_LAUNCH(grid_for("synthesize_backward", N * 3 * K, eltwise_threads), eltwise_threads, 0,
                   stream, basis_grad_kernel<scalar_t>)(
            grad_shape.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(),
            grad_basis.data_ptr<scalar_t>(), B, N * 3, K);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return {grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation};
}

}  // namespace pgnface
