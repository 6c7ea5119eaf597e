// CPU twin of the rasterizer and of attribute interpolation.
//
// Scheduling: the image of each batch item is split into horizontal bands;
// (batch item, band) pairs are independent tasks for at::parallel_for. A task
// projects the vertices once, walks every triangle whose bounding box meets
// its band and keeps a private z-buffer of packed (depth, triangle) keys, then
// resolves its pixels. The number of bands depends on B and H only, never on
// the thread count, so every output (and every gradient sum) is reproducible.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../common/check.h"
#include "rasterize.h"
#include "rasterize_kernel.h"

namespace pgnface {

void check_rasterize_args(const at::Tensor& pos, const at::Tensor& tris, int64_t height,
                          int64_t width, int64_t cull) {
  PGN_CHECK_FLOATING(pos);
  PGN_CHECK_DIM(pos, 3);
  PGN_CHECK_SIZE(pos, 2, 4);
  TORCH_CHECK(tris.scalar_type() == at::kInt, "tris must be int32, got ", tris.scalar_type());
  PGN_CHECK_DIM(tris, 2);
  PGN_CHECK_SIZE(tris, 1, 3);
  PGN_CHECK_SAME_DEVICE(tris, pos);
  TORCH_CHECK(height > 0 && width > 0, "resolution must be positive, got ", height, " x ", width);
  TORCH_CHECK(height <= (1 << 15) && width <= (1 << 15), "resolution ", height, " x ", width,
              " is above the supported 32768 x 32768");
  TORCH_CHECK(tris.size(0) < std::numeric_limits<int32_t>::max(), "too many triangles");
  TORCH_CHECK(cull >= raster::kCullNone && cull <= raster::kCullFront,
              "cull must be 0 (none), 1 (back) or 2 (front), got ", cull);
}

void check_fragments(const at::Tensor& tri_id, const at::Tensor& bary, int64_t B) {
  TORCH_CHECK(tri_id.scalar_type() == at::kInt, "tri_id must be int32, got ", tri_id.scalar_type());
  PGN_CHECK_DIM(tri_id, 3);
  PGN_CHECK_SIZE(tri_id, 0, B);
  PGN_CHECK_DIM(bary, 4);
  TORCH_CHECK(bary.size(0) == B && bary.size(1) == tri_id.size(1) &&
                  bary.size(2) == tri_id.size(2) && bary.size(3) == 3,
              "bary must have shape [", B, ", ", tri_id.size(1), ", ", tri_id.size(2),
              ", 3], got ", bary.sizes());
  PGN_CHECK_SAME_DEVICE(tri_id, bary);
}

void check_interpolate_args(const at::Tensor& attr, const at::Tensor& tri_id,
                            const at::Tensor& bary, const at::Tensor& tris) {
  PGN_CHECK_FLOATING(attr);
  PGN_CHECK_DIM(attr, 3);
  PGN_CHECK_DIM(tri_id, 3);
  const int64_t B = tri_id.size(0);
  TORCH_CHECK(attr.size(0) == 1 || attr.size(0) == B, "attr must have batch size 1 or ", B,
              ", got shape ", attr.sizes());
  check_fragments(tri_id, bary, B);
  PGN_CHECK_SAME_DTYPE(bary, attr);
  PGN_CHECK_SAME_DEVICE(bary, attr);
  TORCH_CHECK(tris.scalar_type() == at::kInt, "tris must be int32, got ", tris.scalar_type());
  PGN_CHECK_DIM(tris, 2);
  PGN_CHECK_SIZE(tris, 1, 3);
  PGN_CHECK_SAME_DEVICE(tris, attr);
}

namespace {

// Bands per batch item: enough tasks to keep several cores busy for small
// batches, one band per item for large ones; at least 16 rows a band.
int64_t bands_for(int64_t B, int64_t H) {
  const int64_t want = std::max<int64_t>(1, 8 / std::max<int64_t>(B, 1));
  return std::max<int64_t>(1, std::min<int64_t>(want, H / 16));
}

bool valid_triangle(const int32_t* tri, int64_t N) {
  return tri[0] >= 0 && tri[0] < N && tri[1] >= 0 && tri[1] < N && tri[2] >= 0 && tri[2] < N;
}

template <typename T>
void rasterize_band(const T* pos, const int32_t* tris, int64_t N, int64_t T_count, int H, int W,
                    int cull, int row_begin, int row_end, int32_t* tri_id, T* bary, T* depth,
                    std::vector<raster::ScreenVertex<T>>& verts, std::vector<uint64_t>& zbuf) {
  verts.resize(N);
  for (int64_t n = 0; n < N; ++n) verts[n] = raster::project_vertex(pos + 4 * n, H, W);
  zbuf.assign(static_cast<size_t>(row_end - row_begin) * W, raster::kEmptyKey);

  raster::TriangleSetup setup;
  for (int64_t t = 0; t < T_count; ++t) {
    const int32_t* tri = tris + 3 * t;
    if (!valid_triangle(tri, N)) continue;  // never read out of bounds
    const auto &v0 = verts[tri[0]], &v1 = verts[tri[1]], &v2 = verts[tri[2]];
    if (!raster::setup_triangle(v0, v1, v2, H, W, cull, setup)) continue;
    const int r0 = std::max(setup.row0, row_begin), r1 = std::min(setup.row1, row_end - 1);
    for (int row = r0; row <= r1; ++row) {
      uint64_t* zrow = zbuf.data() + static_cast<size_t>(row - row_begin) * W;
      for (int col = setup.col0; col <= setup.col1; ++col) {
        if (!raster::covers_pixel(setup, col, row)) continue;
        T d;
        if (!raster::pixel_depth(v0, v1, v2, col, row, d)) continue;
        const uint64_t key = raster::depth_key(d, static_cast<int32_t>(t));
        if (key < zrow[col]) zrow[col] = key;
      }
    }
  }

  const T inf = std::numeric_limits<T>::infinity();
  for (int row = row_begin; row < row_end; ++row) {
    for (int col = 0; col < W; ++col) {
      const int64_t pix = static_cast<int64_t>(row) * W + col;
      const uint64_t key = zbuf[static_cast<size_t>(row - row_begin) * W + col];
      T* b = bary + 3 * pix;
      if (key == raster::kEmptyKey) {
        tri_id[pix] = -1;
        b[0] = b[1] = b[2] = T(0);
        depth[pix] = inf;
        continue;
      }
      const int32_t t = static_cast<int32_t>(key & 0xffffffffu);
      const int32_t* tri = tris + 3 * t;
      tri_id[pix] = t;
      raster::resolve_pixel(pos + 4 * tri[0], pos + 4 * tri[1], pos + 4 * tri[2], col, row, H, W,
                            b, depth[pix]);
    }
  }
}

template <typename T>
void rasterize_backward_band(const T* grad_bary, const T* grad_depth, const T* pos,
                             const int32_t* tris, const int32_t* tri_id, int64_t N,
                             int64_t T_count, int H, int W, int row_begin, int row_end,
                             T* grad_pos) {
  for (int row = row_begin; row < row_end; ++row) {
    for (int col = 0; col < W; ++col) {
      const int64_t pix = static_cast<int64_t>(row) * W + col;
      const int32_t t = tri_id[pix];
      if (t < 0 || t >= T_count) continue;
      const int32_t* tri = tris + 3 * t;
      if (!valid_triangle(tri, N)) continue;
      const T gb[3] = {grad_bary[3 * pix], grad_bary[3 * pix + 1], grad_bary[3 * pix + 2]};
      const T gd = grad_depth[pix];
      if (gb[0] == T(0) && gb[1] == T(0) && gb[2] == T(0) && gd == T(0)) continue;
      const T* p[3] = {pos + 4 * tri[0], pos + 4 * tri[1], pos + 4 * tri[2]};
      T g[3][4] = {};
      raster::resolve_pixel_backward(p, col, row, H, W, gb, gd, g);
      for (int k = 0; k < 3; ++k)
        for (int c = 0; c < 4; ++c) grad_pos[4 * tri[k] + c] += g[k][c];
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_cpu(const at::Tensor& pos_in,
                                                             const at::Tensor& tris_in,
                                                             int64_t height, int64_t width,
                                                             int64_t cull) {
  check_rasterize_args(pos_in, tris_in, height, width, cull);
  const at::Tensor pos = pos_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = pos.size(0), N = pos.size(1), T_count = tris.size(0);
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  at::Tensor tri_id = at::empty({B, H, W}, pos.options().dtype(at::kInt));
  at::Tensor bary = at::empty({B, H, W, 3}, pos.options());
  at::Tensor depth = at::empty({B, H, W}, pos.options());
  if (B == 0) return {tri_id, bary, depth};
  const int64_t bands = bands_for(B, H);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cpu", [&] {
    const scalar_t* pos_ptr = pos.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    scalar_t* depth_ptr = depth.data_ptr<scalar_t>();
    at::parallel_for(0, B * bands, 1, [&](int64_t begin, int64_t end) {
      std::vector<raster::ScreenVertex<scalar_t>> verts;
      std::vector<uint64_t> zbuf;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / bands, band = task % bands;
        const int row_begin = static_cast<int>(band * H / bands);
        const int row_end = static_cast<int>((band + 1) * H / bands);
        const int64_t img = b * H * W;
        rasterize_band(pos_ptr + b * N * 4, tris_ptr, N, T_count, H, W, static_cast<int>(cull),
                       row_begin, row_end, tri_ptr + img, bary_ptr + 3 * img, depth_ptr + img,
                       verts, zbuf);
      }
    });
  });
  return {tri_id, bary, depth};
}

at::Tensor rasterize_backward_cpu(const at::Tensor& grad_bary_in, const at::Tensor& grad_depth_in,
                                  const at::Tensor& pos_in, const at::Tensor& tris_in,
                                  const at::Tensor& tri_id_in) {
  check_rasterize_args(pos_in, tris_in, tri_id_in.size(-2), tri_id_in.size(-1),
                       raster::kCullNone);
  const int64_t B = pos_in.size(0), N = pos_in.size(1), T_count = tris_in.size(0);
  check_fragments(tri_id_in, grad_bary_in, B);
  PGN_CHECK_SAME_DTYPE(grad_bary_in, pos_in);
  PGN_CHECK_SAME_DTYPE(grad_depth_in, pos_in);
  TORCH_CHECK(grad_depth_in.sizes() == tri_id_in.sizes(), "grad_depth must have shape ",
              tri_id_in.sizes(), ", got ", grad_depth_in.sizes());
  const at::Tensor pos = pos_in.contiguous(), tris = tris_in.contiguous(),
                   tri_id = tri_id_in.contiguous(), grad_bary = grad_bary_in.contiguous(),
                   grad_depth = grad_depth_in.contiguous();
  const int H = static_cast<int>(tri_id.size(1)), W = static_cast<int>(tri_id.size(2));
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

at::Tensor interpolate_cpu(const at::Tensor& attr_in, const at::Tensor& tri_id_in,
                           const at::Tensor& bary_in, const at::Tensor& tris_in) {
  check_interpolate_args(attr_in, tri_id_in, bary_in, tris_in);
  const at::Tensor attr = attr_in.contiguous(), tri_id = tri_id_in.contiguous(),
                   bary = bary_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = tri_id.size(0), H = tri_id.size(1), W = tri_id.size(2);
  const int64_t Ba = attr.size(0), N = attr.size(1), C = attr.size(2), T_count = tris.size(0);
  at::Tensor out = at::empty({B, H, W, C}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cpu", [&] {
    const scalar_t* attr_ptr = attr.data_ptr<scalar_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    const int64_t pixels = H * W;
    at::parallel_for(0, B * pixels, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        scalar_t* o = out_ptr + p * C;
        const int32_t t = tri_ptr[p];
        const int32_t* tri = tris_ptr + 3 * static_cast<int64_t>(t);
        if (t < 0 || t >= T_count || !valid_triangle(tri, N)) {
          for (int64_t c = 0; c < C; ++c) o[c] = scalar_t(0);
          continue;
        }
        const scalar_t* a = attr_ptr + (Ba == 1 ? 0 : (p / pixels)) * N * C;
        raster::interpolate_pixel(a + tri[0] * C, a + tri[1] * C, a + tri[2] * C,
                                  bary_ptr + 3 * p, C, o);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_out_in,
                                                            const at::Tensor& attr_in,
                                                            const at::Tensor& tri_id_in,
                                                            const at::Tensor& bary_in,
                                                            const at::Tensor& tris_in) {
  check_interpolate_args(attr_in, tri_id_in, bary_in, tris_in);
  const at::Tensor attr = attr_in.contiguous(), tri_id = tri_id_in.contiguous(),
                   bary = bary_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = tri_id.size(0), H = tri_id.size(1), W = tri_id.size(2);
  const int64_t Ba = attr.size(0), N = attr.size(1), C = attr.size(2), T_count = tris.size(0);
  TORCH_CHECK(grad_out_in.dim() == 4 && grad_out_in.size(0) == B && grad_out_in.size(1) == H &&
                  grad_out_in.size(2) == W && grad_out_in.size(3) == C,
              "grad_out must have shape [", B, ", ", H, ", ", W, ", ", C, "], got ",
              grad_out_in.sizes());
  const at::Tensor grad_out = grad_out_in.contiguous();
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
          const int32_t t = tri_ptr[p];
          if (t < 0 || t >= T_count) continue;
          const int32_t* tri = tris_ptr + 3 * static_cast<int64_t>(t);
          if (!valid_triangle(tri, N)) continue;
          const scalar_t* g = go_ptr + p * C;
          for (int k = 0; k < 3; ++k) {
            const scalar_t bk = bary_ptr[3 * p + k];
            const scalar_t* ak = a + tri[k] * C;
            scalar_t* gak = ga + tri[k] * C;
            scalar_t dot = scalar_t(0);
            for (int64_t c = 0; c < C; ++c) {
              dot += g[c] * ak[c];
              gak[c] += bk * g[c];
            }
            gb_ptr[3 * p + k] = dot;
          }
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
