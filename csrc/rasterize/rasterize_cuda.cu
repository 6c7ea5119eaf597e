// CUDA kernels of the rasterizer and of attribute interpolation.
//
// Forward, race-free in two passes with no host synchronisation:
//   1. coverage: one thread per (batch item, triangle) walks the triangle's
//      pixel bounding box and atomicMin()s a packed 64-bit (depth, triangle id)
//      key into a z-buffer; the minimum is the same whatever the thread order.
//   2. resolve: one thread per pixel decodes the winning triangle and computes
//      its perspective-correct barycentrics and depth.
// Backward: one thread per pixel, gradients scattered into [B,N,4] with
// atomicAdd. All per-pixel math comes from rasterize_kernel.h, the code the CPU
// twin runs.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "../common/check.h"
#include "rasterize.h"
#include "rasterize_kernel.h"

namespace pgnface {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t work) { return (work + kThreads - 1) / kThreads; }

__device__ __forceinline__ bool valid_triangle(const int32_t* tri, int64_t N) {
  return tri[0] >= 0 && tri[0] < N && tri[1] >= 0 && tri[1] < N && tri[2] >= 0 && tri[2] < N;
}

template <typename T>
__global__ void coverage_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tris,
                                unsigned long long* __restrict__ zbuf, int64_t B, int64_t N,
                                int64_t T_count, int H, int W, int cull) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * T_count) return;
  const int64_t b = i / T_count, t = i % T_count;
  const int32_t* tri = tris + 3 * t;
  if (!valid_triangle(tri, N)) return;  // never read out of bounds
  const T* p = pos + b * N * 4;
  const raster::ScreenVertex<T> v0 = raster::project_vertex(p + 4 * tri[0], H, W);
  const raster::ScreenVertex<T> v1 = raster::project_vertex(p + 4 * tri[1], H, W);
  const raster::ScreenVertex<T> v2 = raster::project_vertex(p + 4 * tri[2], H, W);
  raster::TriangleSetup setup;
  if (!raster::setup_triangle(v0, v1, v2, H, W, cull, setup)) return;
  unsigned long long* z = zbuf + b * H * W;
  for (int row = setup.row0; row <= setup.row1; ++row) {
    for (int col = setup.col0; col <= setup.col1; ++col) {
      if (!raster::covers_pixel(setup, col, row)) continue;
      T d;
      if (!raster::pixel_depth(v0, v1, v2, col, row, d)) continue;
      const unsigned long long key = raster::depth_key(d, static_cast<int32_t>(t));
      atomicMin(z + static_cast<int64_t>(row) * W + col, key);
    }
  }
}

template <typename T>
__global__ void resolve_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tris,
                               const unsigned long long* __restrict__ zbuf,
                               int32_t* __restrict__ tri_id, T* __restrict__ bary,
                               T* __restrict__ depth, int64_t B, int64_t N, int H, int W) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(H) * W;
  if (pix >= B * pixels) return;
  const unsigned long long key = zbuf[pix];
  T* bp = bary + 3 * pix;
  if (key == raster::kEmptyKey) {
    tri_id[pix] = -1;
    bp[0] = bp[1] = bp[2] = T(0);
    depth[pix] = std::numeric_limits<T>::infinity();
    return;
  }
  const int64_t b = pix / pixels, q = pix % pixels;
  const int row = static_cast<int>(q / W), col = static_cast<int>(q % W);
  const int32_t t = static_cast<int32_t>(key & 0xffffffffull);
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  const T* p = pos + b * N * 4;
  tri_id[pix] = t;
  raster::resolve_pixel(p + 4 * tri[0], p + 4 * tri[1], p + 4 * tri[2], col, row, H, W, bp,
                        depth[pix]);
}

