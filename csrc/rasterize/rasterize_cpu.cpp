// CPU twin of the rasterizer and of attribute interpolation.
//
// Forward scheduling: project the vertices once per image, then depth-test
// every triangle's pixels into a z-buffer of packed (depth, triangle id)
// keys, then resolve each pixel. With at least as many images as threads each
// task takes whole images; otherwise the triangles of an image are split
// across threads into private z-buffers that are merged by min. Keys make the
// result exact and independent of that split.
// Backward scheduling: (batch item, band of rows) tasks, each with its own
// gradient buffer; the bands depend on B and H only, never on the thread
// count, so the gradient sums are reproducible.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/status.h"
#include "../common/status_host.h"

#include <algorithm>
#include <vector>

#include "rasterize.h"
#include "rasterize_kernel.h"

namespace pgnface {

namespace {

// Bands per batch item: enough tasks to keep several cores busy for small
// batches, one band per item for large ones; at least 16 rows a band.
int64_t bands_for(int64_t B, int64_t H) {
  const int64_t want = std::max<int64_t>(1, 8 / std::max<int64_t>(B, 1));
  return std::max<int64_t>(1, std::min<int64_t>(want, H / 16));
}

// Accumulators handed to the shared per-pixel code: each task owns the
// memory it writes, so plain stores suffice.
struct KeepMin {
  void operator()(uint64_t* slot, uint64_t key) const {
    if (key < *slot) *slot = key;
  }
};
struct Add {
  template <typename T>
  void operator()(T* slot, T value) const {
    *slot += value;
  }
};

// The value checks of rasterize and interpolate: pos and tris are small next
// to the images, so the CPU twin reads them once before the kernel, on the
// calling thread (a parallel region of its own cost more than the scan when
// the cores are shared); the CUDA kernels split the same checks over their launch.
void check_index(const at::Tensor& tris, int64_t N, int32_t* status, int32_t bit) {
  if (!index_share_in_range(tris.data_ptr<int32_t>(), tris.numel(), N, 0, 1)) {
    flag_status(status, bit);
  }
}

void check_inputs(const at::Tensor& pos, const at::Tensor& tris, int64_t N, int32_t* status) {
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_check", [&] {
    if (!finite_share(pos.data_ptr<scalar_t>(), pos.numel(), 0, 1)) flag_status(status, 1);
  });
  check_index(tris, N, status, 2);
}

template <typename T>
using ScreenVertices = std::vector<raster::ScreenVertex<T>>;

template <typename T>
void project_vertices(const T* pos, int64_t n_begin, int64_t n_end, int H, int W,
                      ScreenVertices<T>& verts) {
  for (int64_t n = n_begin; n < n_end; ++n) verts[n] = raster::project_vertex(pos + 4 * n, H, W);
}

// Depth-tests triangles [t_begin, t_end) into zbuf [H*W] of packed keys.
template <typename T>
void cover_triangles(const ScreenVertices<T>& verts, const int32_t* tris, int64_t t_begin,
                     int64_t t_end, int H, int W, int cull, uint64_t* zbuf) {
  const int64_t N = static_cast<int64_t>(verts.size());
  raster::TriangleSetup setup;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int32_t* tri = tris + 3 * t;
    if (!raster::valid_triangle(tri, N)) continue;  // never read out of bounds
    const auto &v0 = verts[tri[0]], &v1 = verts[tri[1]], &v2 = verts[tri[2]];
    if (!raster::setup_triangle(v0, v1, v2, H, W, cull, setup)) continue;
    raster::cover_triangle(v0, v1, v2, setup, static_cast<int32_t>(t), W, zbuf, KeepMin{});
  }
}

// Writes the outputs of pixels [p_begin, p_end) of one image from its z-buffer.
template <typename T>
void resolve_pixels(const ScreenVertices<T>& verts, const T* pos, const int32_t* tris,
                    const uint64_t* zbuf, int64_t p_begin, int64_t p_end, int W, int32_t* tri_id,
                    T* bary, T* depth) {
  for (int64_t pix = p_begin; pix < p_end; ++pix) {
    const uint64_t key = zbuf[pix];
    T* b = bary + 3 * pix;
    if (key == raster::kEmptyKey) {
      raster::resolve_empty_pixel(tri_id[pix], b, depth[pix]);
      continue;
    }
    const int32_t t = static_cast<int32_t>(key & 0xffffffffu);
    const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
    tri_id[pix] = t;
    const int64_t v[3] = {tri[0], tri[1], tri[2]};  // 4 * index overflows int32 past 2^29 vertices
    const T w[3] = {pos[4 * v[0] + 3], pos[4 * v[1] + 3], pos[4 * v[2] + 3]};
    raster::resolve_screen_pixel(verts[tri[0]], verts[tri[1]], verts[tri[2]], w,
                                 static_cast<int>(pix % W), static_cast<int>(pix / W), b,
                                 depth[pix]);
  }
}

