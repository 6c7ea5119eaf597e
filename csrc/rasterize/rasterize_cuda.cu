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
// Backward, two paths:
//   - fast (default): one thread per pixel, gradients scattered into [B,N,4]
//     (interpolate: [Ba,N,C]) with float atomicAdd, so the order of the sums,
//     and their rounding, changes from run to run.
//   - deterministic (torch.use_deterministic_algorithms(True)): each pixel
//     writes its contributions and their vertex keys; the entries are sorted by
//     key (stable: one vertex's entries stay in pixel order) and one thread per
//     output element sums its vertex's entries in that order. Every sum has a
//     fixed order, so the result is bitwise reproducible. It is the CPU twin's
//     order (pixels in row-major order per batch item) where the twin sums one
//     band of rows per image (docs/ops/rasterize.md says when).
// All per-pixel math comes from rasterize_kernel.h, the code the CPU twin runs.
// Memory: most global loads here are gathers by index (a pixel's triangle and
// its vertices, an entry through the sorted order), so the emulator's counters
// show 20-40 % of each fetched sector used (docs/cuda_emulation.md); only the
// per-pixel inputs (tri_id, zbuf, grad_depth; bary and grad_bary rows of 3)
// and the status shares are meant to be coalesced.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "../common/cuda_guard.h"
#include "../common/fixed_order_sum.h"
#include "../common/launch.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "rasterize.h"
#include "rasterize_kernel.h"

namespace pgnface {
namespace {

constexpr int kThreads = 256;

dim3 blocks_for(int64_t work) { return grid_for("rasterize", work, kThreads); }

bool deterministic() { return at::globalContext().deterministicAlgorithms(); }

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
                               T* __restrict__ depth, int64_t B, int64_t N, int64_t T_count, int H,
                               int W, int32_t* __restrict__ status) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(H) * W;
  if (status) {  // the value check, split over the launch: status bits 1 pos, 2 tris
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    if (!finite_share(pos, B * N * 4, pix, stride)) flag_status(status, 1);
    if (!index_share_in_range(tris, T_count * 3, N, pix, stride)) flag_status(status, 2);
  }
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
__global__ void interpolate_kernel(const T* __restrict__ attr, const int32_t* __restrict__ tri_id,
                                   const T* __restrict__ bary, const int32_t* __restrict__ tris,
                                   T* __restrict__ out, int64_t total, int64_t pixels, int64_t Ba,
                                   int64_t N, int64_t C, int64_t T_count,
                                   int32_t* __restrict__ status) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (status) {  // the value check, split over the launch: status bit 1 tris
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    if (!index_share_in_range(tris, T_count * 3, N, p, stride)) flag_status(status, 1);
  }
  if (p >= total) return;
  const T* a = attr + (Ba == 1 ? 0 : p / pixels) * N * C;
  raster::interpolate_at(tri_id[p], tris, T_count, a, N, C, bary + 3 * p, out + p * C);
}

// Per pixel of rasterize's backward: the gradients it sends to its
// triangle's vertices, either added into grad_pos [B,N,4] with atomics (fast
// path: keys == nullptr) or written as entries 3 * pix + k of contrib
// [3*B*H*W, 4] keyed by b * N + vertex in keys [3*B*H*W] (deterministic path;
// entries of pixels that send nothing get key B * N, past every vertex, and
// their contrib is never read).
template <typename T>
__global__ void rasterize_backward_kernel(
    const T* __restrict__ grad_bary, const T* __restrict__ grad_depth, const T* __restrict__ pos,
    const int32_t* __restrict__ tris, const int32_t* __restrict__ tri_id, T* __restrict__ grad_pos,
    T* __restrict__ contrib, int64_t* __restrict__ keys, int64_t B, int64_t N, int64_t T_count,
    int H, int W) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(H) * W;
  if (pix >= B * pixels) return;
  const int64_t b = pix / pixels, q = pix % pixels;
  const int row = static_cast<int>(q / W), col = static_cast<int>(q % W);
  if (keys == nullptr) {
    raster::rasterize_backward_pixel(tri_id[pix], grad_bary + 3 * pix, grad_depth + pix,
                                     pos + b * N * 4, tris, N, T_count, col, row, H, W,
                                     grad_pos + b * N * 4, AtomicAdd{});
    return;
  }
  int64_t v[3];
  T g[3][4];
  if (!raster::rasterize_backward_contribution(tri_id[pix], grad_bary + 3 * pix, grad_depth + pix,
                                               pos + b * N * 4, tris, N, T_count, col, row, H, W, v,
                                               g)) {
    for (int k = 0; k < 3; ++k) keys[3 * pix + k] = B * N;
    return;
  }
  for (int k = 0; k < 3; ++k) {
    keys[3 * pix + k] = b * N + v[k];
    for (int c = 0; c < 4; ++c) contrib[(3 * pix + k) * 4 + c] = g[k][c];
  }
}