template <typename T>
__global__ void rasterize_backward_kernel(const T* __restrict__ grad_bary,
                                          const T* __restrict__ grad_depth,
                                          const T* __restrict__ pos,
                                          const int32_t* __restrict__ tris,
                                          const int32_t* __restrict__ tri_id,
                                          T* __restrict__ grad_pos, int64_t B, int64_t N,
                                          int64_t T_count, int H, int W) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(H) * W;
  if (pix >= B * pixels) return;
  const int32_t t = tri_id[pix];
  if (t < 0 || t >= T_count) return;
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  if (!valid_triangle(tri, N)) return;
  const T gb[3] = {grad_bary[3 * pix], grad_bary[3 * pix + 1], grad_bary[3 * pix + 2]};
  const T gd = grad_depth[pix];
  if (gb[0] == T(0) && gb[1] == T(0) && gb[2] == T(0) && gd == T(0)) return;
  const int64_t b = pix / pixels, q = pix % pixels;
  const int row = static_cast<int>(q / W), col = static_cast<int>(q % W);
  const T* pb = pos + b * N * 4;
  const T* p[3] = {pb + 4 * tri[0], pb + 4 * tri[1], pb + 4 * tri[2]};
  T g[3][4] = {};
  raster::resolve_pixel_backward(p, col, row, H, W, gb, gd, g);
  T* gp = grad_pos + b * N * 4;
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 4; ++c) atomicAdd(gp + 4 * tri[k] + c, g[k][c]);
}

template <typename T>
__global__ void interpolate_kernel(const T* __restrict__ attr, const int32_t* __restrict__ tri_id,
                                   const T* __restrict__ bary, const int32_t* __restrict__ tris,
                                   T* __restrict__ out, int64_t total, int64_t pixels,
                                   int64_t Ba, int64_t N, int64_t C, int64_t T_count) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  T* o = out + p * C;
  const int32_t t = tri_id[p];
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  if (t < 0 || t >= T_count || !valid_triangle(tri, N)) {
    for (int64_t c = 0; c < C; ++c) o[c] = T(0);
    return;
  }
  const T* a = attr + (Ba == 1 ? 0 : p / pixels) * N * C;
  raster::interpolate_pixel(a + tri[0] * C, a + tri[1] * C, a + tri[2] * C, bary + 3 * p, C, o);
}

template <typename T>
__global__ void interpolate_backward_kernel(const T* __restrict__ grad_out,
                                            const T* __restrict__ attr,
                                            const int32_t* __restrict__ tri_id,
                                            const T* __restrict__ bary,
                                            const int32_t* __restrict__ tris,
                                            T* __restrict__ grad_attr, T* __restrict__ grad_bary,
                                            int64_t total, int64_t pixels, int64_t Ba, int64_t N,
                                            int64_t C, int64_t T_count) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  const int32_t t = tri_id[p];
  if (t < 0 || t >= T_count) return;
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  if (!valid_triangle(tri, N)) return;
  const int64_t item = Ba == 1 ? 0 : p / pixels;
  const T* a = attr + item * N * C;
  T* ga = grad_attr + item * N * C;
  const T* g = grad_out + p * C;
  for (int k = 0; k < 3; ++k) {
    const T bk = bary[3 * p + k];
    const T* ak = a + tri[k] * C;
    T* gak = ga + tri[k] * C;
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) {
      dot += g[c] * ak[c];
      atomicAdd(gak + c, bk * g[c]);
    }
    grad_bary[3 * p + k] = dot;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_cuda(const at::Tensor& pos_in,
                                                              const at::Tensor& tris_in,
                                                              int64_t height, int64_t width,
                                                              int64_t cull) {
  check_rasterize_args(pos_in, tris_in, height, width, cull);
  TORCH_CHECK(pos_in.is_cuda(), "rasterize (CUDA): expected CUDA tensors, got ", pos_in.device());
  const c10::cuda::CUDAGuard guard(pos_in.device());
  const at::Tensor pos = pos_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = pos.size(0), N = pos.size(1), T_count = tris.size(0);
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  at::Tensor tri_id = at::empty({B, H, W}, pos.options().dtype(at::kInt));
  at::Tensor bary = at::empty({B, H, W, 3}, pos.options());
  at::Tensor depth = at::empty({B, H, W}, pos.options());
  if (B == 0) return {bary, depth, tri_id};
  // All bits set = kEmptyKey, the largest key.
  at::Tensor zbuf = at::full({B, H, W}, -1, pos.options().dtype(at::kLong));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  auto* z = reinterpret_cast<unsigned long long*>(zbuf.data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cuda", [&] {
    if (T_count > 0) {
      coverage_kernel<scalar_t><<<blocks_for(B * T_count), kThreads, 0, stream>>>(
          pos.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), z, B, N, T_count, H, W,
          static_cast<int>(cull));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    resolve_kernel<scalar_t><<<blocks_for(B * H * W), kThreads, 0, stream>>>(
        pos.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), z, tri_id.data_ptr<int32_t>(),
        bary.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), B, N, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {bary, depth, tri_id};
}