template <typename T>
void rasterize_backward_band(const T* grad_bary, const T* grad_depth, const T* pos,
                             const int32_t* tris, const int32_t* tri_id, int64_t N, int64_t T_count,
                             int H, int W, int row_begin, int row_end, T* grad_pos) {
  for (int row = row_begin; row < row_end; ++row) {
    for (int col = 0; col < W; ++col) {
      const int64_t pix = static_cast<int64_t>(row) * W + col;
      raster::rasterize_backward_pixel(tri_id[pix], grad_bary + 3 * pix, grad_depth + pix, pos,
                                       tris, N, T_count, col, row, H, W, grad_pos, Add{});
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_cpu(
    const at::Tensor& pos_in, const at::Tensor& tris_in, int64_t height, int64_t width,
    int64_t cull, int64_t check) {
  const auto call = rasterize_prologue(pos_in, tris_in, height, width, cull);
  const at::Tensor &pos = call.pos, &tris = call.tris;
  const at::Tensor &tri_id = call.tri_id, &bary = call.bary, &depth = call.depth;
  const int64_t B = call.B, N = call.N, T_count = call.T_count;
  const int H = call.H, W = call.W;
  const at::Tensor status = new_status(pos_in, check);
  if (B == 0) return {bary, depth, tri_id, status};
  if (check != kCheckOff) check_inputs(pos, tris, N, status.data_ptr<int32_t>());
  // The result is exact and order-independent, so the forward pass may split
  // work by thread count: whole images per task when the batch fills the
  // threads, otherwise triangles split across private z-buffers merged by min.
  const int64_t threads = at::get_num_threads();
  const int64_t pixels = static_cast<int64_t>(H) * W;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cpu", [&] {
    const scalar_t* pos_ptr = pos.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    scalar_t* depth_ptr = depth.data_ptr<scalar_t>();
    const int c = static_cast<int>(cull);
    if (B >= threads) {
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        ScreenVertices<scalar_t> verts(N);
        std::vector<uint64_t> zbuf;
        for (int64_t b = begin; b < end; ++b) {
          const scalar_t* p = pos_ptr + b * N * 4;
          project_vertices(p, 0, N, H, W, verts);
          zbuf.assign(pixels, raster::kEmptyKey);
          cover_triangles(verts, tris_ptr, 0, T_count, H, W, c, zbuf.data());
          resolve_pixels(verts, p, tris_ptr, zbuf.data(), 0, pixels, W, tri_ptr + b * pixels,
                         bary_ptr + 3 * b * pixels, depth_ptr + b * pixels);
        }
      });
      return;
    }
    ScreenVertices<scalar_t> verts(N);
    std::vector<uint64_t> zbufs(static_cast<size_t>(threads) * pixels);
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t* p = pos_ptr + b * N * 4;
      at::parallel_for(0, N, 2048, [&](int64_t begin, int64_t end) {
        project_vertices(p, begin, end, H, W, verts);
      });
      std::fill(zbufs.begin(), zbufs.end(), raster::kEmptyKey);
      at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
        for (int64_t part = begin; part < end; ++part) {
          cover_triangles(verts, tris_ptr, part * T_count / threads, (part + 1) * T_count / threads,
                          H, W, c, zbufs.data() + part * pixels);
        }
      });
      at::parallel_for(0, pixels, 4096, [&](int64_t begin, int64_t end) {
        uint64_t* merged = zbufs.data();
        for (int64_t part = 1; part < threads; ++part) {
          const uint64_t* z = zbufs.data() + part * pixels;
          for (int64_t q = begin; q < end; ++q) merged[q] = std::min(merged[q], z[q]);
        }
        resolve_pixels(verts, p, tris_ptr, merged, begin, end, W, tri_ptr + b * pixels,
                       bary_ptr + 3 * b * pixels, depth_ptr + b * pixels);
      });
    }
  });
  rasterize_act_on_status(status, check, call);
  return {bary, depth, tri_id, status};
}