// Per pixel of interpolate's backward: grad_bary (written, no scatter), and
// either bary[k] * grad_out added into grad_attr with atomics (fast path: keys
// == nullptr) or the keys item * N + vertex of its entries 3 * p + k
// (deterministic path; Ba * N where the pixel has no valid triangle).
template <typename T>
__global__ void interpolate_backward_kernel(
    const T* __restrict__ grad_out, const T* __restrict__ attr, const int32_t* __restrict__ tri_id,
    const T* __restrict__ bary, const int32_t* __restrict__ tris, T* __restrict__ grad_attr,
    T* __restrict__ grad_bary, int64_t* __restrict__ keys, int64_t total, int64_t pixels,
    int64_t Ba, int64_t N, int64_t C, int64_t T_count) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  const int64_t item = Ba == 1 ? 0 : p / pixels;
  if (keys == nullptr) {
    raster::interpolate_backward_pixel(tri_id[p], tris, T_count, attr + item * N * C, N, C,
                                       bary + 3 * p, grad_out + p * C, grad_attr + item * N * C,
                                       grad_bary + 3 * p, AtomicAdd{});
    return;
  }
  const int32_t* tri = raster::pixel_triangle(tri_id[p], tris, T_count, N);
  if (tri == nullptr) {
    for (int k = 0; k < 3; ++k) keys[3 * p + k] = Ba * N;
    return;
  }
  const T* go = grad_out + p * C;
  for (int k = 0; k < 3; ++k) {
    keys[3 * p + k] = item * N + tri[k];
    // The dot product of raster::interpolate_backward_pixel, in its order.
    const T* ak = attr + (item * N + tri[k]) * C;
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) dot += go[c] * ak[c];
    grad_bary[3 * p + k] = dot;
  }
}

// --- deterministic backward ------------------------------------------------

// The entries of key j, in their order: order[s] for s in [start[j],
// start[j + 1]) (group_by_key); the term ranges of fixed_order_sum_kernel.
struct Segments {
  const int64_t* order;
  const int64_t* start;
  __device__ int64_t begin(int64_t j) const { return start[j]; }
  __device__ int64_t end(int64_t j) const { return start[j + 1]; }
};

// Terms of fixed_order_sum_kernel: out[j, c] = sum of values[order[s], c]
// over the entries of vertex j.
template <typename T>
struct SegmentTerms : Segments {
  const T* values;
  int64_t width;
  __device__ T operator()(int64_t, int64_t c, int64_t s) const {
    return values[order[s] * width + c];
  }
};

// Terms of fixed_order_sum_kernel: grad_attr[j, c] = sum of bary[e] *
// grad_out[e / 3, c] over the entries e of vertex j (the product the fast
// path adds, so both paths sum the same terms).
template <typename T>
struct GatherTerms : Segments {
  const T* bary;
  const T* grad_out;
  int64_t C;
  __device__ T operator()(int64_t, int64_t c, int64_t s) const {
    const int64_t e = order[s];
    return bary[e] * grad_out[(e / 3) * C + c];
  }
};

