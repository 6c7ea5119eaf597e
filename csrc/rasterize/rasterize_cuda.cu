// CUDA kernels of the rasterizer and of attribute interpolation.
//
// Forward, race-free with no host synchronisation:
//   1. coverage, in work items of at most kTile x kTile pixels, so that no
//      thread's work grows with a triangle's size:
//      a. setup: one thread per (batch item, triangle) sets the triangle up;
//         one whose pixel bounding box fits in one tile (the common case of a
//         dense mesh) is depth-tested there and then; a larger one only counts
//         its tiles (kTile x kTile pieces of its bounding box).
//      b. an inclusive prefix sum of the counts (at::cumsum, on the device)
//         numbers the (triangle, tile) work items;
//      c. tiles: a grid sized from the image (one thread per screen tile of
//         every image) strides over the work items, finds each item's
//         triangle by binary search in the prefix sum, skips tiles that lie
//         outside one of its edges and depth-tests the rest.
//      Every depth test atomicMin()s a packed 64-bit (depth, triangle id) key
//      into a z-buffer; the minimum is the same whatever the thread order or
//      the way the box is cut, so the result is bit-identical to the CPU twin.
//   2. resolve: one thread per pixel decodes the winning triangle and computes
//      its perspective-correct barycentrics and depth.
// Backward: one thread per pixel, gradients scattered into [B,N,4] with
// atomicAdd. All per-pixel math comes from rasterize_kernel.h, the code the CPU
// twin runs.
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include "../common/cuda_guard.h"
#include "../common/launch.h"
#include "rasterize.h"
#include "rasterize_kernel.h"

namespace pgnface {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t work) { return (work + kThreads - 1) / kThreads; }

// Accumulators handed to the shared per-pixel code: threads of different
// triangles or pixels meet in the same slot, so updates are atomic.
struct AtomicKeepMin {
  __device__ void operator()(unsigned long long* slot, unsigned long long key) const {
    atomicMin(slot, key);
  }
};
struct AtomicAdd {
  template <typename T>
  __device__ void operator()(T* slot, T value) const {
    atomicAdd(slot, value);
  }
};

// Side of a coverage work item in pixels: a thread depth-tests at most
// kTile * kTile pixels per item.
constexpr int kTile = 16;

// Tiles of the triangle's clipped pixel bounding box, along x and y.
__device__ __forceinline__ int tiles_x(const raster::TriangleSetup& s) {
  return (s.col1 - s.col0) / kTile + 1;
}
__device__ __forceinline__ int tiles_y(const raster::TriangleSetup& s) {
  return (s.row1 - s.row0) / kTile + 1;
}

// Projects and sets up triangle t of image b; false when it draws nothing.
template <typename T>
__device__ __forceinline__ bool triangle_at(const T* pos, const int32_t* tris, int64_t b, int64_t t,
                                            int64_t N, int H, int W, int cull,
                                            raster::ScreenVertex<T> v[3],
                                            raster::TriangleSetup& setup) {
  const int32_t* tri = tris + 3 * t;
  if (!raster::valid_triangle(tri, N)) return false;  // never read out of bounds
  const T* p = pos + b * N * 4;
  // 64-bit offsets: 4 * index overflows int32 past 2^29 vertices.
  for (int k = 0; k < 3; ++k)
    v[k] = raster::project_vertex(p + 4 * static_cast<int64_t>(tri[k]), H, W);
  return raster::setup_triangle(v[0], v[1], v[2], H, W, cull, setup);
}