at::Tensor rasterize_backward_cuda(const at::Tensor& grad_bary_in, const at::Tensor& grad_depth_in,
                                   const at::Tensor& pos_in, const at::Tensor& tris_in,
                                   const at::Tensor& tri_id_in) {
  check_rasterize_backward_args(grad_bary_in, grad_depth_in, pos_in, tris_in, tri_id_in);
  const int64_t B = pos_in.size(0), N = pos_in.size(1), T_count = tris_in.size(0);
  const c10::cuda::CUDAGuard guard(pos_in.device());
  const at::Tensor pos = pos_in.contiguous(), tris = tris_in.contiguous(),
                   tri_id = tri_id_in.contiguous(), grad_bary = grad_bary_in.contiguous(),
                   grad_depth = grad_depth_in.contiguous();
  const int H = static_cast<int>(tri_id.size(1)), W = static_cast<int>(tri_id.size(2));
  at::Tensor grad_pos = at::zeros({B, N, 4}, pos.options());
  if (B == 0 || N == 0) return grad_pos;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cuda", [&] {
    rasterize_backward_kernel<scalar_t><<<blocks_for(B * H * W), kThreads, 0, stream>>>(
        grad_bary.data_ptr<scalar_t>(), grad_depth.data_ptr<scalar_t>(),
        pos.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), tri_id.data_ptr<int32_t>(),
        grad_pos.data_ptr<scalar_t>(), B, N, T_count, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_pos;
}

at::Tensor interpolate_cuda(const at::Tensor& attr_in, const at::Tensor& tri_id_in,
                            const at::Tensor& bary_in, const at::Tensor& tris_in) {
  check_interpolate_args(attr_in, tri_id_in, bary_in, tris_in);
  const c10::cuda::CUDAGuard guard(attr_in.device());
  const at::Tensor attr = attr_in.contiguous(), tri_id = tri_id_in.contiguous(),
                   bary = bary_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = tri_id.size(0), H = tri_id.size(1), W = tri_id.size(2);
  const int64_t Ba = attr.size(0), N = attr.size(1), C = attr.size(2);
  at::Tensor out = at::empty({B, H, W, C}, attr.options());
  const int64_t total = B * H * W;
  if (total == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cuda", [&] {
    interpolate_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        attr.data_ptr<scalar_t>(), tri_id.data_ptr<int32_t>(), bary.data_ptr<scalar_t>(),
        tris.data_ptr<int32_t>(), out.data_ptr<scalar_t>(), total, H * W, Ba, N, C,
        tris.size(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cuda(const at::Tensor& grad_out_in,
                                                             const at::Tensor& attr_in,
                                                             const at::Tensor& tri_id_in,
                                                             const at::Tensor& bary_in,
                                                             const at::Tensor& tris_in) {
  check_interpolate_backward_args(grad_out_in, attr_in, tri_id_in, bary_in, tris_in);
  const c10::cuda::CUDAGuard guard(attr_in.device());
  const at::Tensor attr = attr_in.contiguous(), tri_id = tri_id_in.contiguous(),
                   bary = bary_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = tri_id.size(0), H = tri_id.size(1), W = tri_id.size(2);
  const int64_t Ba = attr.size(0), N = attr.size(1), C = attr.size(2);
  const at::Tensor grad_out = grad_out_in.contiguous();
  at::Tensor grad_attr = at::zeros_like(attr);
  at::Tensor grad_bary = at::zeros({B, H, W, 3}, attr.options());
  const int64_t total = B * H * W;
  if (total == 0) return {grad_attr, grad_bary};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cuda", [&] {
    interpolate_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), tri_id.data_ptr<int32_t>(),
        bary.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), grad_attr.data_ptr<scalar_t>(),
        grad_bary.data_ptr<scalar_t>(), total, H * W, Ba, N, C, tris.size(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_attr, grad_bary};
}

TORCH_LIBRARY_IMPL(pgnface, CUDA, m) {
  m.impl("rasterize", &rasterize_cuda);
  m.impl("rasterize_backward", &rasterize_backward_cuda);
  m.impl("interpolate", &interpolate_cuda);
  m.impl("interpolate_backward", &interpolate_backward_cuda);
}

}  // namespace pgnface