// Groups entries by key: returns (order, start) with order the entry indices
// sorted by key, stably, so one key's entries keep their index order, and
// start [key_count + 1] the first position of each key in that order. Keys
// equal to key_count (entries that send nothing) sort last and are in no
// group. Sorting is the deterministic part: torch's stable sort and
// searchsorted give the same order on every run.
std::pair<at::Tensor, at::Tensor> group_by_key(const at::Tensor& keys, int64_t key_count) {
  auto [sorted, order] = keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor start = at::searchsorted(sorted, at::arange(key_count + 1, keys.options()));
  return {order, start};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_cuda(
    const at::Tensor& pos_in, const at::Tensor& tris_in, int64_t height, int64_t width,
    int64_t cull, int64_t check) {
  const auto call = rasterize_prologue(pos_in, tris_in, height, width, cull);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(pos_in, "rasterize");
  const at::Tensor &pos = call.pos, &tris = call.tris;
  const at::Tensor &tri_id = call.tri_id, &bary = call.bary, &depth = call.depth;
  const int64_t B = call.B, N = call.N, T_count = call.T_count;
  const int H = call.H, W = call.W;
  const at::Tensor status = new_status(pos_in, check);
  if (B == 0) return {bary, depth, tri_id, status};
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
        bary.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), B, N, T_count, H, W,
        check == kCheckOff ? nullptr : status.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  rasterize_act_on_status(status, check, call);
  return {bary, depth, tri_id, status};
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
  if (deterministic()) {
    const int64_t entries = 3 * B * H * W;
    at::Tensor contrib = at::empty({entries, 4}, pos.options());
    at::Tensor keys = at::empty({entries}, pos.options().dtype(at::kLong));
    AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cuda", [&] {
      PGN_LAUNCH(blocks_for(B * H * W), kThreads, 0, stream, rasterize_backward_kernel<scalar_t>)(
          grad_bary.data_ptr<scalar_t>(), grad_depth.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(),
          tris.data_ptr<int32_t>(), tri_id.data_ptr<int32_t>(), nullptr,
          contrib.data_ptr<scalar_t>(), keys.data_ptr<int64_t>(), B, N, T_count, H, W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const auto [order, start] = group_by_key(keys, B * N);
      const SegmentTerms<scalar_t> terms{
          {order.data_ptr<int64_t>(), start.data_ptr<int64_t>()}, contrib.data_ptr<scalar_t>(), 4};
      PGN_LAUNCH(blocks_for(B * N * 4), kThreads, 0, stream,
                 fixed_order_sum_kernel<scalar_t, SegmentTerms<scalar_t>>)(
          terms, grad_pos.data_ptr<scalar_t>(), B * N, 4);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return grad_pos;
  }
  at::globalContext().alertNotDeterministic("rasterize_backward (CUDA, float atomicAdd)");
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cuda", [&] {
    PGN_LAUNCH(blocks_for(B * H * W), kThreads, 0, stream, rasterize_backward_kernel<scalar_t>)(
        grad_bary.data_ptr<scalar_t>(), grad_depth.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(),
        tris.data_ptr<int32_t>(), tri_id.data_ptr<int32_t>(), grad_pos.data_ptr<scalar_t>(),
        nullptr, nullptr, B, N, T_count, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_pos;
}

std::tuple<at::Tensor, at::Tensor> interpolate_cuda(const at::Tensor& attr_in,
                                                    const at::Tensor& tri_id_in,
                                                    const at::Tensor& bary_in,
                                                    const at::Tensor& tris_in, int64_t check) {
  const auto call = interpolate_prologue(attr_in, tri_id_in, bary_in, tris_in);
  const c10::cuda::CUDAGuard guard = cuda_entry_guard(attr_in, "interpolate");
  const at::Tensor &attr = call.attr, &tri_id = call.tri_id, &bary = call.bary, &tris = call.tris;
  const int64_t B = call.B, H = call.H, W = call.W;
  const int64_t Ba = call.Ba, N = call.N, C = call.C;
  at::Tensor out = at::empty({B, H, W, C}, attr.options());
  const at::Tensor status = new_status(attr_in, check);
  const int64_t total = B * H * W;
  if (total == 0) return {out, status};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cuda", [&] {
    PGN_LAUNCH(blocks_for(total), kThreads, 0, stream, interpolate_kernel<scalar_t>)(
        attr.data_ptr<scalar_t>(), tri_id.data_ptr<int32_t>(), bary.data_ptr<scalar_t>(),
        tris.data_ptr<int32_t>(), out.data_ptr<scalar_t>(), total, H * W, Ba, N, C, tris.size(0),
        check == kCheckOff ? nullptr : status.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  interpolate_act_on_status(status, check, call);
  return {out, status};
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
  if (deterministic()) {
    at::Tensor keys = at::empty({3 * total}, attr.options().dtype(at::kLong));
    AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cuda", [&] {
      PGN_LAUNCH(blocks_for(total), kThreads, 0, stream, interpolate_backward_kernel<scalar_t>)(
          grad_out.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), tri_id.data_ptr<int32_t>(),
          bary.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), nullptr,
          grad_bary.data_ptr<scalar_t>(), keys.data_ptr<int64_t>(), total, H * W, Ba, N, C,
          tris.size(0));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (N * C == 0) return;
      const auto [order, start] = group_by_key(keys, Ba * N);
      const GatherTerms<scalar_t> terms{{order.data_ptr<int64_t>(), start.data_ptr<int64_t>()},
                                        bary.data_ptr<scalar_t>(),
                                        grad_out.data_ptr<scalar_t>(),
                                        C};
      PGN_LAUNCH(blocks_for(Ba * N * C), kThreads, 0, stream,
                 fixed_order_sum_kernel<scalar_t, GatherTerms<scalar_t>>)(
          terms, grad_attr.data_ptr<scalar_t>(), Ba * N, C);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return {grad_attr, grad_bary};
  }
  at::globalContext().alertNotDeterministic("interpolate_backward (CUDA, float atomicAdd)");
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cuda", [&] {
    PGN_LAUNCH(blocks_for(total), kThreads, 0, stream, interpolate_backward_kernel<scalar_t>)(
        grad_out.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), tri_id.data_ptr<int32_t>(),
        bary.data_ptr<scalar_t>(), tris.data_ptr<int32_t>(), grad_attr.data_ptr<scalar_t>(),
        grad_bary.data_ptr<scalar_t>(), nullptr, total, H * W, Ba, N, C, tris.size(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_attr, grad_bary};
}

}  // namespace pgnface