// Whether the pixel centres of box [col0, col1] x [row0, row1] all lie
// strictly outside one edge of the triangle: then the box covers nothing. Edge
// functions are affine, so their maximum over the box is at a corner.
__device__ __forceinline__ bool box_outside(const raster::TriangleSetup& s) {
  const int64_t S = raster::kSubpixel, half = raster::kSubpixel / 2;
  const int64_t x0 = s.col0 * S + half, x1 = s.col1 * S + half;
  const int64_t y0 = s.row0 * S + half, y1 = s.row1 * S + half;
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    const int64_t ax = s.fx[a], ay = s.fy[a], bx = s.fx[b], by = s.fy[b];
    const int64_t e00 = s.sign * raster::edge_fixed(ax, ay, bx, by, x0, y0);
    const int64_t e10 = s.sign * raster::edge_fixed(ax, ay, bx, by, x1, y0);
    const int64_t e01 = s.sign * raster::edge_fixed(ax, ay, bx, by, x0, y1);
    const int64_t e11 = s.sign * raster::edge_fixed(ax, ay, bx, by, x1, y1);
    if (e00 < 0 && e10 < 0 && e01 < 0 && e11 < 0) return true;
  }
  return false;
}

// Pass 1a: one thread per (batch item, triangle). Depth-tests a triangle whose
// box fits in one tile; writes the number of tiles of a larger one (0 for one
// that is done or draws nothing) to tiles[i].
template <typename T>
__global__ void coverage_setup_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tris,
                                      unsigned long long* __restrict__ zbuf,
                                      int64_t* __restrict__ tiles, int64_t B, int64_t N,
                                      int64_t T_count, int H, int W, int cull) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * T_count) return;
  const int64_t b = i / T_count, t = i % T_count;
  raster::ScreenVertex<T> v[3];
  raster::TriangleSetup setup;
  int64_t count = 0;
  if (triangle_at(pos, tris, b, t, N, H, W, cull, v, setup)) {
    count = static_cast<int64_t>(tiles_x(setup)) * tiles_y(setup);
    if (count == 1) {
      raster::cover_triangle(v[0], v[1], v[2], setup, static_cast<int32_t>(t), W, zbuf + b * H * W,
                             AtomicKeepMin{});
      count = 0;
    }
  }
  tiles[i] = count;
}

// Pass 1c: the (triangle, tile) work items numbered by offsets, the inclusive
// prefix sum of pass 1a's counts [B * T_count]. Each thread takes items
// j = thread, thread + threads, ...: the grid has at least one thread per
// screen tile, so items per thread stay small whatever the triangles' size.
template <typename T>
__global__ void coverage_tiles_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tris,
                                      const int64_t* __restrict__ offsets,
                                      unsigned long long* __restrict__ zbuf, int64_t B, int64_t N,
                                      int64_t T_count, int H, int W, int cull) {
  const int64_t count = B * T_count;
  const int64_t items = offsets[count - 1];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < items;
       j += stride) {
    // The triangle of item j: the first i with offsets[i] > j.
    int64_t lo = 0, hi = count - 1;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (offsets[mid] > j)
        hi = mid;
      else
        lo = mid + 1;
    }
    const int64_t local = j - (lo > 0 ? offsets[lo - 1] : 0);
    const int64_t b = lo / T_count, t = lo % T_count;
    raster::ScreenVertex<T> v[3];
    raster::TriangleSetup box;
    // Always true: pass 1a counted tiles only for triangles it set up.
    if (!triangle_at(pos, tris, b, t, N, H, W, cull, v, box)) continue;
    const int nx = tiles_x(box);
    const int tx = static_cast<int>(local % nx), ty = static_cast<int>(local / nx);
    const int col1 = box.col1, row1 = box.row1;
    box.col0 += tx * kTile;
    box.row0 += ty * kTile;
    box.col1 = box.col0 + kTile - 1 < col1 ? box.col0 + kTile - 1 : col1;
    box.row1 = box.row0 + kTile - 1 < row1 ? box.row0 + kTile - 1 : row1;
    if (box_outside(box)) continue;
    raster::cover_triangle(v[0], v[1], v[2], box, static_cast<int32_t>(t), W, zbuf + b * H * W,
                           AtomicKeepMin{});
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
    raster::resolve_empty_pixel(tri_id[pix], bp, depth[pix]);
    return;
  }
  const int64_t b = pix / pixels, q = pix % pixels;
  const int row = static_cast<int>(q / W), col = static_cast<int>(q % W);
  const int32_t t = static_cast<int32_t>(key & 0xffffffffull);
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  const T* p = pos + b * N * 4;
  const int64_t v[3] = {tri[0], tri[1], tri[2]};  // 4 * index overflows int32 past 2^29 vertices
  tri_id[pix] = t;
  raster::resolve_pixel(p + 4 * v[0], p + 4 * v[1], p + 4 * v[2], col, row, H, W, bp, depth[pix]);
}