at::Tensor rasterize_backward_cpu(const at::Tensor& grad_bary_in, const at::Tensor& grad_depth_in,
                                  const at::Tensor& pos_in, const at::Tensor& tris_in,
                                  const at::Tensor& tri_id_in) {
  const auto call =
      rasterize_backward_prologue(grad_bary_in, grad_depth_in, pos_in, tris_in, tri_id_in);
  const at::Tensor &pos = call.pos, &tris = call.tris, &tri_id = call.tri_id,
                   &grad_bary = call.grad_bary, &grad_depth = call.grad_depth;
  const int64_t B = call.B, N = call.N, T_count = call.T_count;
  const int H = call.H, W = call.W;
  const int64_t bands = bands_for(B, H);
  // One gradient buffer per band so bands never write the same vertex.
  at::Tensor partial = at::zeros({bands, B, N, 4}, pos.options());
  if (B == 0 || N == 0) return partial.sum(0);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cpu", [&] {
    const scalar_t* pos_ptr = pos.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* gb_ptr = grad_bary.data_ptr<scalar_t>();
    const scalar_t* gd_ptr = grad_depth.data_ptr<scalar_t>();
    scalar_t* out_ptr = partial.data_ptr<scalar_t>();
    at::parallel_for(0, B * bands, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / bands, band = task % bands;
        const int row_begin = static_cast<int>(band * H / bands);
        const int row_end = static_cast<int>((band + 1) * H / bands);
        const int64_t img = b * H * W;
        rasterize_backward_band(gb_ptr + 3 * img, gd_ptr + img, pos_ptr + b * N * 4, tris_ptr,
                                tri_ptr + img, N, T_count, H, W, row_begin, row_end,
                                out_ptr + (band * B + b) * N * 4);
      }
    });
  });
  return bands == 1 ? partial[0] : partial.sum(0);
}

std::tuple<at::Tensor, at::Tensor> interpolate_cpu(const at::Tensor& attr_in,
                                                   const at::Tensor& tri_id_in,
                                                   const at::Tensor& bary_in,
                                                   const at::Tensor& tris_in, int64_t check) {
  const auto call = interpolate_prologue(attr_in, tri_id_in, bary_in, tris_in);
  const at::Tensor &attr = call.attr, &tri_id = call.tri_id, &bary = call.bary, &tris = call.tris;
  const int64_t B = call.B, H = call.H, W = call.W;
  const int64_t Ba = call.Ba, N = call.N, C = call.C, T_count = call.T_count;
  at::Tensor out = at::empty({B, H, W, C}, attr.options());
  const at::Tensor status = new_status(attr_in, check);
  if (check != kCheckOff && B * H * W > 0) {
    check_index(tris, N, status.data_ptr<int32_t>(), 1);
  }
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cpu", [&] {
    const scalar_t* attr_ptr = attr.data_ptr<scalar_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    const int64_t pixels = H * W;
    at::parallel_for(0, B * pixels, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const scalar_t* a = attr_ptr + (Ba == 1 ? 0 : (p / pixels)) * N * C;
        raster::interpolate_at(tri_ptr[p], tris_ptr, T_count, a, N, C, bary_ptr + 3 * p,
                               out_ptr + p * C);
      }
    });
  });
  interpolate_act_on_status(status, check, call);
  return {out, status};
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_out_in,
                                                            const at::Tensor& attr_in,
                                                            const at::Tensor& tri_id_in,
                                                            const at::Tensor& bary_in,
                                                            const at::Tensor& tris_in) {
  const auto call =
      interpolate_backward_prologue(grad_out_in, attr_in, tri_id_in, bary_in, tris_in);
  const at::Tensor &attr = call.attr, &tri_id = call.tri_id, &bary = call.bary, &tris = call.tris,
                   &grad_out = call.grad_out;
  const int64_t B = call.B, H = call.H, W = call.W;
  const int64_t Ba = call.Ba, N = call.N, C = call.C, T_count = call.T_count;
  // Per-batch-item attribute gradients (summed afterwards when attr is shared),
  // so that tasks never write the same memory.
  at::Tensor grad_attr_items = at::zeros({B, N, C}, attr.options());
  at::Tensor grad_bary = at::zeros({B, H, W, 3}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cpu", [&] {
    const scalar_t* attr_ptr = attr.data_ptr<scalar_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    const scalar_t* go_ptr = grad_out.data_ptr<scalar_t>();
    scalar_t* ga_ptr = grad_attr_items.data_ptr<scalar_t>();
    scalar_t* gb_ptr = grad_bary.data_ptr<scalar_t>();
    const int64_t pixels = H * W;
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* a = attr_ptr + (Ba == 1 ? 0 : b) * N * C;
        scalar_t* ga = ga_ptr + b * N * C;
        for (int64_t q = 0; q < pixels; ++q) {
          const int64_t p = b * pixels + q;
          raster::interpolate_backward_pixel(tri_ptr[p], tris_ptr, T_count, a, N, C,
                                             bary_ptr + 3 * p, go_ptr + p * C, ga, gb_ptr + 3 * p,
                                             Add{});
        }
      }
    });
  });
  at::Tensor grad_attr = Ba == 1 ? grad_attr_items.sum(0, /*keepdim=*/true) : grad_attr_items;
  return {grad_attr, grad_bary};
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("rasterize", &rasterize_cpu);
  m.impl("rasterize_backward", &rasterize_backward_cpu);
  m.impl("interpolate", &interpolate_cpu);
  m.impl("interpolate_backward", &interpolate_backward_cpu);
}

}  // namespace pgnface
