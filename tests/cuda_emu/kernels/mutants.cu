// Small kernels shaped like the real ones, each with the mutation a check
// must catch selected by an argument (0 = the correct kernel):
//   staging through shared memory (svd3x3_kernel), a tile barrier before the
//   tail check (synthesize_forward_kernel), a warp all-reduce
//   (similarity_align_kernel), an atomic scatter (rasterize_backward_kernel).
// Entry points are extern "C" for ctypes; they return nullptr or the
// emulator's error message. Buffers are tracked as global allocations.
#include <cstdint>

#include "common/launch.h"

namespace {

enum Mutation : int {
  kCorrect = 0,
  kRemoveBarrier = 1,
  kEarlyReturn = 2,
  kDivergentShuffle = 3,
  kTailOffByOne = 4,
  kRacyUpdate = 5,
  kSharedOverrun = 6,
  kSplitBarrier = 7,
};

constexpr int kThreads = 128;

// All threads copy count values (svd3x3's copy_tile).
template <typename T>
__device__ __forceinline__ void copy_tile(const T* __restrict__ from, T* __restrict__ to, int count,
                                          int mutation) {
  const int end = mutation == kTailOffByOne ? count + 1 : count;
  for (int e = threadIdx.x; e < end; e += blockDim.x) to[e] = from[e];
}

// out[b] = M[b]^T for 3x3 matrices, staged through shared memory.
__global__ void transpose_kernel(const float* __restrict__ M, float* __restrict__ out, int64_t B,
                                 int mutation) {
  __shared__ float m_s[kThreads * 9];
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * kThreads;
  const int n = static_cast<int>(B - b0 < kThreads ? B - b0 : kThreads);
  copy_tile(M + 9 * b0, m_s, 9 * n, mutation);
  if (mutation != kRemoveBarrier) __syncthreads();
  const int k = threadIdx.x;
  if (k >= n) return;
  const int overrun = mutation == kSharedOverrun ? 1 : 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) out[9 * (b0 + k) + 3 * i + j] = m_s[9 * k + 3 * j + i + overrun];
}

// out[i] = x[i] * (sum of the block's x), the block sum staged in shared memory.
__global__ void scale_by_block_sum_kernel(const float* __restrict__ x, float* __restrict__ out,
                                          int64_t N, int mutation) {
  __shared__ float tile[kThreads];
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (mutation == kEarlyReturn && i >= N) return;
  tile[threadIdx.x] = i < N ? x[i] : 0.0f;
  if (mutation == kSplitBarrier && threadIdx.x % 2) {
    __syncthreads();  // odd threads wait here, even ones below: two different barriers
  } else {
    __syncthreads();
  }
  float sum = 0.0f;
  for (int k = 0; k < kThreads; ++k) sum += tile[k];
  if (i >= N) return;
  out[i] = x[i] * sum;
}

// out[r] = sum of row r of x [rows, P]: one warp per row, butterfly all-reduce.
__global__ void row_sum_kernel(const float* __restrict__ x, float* __restrict__ out, int64_t rows,
                               int64_t P, int mutation) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.y;
  if (r >= rows) return;
  const int lane = threadIdx.x;
  float v = 0.0f;
  for (int64_t i = lane; i < P; i += 32) v += x[r * P + i];
  if (mutation != kDivergentShuffle || lane < P) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  if (lane == 0) out[r] = v;
}

// out[index[i]] += values[i].
__global__ void scatter_add_kernel(const float* __restrict__ values, const int32_t* __restrict__ index,
                                   float* __restrict__ out, int64_t n, int mutation) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (mutation == kRacyUpdate) {
    out[index[i]] += values[i];
  } else {
    atomicAdd(out + index[i], values[i]);
  }
}

// Each lane of one warp of `lanes` threads writes 8 results of the warp
// collectives and atomics to out[lane * 8 ...]; counters[0..4] receive atomics.
// The mask is __activemask(), or all 32 lanes with full_mask.
__global__ void collectives_kernel(int32_t* __restrict__ out, unsigned long long* __restrict__ counters,
                                   double* __restrict__ total, int full_mask) {
  const int lane = threadIdx.x;
  const unsigned mask = full_mask ? 0xffffffffu : __activemask();
  int32_t* o = out + 8 * lane;
  o[0] = __shfl_sync(mask, lane * 10, 3);
  o[1] = __shfl_up_sync(mask, lane * 10, 2);
  o[2] = __shfl_down_sync(mask, lane * 10, 2);
  o[3] = __shfl_xor_sync(mask, lane * 10, 1, 8);
  o[4] = static_cast<int32_t>(__ballot_sync(mask, lane % 3 == 0));
  o[5] = __any_sync(mask, lane == 5);
  o[6] = __all_sync(mask, lane < 100);
  __syncwarp(mask);
  o[7] = static_cast<int32_t>(mask);
  atomicMin(counters + 0, static_cast<unsigned long long>(1000 - lane));
  atomicMax(counters + 1, static_cast<unsigned long long>(lane));
  atomicAdd(counters + 2, 1ull);
  atomicCAS(counters + 3, 0ull, static_cast<unsigned long long>(lane + 1));
  atomicExch(counters + 4, 7ull);
  atomicAdd(total, 0.5 * lane);
}