template <typename T>
__global__ void rasterize_backward_kernel(
    const T* __restrict__ grad_bary, const T* __restrict__ grad_depth, const T* __restrict__ pos,
    const int32_t* __restrict__ tris, const int32_t* __restrict__ tri_id, T* __restrict__ grad_pos,
    int64_t B, int64_t N, int64_t T_count, int H, int W) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(H) * W;
  if (pix >= B * pixels) return;
  const int64_t b = pix / pixels, q = pix % pixels;
  const int row = static_cast<int>(q / W), col = static_cast<int>(q % W);
  raster::rasterize_backward_pixel(tri_id[pix], grad_bary + 3 * pix, grad_depth + pix,
                                   pos + b * N * 4, tris, N, T_count, col, row, H, W,
                                   grad_pos + b * N * 4, AtomicAdd{});
}

template <typename T>
__global__ void interpolate_kernel(const T* __restrict__ attr, const int32_t* __restrict__ tri_id,
                                   const T* __restrict__ bary, const int32_t* __restrict__ tris,
                                   T* __restrict__ out, int64_t total, int64_t pixels, int64_t Ba,
                                   int64_t N, int64_t C, int64_t T_count) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  const T* a = attr + (Ba == 1 ? 0 : p / pixels) * N * C;
  raster::interpolate_at(tri_id[p], tris, T_count, a, N, C, bary + 3 * p, out + p * C);
}

template <typename T>
__global__ void interpolate_backward_kernel(
    const T* __restrict__ grad_out, const T* __restrict__ attr, const int32_t* __restrict__ tri_id,
    const T* __restrict__ bary, const int32_t* __restrict__ tris, T* __restrict__ grad_attr,
    T* __restrict__ grad_bary, int64_t total, int64_t pixels, int64_t Ba, int64_t N, int64_t C,
    int64_t T_count) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  const int64_t item = Ba == 1 ? 0 : p / pixels;
  raster::interpolate_backward_pixel(tri_id[p], tris, T_count, attr + item * N * C, N, C,
                                     bary + 3 * p, grad_out + p * C, grad_attr + item * N * C,
                                     grad_bary + 3 * p, AtomicAdd{});
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_cuda(const at::Tensor& pos_in,
                                                              const at::Tensor& tris_in,
                                                              int64_t height, int64_t width,
                                                              int64_t cull) {
  const auto call = rasterize_prologue(pos_in, tris_in, height, width, cull);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(pos_in, "rasterize");
  const at::Tensor &pos = call.pos, &tris = call.tris;
  const at::Tensor &tri_id = call.tri_id, &bary = call.bary, &depth = call.depth;
  const int64_t B = call.B, N = call.N, T_count = call.T_count;
  const int H = call.H, W = call.W;
  if (B == 0) return {bary, depth, tri_id};
  // All bits set = kEmptyKey, the largest key.
  at::Tensor zbuf = at::full({B, H, W}, -1, pos.options().dtype(at::kLong));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  auto* z = reinterpret_cast<unsigned long long*>(zbuf.data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cuda", [&] {
    if (T_count > 0) {
      at::Tensor tiles = at::empty({B * T_count}, pos.options().dtype(at::kLong));
      PGN_LAUNCH(blocks_for(B * T_count), kThreads, 0, stream, coverage_setup_kernel<scalar_t>)(
          pos.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), z, tiles.data_ptr<int64_t>(), B, N,
          T_count, H, W, static_cast<int>(cull));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      // Numbers the work items on the device: the host never reads the total.
      const at::Tensor offsets = at::cumsum(tiles, 0);
      // One thread per screen tile of every image: a triangle covering the
      // whole screen makes at most that many items.
      const int64_t screen_tiles = B * ((H + kTile - 1) / kTile) * ((W + kTile - 1) / kTile);
      PGN_LAUNCH(blocks_for(screen_tiles), kThreads, 0, stream, coverage_tiles_kernel<scalar_t>)(
          pos.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), offsets.data_ptr<int64_t>(), z, B, N,
          T_count, H, W, static_cast<int>(cull));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    PGN_LAUNCH(blocks_for(B * H * W), kThreads, 0, stream, resolve_kernel<scalar_t>)(
        pos.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), z, tri_id.data_ptr<int32_t>(),
        bary.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), B, N, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {bary, depth, tri_id};
}

at::Tensor rasterize_backward_cuda(const at::Tensor& grad_bary_in, const at::Tensor& grad_depth_in,
                                   const at::Tensor& pos_in, const at::Tensor& tris_in,
                                   const at::Tensor& tri_id_in) {
  const auto call =
      rasterize_backward_prologue(grad_bary_in, grad_depth_in, pos_in, tris_in, tri_id_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(pos_in, "rasterize_backward");
  const at::Tensor &pos = call.pos, &tris = call.tris, &tri_id = call.tri_id,
                   &grad_bary = call.grad_bary, &grad_depth = call.grad_depth;
  const int64_t B = call.B, N = call.N, T_count = call.T_count;
  const int H = call.H, W = call.W;
  at::Tensor grad_pos = at::zeros({B, N, 4}, pos.options());
  if (B == 0 || N == 0) return grad_pos;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cuda", [&] {
    PGN_LAUNCH(blocks_for(B * H * W), kThreads, 0, stream, rasterize_backward_kernel<scalar_t>)(
        grad_bary.data_ptr<scalar_t>(), grad_depth.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(),
        tris.data_ptr<int32_t>(), tri_id.data_ptr<int32_t>(), grad_pos.data_ptr<scalar_t>(), B, N,
        T_count, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_pos;
}

at::Tensor interpolate_cuda(const at::Tensor& attr_in, const at::Tensor& tri_id_in,
                            const at::Tensor& bary_in, const at::Tensor& tris_in) {
  const auto call = interpolate_prologue(attr_in, tri_id_in, bary_in, tris_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(attr_in, "interpolate");
  const at::Tensor &attr = call.attr, &tri_id = call.tri_id, &bary = call.bary, &tris = call.tris;
  const int64_t B = call.B, H = call.H, W = call.W;
  const int64_t Ba = call.Ba, N = call.N, C = call.C;
  at::Tensor out = at::empty({B, H, W, C}, attr.options());
  const int64_t total = B * H * W;
  if (total == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cuda", [&] {
    PGN_LAUNCH(blocks_for(total), kThreads, 0, stream, interpolate_kernel<scalar_t>)(
        attr.data_ptr<scalar_t>(), tri_id.data_ptr<int32_t>(), bary.data_ptr<scalar_t>(),
        tris.data_ptr<int32_t>(), out.data_ptr<scalar_t>(), total, H * W, Ba, N, C, tris.size(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cuda(const at::Tensor& grad_out_in,
                                                             const at::Tensor& attr_in,
                                                             const at::Tensor& tri_id_in,
                                                             const at::Tensor& bary_in,
                                                             const at::Tensor& tris_in) {
  const auto call =
      interpolate_backward_prologue(grad_out_in, attr_in, tri_id_in, bary_in, tris_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(attr_in, "interpolate_backward");
  const at::Tensor &attr = call.attr, &tri_id = call.tri_id, &bary = call.bary, &tris = call.tris,
                   &grad_out = call.grad_out;
  const int64_t B = call.B, H = call.H, W = call.W;
  const int64_t Ba = call.Ba, N = call.N, C = call.C;
  at::Tensor grad_attr = at::zeros_like(attr);
  at::Tensor grad_bary = at::zeros({B, H, W, 3}, attr.options());
  const int64_t total = B * H * W;
  if (total == 0) return {grad_attr, grad_bary};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cuda", [&] {
    PGN_LAUNCH(blocks_for(total), kThreads, 0, stream, interpolate_backward_kernel<scalar_t>)(
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