__global__ void fill_kernel(float* __restrict__ out) { out[threadIdx.x] = 1.0f; }

__global__ void big_shared_kernel(float* __restrict__ out) {
  __shared__ float big[13 * 1024];  // 52 KB: above the 48 KB static limit
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

__global__ void dynamic_shared_kernel(const float* __restrict__ x, float* __restrict__ out, int n) {
  extern __shared__ float buf[];
  const int i = threadIdx.x;
  if (i < n) buf[i] = x[i];
  __syncthreads();
  if (i < n) out[i] = buf[n - 1 - i];
}

// Marks a buffer as a global allocation for the duration of an entry point.
struct Tracked {
  const void* p;
  Tracked(const void* ptr, int64_t bytes) : p(ptr) { cuda_emu::track_allocation(ptr, bytes); }
  ~Tracked() { cuda_emu::untrack_allocation(p); }
};

int64_t blocks_for(int64_t n, int per) { return (n + per - 1) / per; }

template <typename F>
const char* run(F&& body) {
  return cuda_emu::run_catching([](void* f) { (*static_cast<F*>(f))(); }, &body);
}

}  // namespace

extern "C" {

const char* emu_transpose(const float* M, float* out, int64_t B, int mutation) {
  return run([&] {
    const Tracked tm(M, B * 9 * 4), to(out, B * 9 * 4);
    const cuda_emu::DeviceGuard guard;
    PGN_LAUNCH(blocks_for(B, kThreads), kThreads, 0, cuda_emu::current_stream(), transpose_kernel)(M, out, B, mutation);
    cuda_emu::launch_check();
  });
}

const char* emu_scale_by_block_sum(const float* x, float* out, int64_t N, int mutation) {
  return run([&] {
    const Tracked tx(x, N * 4), to(out, N * 4);
    const cuda_emu::DeviceGuard guard;
    PGN_LAUNCH(blocks_for(N, kThreads), kThreads, 0, cuda_emu::current_stream(),
               scale_by_block_sum_kernel)(x, out, N, mutation);
    cuda_emu::launch_check();
  });
}

const char* emu_row_sum(const float* x, float* out, int64_t rows, int64_t P, int mutation) {
  return run([&] {
    const Tracked tx(x, rows * P * 4), to(out, rows * 4);
    const cuda_emu::DeviceGuard guard;
    PGN_LAUNCH(blocks_for(rows, 4), dim3(32, 4), 0, cuda_emu::current_stream(), row_sum_kernel)(
        x, out, rows, P, mutation);
    cuda_emu::launch_check();
  });
}

const char* emu_scatter_add(const float* values, const int32_t* index, float* out, int64_t n,
                            int64_t m, int mutation) {
  return run([&] {
    const Tracked tv(values, n * 4), ti(index, n * 4), to(out, m * 4);
    const cuda_emu::DeviceGuard guard;
    PGN_LAUNCH(blocks_for(n, 64), 64, 0, cuda_emu::current_stream(), scatter_add_kernel)(
        values, index, out, n, mutation);
    cuda_emu::launch_check();
  });
}

const char* emu_collectives(int32_t* out, unsigned long long* counters, double* total, int lanes,
                            int full_mask) {
  return run([&] {
    const Tracked to(out, lanes * 8 * 4), tc(counters, 5 * 8), tt(total, 8);
    const cuda_emu::DeviceGuard guard;
    PGN_LAUNCH(1, lanes, 0, cuda_emu::current_stream(), collectives_kernel)(out, counters, total, full_mask);
    cuda_emu::launch_check();
  });
}

const char* emu_dynamic_shared(const float* x, float* out, int n, int shared_bytes) {
  return run([&] {
    const Tracked tx(x, n * 4), to(out, n * 4);
    const cuda_emu::DeviceGuard guard;
    PGN_LAUNCH(1, 64, shared_bytes, cuda_emu::current_stream(), dynamic_shared_kernel)(x, out, n);
    cuda_emu::launch_check();
  });
}

// Launches that break a rule: 0 no blocks, 1 grid.y > 65535, 2 > 1024 threads,
// 3 > 48 KB static shared memory, 4 no device guard, 5 not on the current
// stream, 6 no launch check after the launch, 7 a correct launch.
const char* emu_bad_launch(float* out, int rule) {
  return run([&] {
    const Tracked to(out, 1024 * 4);
    const cuda_emu::DeviceGuard* guard = rule == 4 ? nullptr : new cuda_emu::DeviceGuard;
    const dim3 grid = rule == 0 ? dim3(0) : (rule == 1 ? dim3(1, 70000) : dim3(1));
    const dim3 block = rule == 2 ? dim3(1025) : dim3(32);
    const cudaStream_t stream = rule == 5 ? nullptr : cuda_emu::current_stream();
    struct Cleanup {
      const cuda_emu::DeviceGuard* g;
      ~Cleanup() { delete g; }
    } cleanup{guard};
    if (rule == 3) {
      PGN_LAUNCH(grid, block, 0, stream, big_shared_kernel)(out);
    } else {
      PGN_LAUNCH(grid, block, 0, stream, fill_kernel)(out);
    }
    if (rule != 6) cuda_emu::launch_check();
  });
}

}  // extern "C"
