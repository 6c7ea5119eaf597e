// CPU twin of the rasterizer and of attribute interpolation.
//
// Forward scheduling: project the vertices once per image, then depth-test
// every triangle's pixels into a z-buffer of packed (depth, triangle id)
// keys, then resolve each pixel. With at least as many images as threads each
// task takes whole images (one parallel region per call, no per-image
// barrier); otherwise an image's rows are split into bands, one per thread,
// each depth-testing the triangles that reach its rows into its own rows of
// the z-buffer. Keys make the result exact and independent of that split.
// Most triangles of a dense mesh are smaller than a pixel and cover no pixel
// centre: a branch-free first pass over a chunk of triangles keeps only those
// whose fixed-point bounding box holds a pixel centre of the band (the test
// setup_triangle makes, in 32 bits), so the full setup runs on few of them.
// The winner's screen barycentrics and depth are stored next to its key, in
// the output tensors, so resolving a pixel only adds the perspective step.
// Backward scheduling: (batch item, band of rows) tasks, each with its own
// gradient buffer; the bands depend on B and H only, never on the thread
// count, so the gradient sums are reproducible.
// Value checks (status.h) ride on the first read of each input, in the
// parallel tasks: projecting the vertices reads every pos value (a finite
// probe per vertex), the bounding-box pass reads every triangle's indices
// (its `indexed` test). Each task ORs its bits into the status word only when
// it found a bad value, so valid input costs no atomic and no extra pass.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/status.h"
#include "../common/status_host.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "../common/cpu_simd.h"
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

// Accumulator handed to the shared per-pixel code: each task owns the memory
// it writes, so plain stores suffice.
struct Add {
  template <typename T>
  void operator()(T* slot, T value) const {
    *slot += value;
  }
};

// Fixed-point position of a vertex that draws nothing; far below any valid one
// (|fx| <= kGuardBand * kSubpixel = 2^28), so that it marks the triangle
// without overflowing the bounding-box arithmetic.
constexpr int32_t kInvalidFixed = -(int32_t(1) << 30);
static_assert(raster::kGuardBand * raster::kSubpixel <= double(int32_t(1) << 28),
              "fixed-point vertices must fit 29 bits");

// One image's projected vertices: the full ScreenVertex for the triangle
// setup and its fixed-point position packed as (fx, fy) int32 pairs for the
// bounding-box pass.
template <typename T>
struct Projected {
  std::vector<raster::ScreenVertex<T>> verts;
  std::vector<int32_t> fixed;
  // At least one vertex's worth: the bounding-box pass reads vertex 0 for a
  // triangle with an index out of range (which it never keeps), also when N == 0.
  explicit Projected(int64_t N) : verts(N), fixed(2 * std::max<int64_t>(N, 1), kInvalidFixed) {}
};

// Status bits of rasterize (csrc/ext.cpp): 1 pos non-finite, 2 tris out of range.
constexpr int32_t kPosBit = 1, kTrisBit = 2;

// Projects vertices [n_begin, n_end) of one image; flags kPosBit in status
// (when not null) if one of their values is NaN or Inf.
template <typename T>
void project_vertices(const T* pos, int64_t n_begin, int64_t n_end, int H, int W, Projected<T>& pr,
                      int32_t* status) {
  T probe = T(0);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const T* p = pos + 4 * n;
    probe += finite_probe(p[0]) + finite_probe(p[1]) + finite_probe(p[2]) + finite_probe(p[3]);
    const raster::ScreenVertex<T> v = raster::project_vertex(p, H, W);
    pr.verts[n] = v;
    pr.fixed[2 * n] = v.valid ? static_cast<int32_t>(v.fx) : kInvalidFixed;
    pr.fixed[2 * n + 1] = v.valid ? static_cast<int32_t>(v.fy) : kInvalidFixed;
  }
  if (status != nullptr && !sum_is_finite(probe)) flag_status(status, kPosBit);
}

// Writes to cand the ids of triangles [t_begin, t_end) whose indices lie in
// [0, N), whose vertices are valid and whose pixel-centre bounding box (as
// setup_triangle computes it) meets columns [0, W) and rows [row_lo, row_hi];
// returns their count and clears all_indexed if one triangle has an index
// outside [0, N) (the value check of tris). Branch-free: the id is stored
// unconditionally and the count advances by the test, so sub-pixel triangles
// cost no mispredictions.
PGN_CPU_CLONES int candidate_triangles(const int32_t* fixed, const int32_t* tris, int64_t N,
                                       int64_t t_begin, int64_t t_end, int W, int row_lo,
                                       int row_hi, int32_t* cand, bool& all_indexed) {
  constexpr int32_t bits = raster::kSubpixelBits, half = raster::kSubpixel / 2;
  constexpr int32_t up = raster::kSubpixel - 1 - half;  // ceil((m - half) / S) = (m + up) >> bits
  const uint64_t n_vertices = static_cast<uint64_t>(N);
  int count = 0;
  bool ok = true;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int32_t* tri = tris + 3 * t;
    const int64_t a = tri[0], b = tri[1], c = tri[2];
    const bool indexed = (static_cast<uint64_t>(a) < n_vertices) &
                         (static_cast<uint64_t>(b) < n_vertices) &
                         (static_cast<uint64_t>(c) < n_vertices);
    const int32_t* pa = fixed + 2 * (indexed ? a : 0);
    const int32_t* pb = fixed + 2 * (indexed ? b : 0);
    const int32_t* pc = fixed + 2 * (indexed ? c : 0);
    const int32_t minx = std::min(pa[0], std::min(pb[0], pc[0]));
    const int32_t maxx = std::max(pa[0], std::max(pb[0], pc[0]));
    const int32_t miny = std::min(pa[1], std::min(pb[1], pc[1]));
    const int32_t maxy = std::max(pa[1], std::max(pb[1], pc[1]));
    const int32_t c0 = std::max((minx + up) >> bits, 0);
    const int32_t c1 = std::min((maxx - half) >> bits, W - 1);
    const int32_t r0 = std::max((miny + up) >> bits, row_lo);
    const int32_t r1 = std::min((maxy - half) >> bits, row_hi);
    const bool keep =
        indexed & (minx != kInvalidFixed) & (miny != kInvalidFixed) & (c0 <= c1) & (r0 <= r1);
    cand[count] = static_cast<int32_t>(t);
    count += keep;
    ok &= indexed;
  }
  all_indexed &= ok;
  return count;
}

// Depth-tests every triangle reaching rows [row_lo, row_hi] of one image into
// those rows of zbuf [H*W]; the winner of each pixel also leaves its screen
// barycentrics in lam [H*W,3] and its depth in depth [H*W]. Flags kTrisBit
// in status (when not null) if a triangle indexes outside the vertices.
template <typename T>
void cover_triangles(const Projected<T>& pr, const int32_t* tris, int64_t T_count, int H, int W,
                     int row_lo, int row_hi, int cull, uint64_t* zbuf, T* lam, T* depth,
                     int32_t* status) {
  const int64_t N = static_cast<int64_t>(pr.verts.size());
  constexpr int64_t kChunk = 512;
  int32_t cand[kChunk];
  raster::TriangleSetup setup;
  bool all_indexed = true;
  for (int64_t base = 0; base < T_count; base += kChunk) {
    const int count =
        candidate_triangles(pr.fixed.data(), tris, N, base, std::min(base + kChunk, T_count), W,
                            row_lo, row_hi, cand, all_indexed);
    for (int i = 0; i < count; ++i) {
      const int32_t t = cand[i];
      const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
      const auto &v0 = pr.verts[tri[0]], &v1 = pr.verts[tri[1]], &v2 = pr.verts[tri[2]];
      if (!raster::setup_triangle(v0, v1, v2, H, W, cull, setup)) continue;
      const int row0 = std::max(setup.row0, row_lo), row1 = std::min(setup.row1, row_hi);
      for (int row = row0; row <= row1; ++row) {
        for (int col = setup.col0; col <= setup.col1; ++col) {
          if (!raster::covers_pixel(setup, col, row)) continue;
          T d, l[3];
          if (!raster::pixel_depth(v0, v1, v2, col, row, d, l)) continue;
          const int64_t pix = static_cast<int64_t>(row) * W + col;
          const uint64_t key = raster::depth_key(d, t);
          if (key >= zbuf[pix]) continue;
          zbuf[pix] = key;
          lam[3 * pix] = l[0];
          lam[3 * pix + 1] = l[1];
          lam[3 * pix + 2] = l[2];
          depth[pix] = d;
        }
      }
    }
  }
  if (status != nullptr && !all_indexed) flag_status(status, kTrisBit);
}

// Writes the outputs of pixels [p_begin, p_end) of one image from its z-buffer;
// bary holds the winners' screen barycentrics and becomes the perspective ones.
template <typename T>
void resolve_pixels(const T* pos, const int32_t* tris, const uint64_t* zbuf, int64_t p_begin,
                    int64_t p_end, int32_t* tri_id, T* bary, T* depth) {
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
    const T lam[3] = {b[0], b[1], b[2]};
    raster::perspective_barycentrics(lam, w, b);
  }
}

// Rasterizes rows [row_lo, row_hi] of one image whose vertices are projected
// (status: as cover_triangles).
template <typename T>
void rasterize_rows(const Projected<T>& pr, const T* pos, const int32_t* tris, int64_t T_count,
                    int H, int W, int row_lo, int row_hi, int cull, uint64_t* zbuf, int32_t* tri_id,
                    T* bary, T* depth, int32_t* status) {
  const int64_t p_begin = static_cast<int64_t>(row_lo) * W;
  const int64_t p_end = static_cast<int64_t>(row_hi + 1) * W;
  std::fill(zbuf + p_begin, zbuf + p_end, raster::kEmptyKey);
  cover_triangles(pr, tris, T_count, H, W, row_lo, row_hi, cull, zbuf, bary, depth, status);
  resolve_pixels(pos, tris, zbuf, p_begin, p_end, tri_id, bary, depth);
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

// Whether index[0, n) all lie in [0, size): one unsigned 32-bit compare per
// index (a negative one wraps past every valid bound) and no branch, so the
// loop vectorises; interpolate's tasks run it on their shares of tris.
bool indices_in_range(const int32_t* index, int64_t n, int64_t size) {
  const uint32_t limit = static_cast<uint32_t>(std::min<int64_t>(size, int64_t{1} << 31));
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>(index[i]) >= limit;
  return bad == 0;
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
  int32_t* const st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  // The result is exact and independent of how the work is split, so the
  // split may follow the thread count.
  const int64_t threads = at::get_num_threads();
  const int64_t pixels = static_cast<int64_t>(H) * W;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cpu", [&] {
    const scalar_t* pos_ptr = pos.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    scalar_t* depth_ptr = depth.data_ptr<scalar_t>();
    const int c = static_cast<int>(cull);
    if (B >= threads || threads == 1) {
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        Projected<scalar_t> pr(N);
        std::vector<uint64_t> zbuf(pixels);
        for (int64_t b = begin; b < end; ++b) {
          const scalar_t* p = pos_ptr + b * N * 4;
          project_vertices(p, 0, N, H, W, pr, st);
          rasterize_rows(pr, p, tris_ptr, T_count, H, W, 0, H - 1, c, zbuf.data(),
                         tri_ptr + b * pixels, bary_ptr + 3 * b * pixels, depth_ptr + b * pixels,
                         st);
        }
      });
      return;
    }
    // Fewer images than threads: bands of rows, each over every triangle.
    const int64_t bands = std::min<int64_t>(threads, H);
    Projected<scalar_t> pr(N);
    std::vector<uint64_t> zbuf(pixels);
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t* p = pos_ptr + b * N * 4;
      at::parallel_for(0, N, 4096, [&](int64_t begin, int64_t end) {
        project_vertices(p, begin, end, H, W, pr, st);
      });
      at::parallel_for(0, bands, 1, [&](int64_t begin, int64_t end) {
        for (int64_t band = begin; band < end; ++band) {
          const int row_lo = static_cast<int>(band * H / bands);
          const int row_hi = static_cast<int>((band + 1) * H / bands) - 1;
          rasterize_rows(pr, p, tris_ptr, T_count, H, W, row_lo, row_hi, c, zbuf.data(),
                         tri_ptr + b * pixels, bary_ptr + 3 * b * pixels, depth_ptr + b * pixels,
                         st);
        }
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
  if (B == 0 || N == 0) return at::zeros({B, N, 4}, pos.options());
  // One band per image writes grad_pos directly (zeroed); several bands each
  // accumulate into their own buffer that spans only the vertices their
  // pixels reach, and the buffers are added in band order, so the sums do not
  // depend on the thread count.
  at::Tensor grad_pos =
      bands == 1 ? at::zeros({B, N, 4}, pos.options()) : at::empty({B, N, 4}, pos.options());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cpu", [&] {
    const scalar_t* pos_ptr = pos.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* gb_ptr = grad_bary.data_ptr<scalar_t>();
    const scalar_t* gd_ptr = grad_depth.data_ptr<scalar_t>();
    scalar_t* out_ptr = grad_pos.data_ptr<scalar_t>();
    // Rows [row_begin, row_end) of image b, into buf (indexed by vertex id).
    auto band = [&](int64_t b, int row_begin, int row_end, scalar_t* buf) {
      const int64_t img = b * H * W;
      rasterize_backward_band(gb_ptr + 3 * img, gd_ptr + img, pos_ptr + b * N * 4, tris_ptr,
                              tri_ptr + img, N, T_count, H, W, row_begin, row_end, buf);
    };
    if (bands == 1) {
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) band(b, 0, H, out_ptr + b * N * 4);
      });
      return;
    }
    std::vector<int64_t> lo(B * bands), hi(B * bands);  // vertex range [lo, hi) of each task
    // Indexed by global vertex id; only [lo, hi) is initialised and read.
    std::vector<std::unique_ptr<scalar_t[]>> partial(B * bands);
    at::parallel_for(0, B * bands, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / bands, k = task % bands;
        const int row_begin = static_cast<int>(k * H / bands);
        const int row_end = static_cast<int>((k + 1) * H / bands);
        const int64_t img = b * H * W;
        int64_t vlo = N, vhi = 0;
        for (int64_t pix = img + static_cast<int64_t>(row_begin) * W;
             pix < img + static_cast<int64_t>(row_end) * W; ++pix) {
          const int32_t* tri = raster::pixel_triangle(tri_ptr[pix], tris_ptr, T_count, N);
          if (tri == nullptr) continue;
          for (int v = 0; v < 3; ++v) {
            vlo = std::min<int64_t>(vlo, tri[v]);
            vhi = std::max<int64_t>(vhi, tri[v] + 1);
          }
        }
        lo[task] = vlo;
        hi[task] = vhi;
        if (vlo >= vhi) continue;
        partial[task].reset(new scalar_t[4 * vhi]);
        scalar_t* buf = partial[task].get();
        std::fill(buf + 4 * vlo, buf + 4 * vhi, scalar_t(0));
        band(b, row_begin, row_end, buf);
      }
    });
    constexpr int64_t kVertsPerTask = 2048;
    const int64_t chunks = (N + kVertsPerTask - 1) / kVertsPerTask;
    at::parallel_for(0, B * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / chunks, v0 = (task % chunks) * kVertsPerTask;
        const int64_t v1 = std::min(N, v0 + kVertsPerTask);
        scalar_t* out = out_ptr + b * N * 4;
        std::fill(out + 4 * v0, out + 4 * v1, scalar_t(0));
        for (int64_t k = 0; k < bands; ++k) {
          const int64_t part = b * bands + k;
          const int64_t a = std::max(v0, lo[part]), z = std::min(v1, hi[part]);
          const scalar_t* src = partial[part].get();
          for (int64_t q = 4 * a; q < 4 * z; ++q) out[q] += src[q];
        }
      }
    });
  });
  return grad_pos;
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
  int32_t* const st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cpu", [&] {
    const scalar_t* attr_ptr = attr.data_ptr<scalar_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    const int64_t pixels = H * W;
    constexpr int64_t kGrain = 4096;
    const int64_t chunks = (pixels + kGrain - 1) / kGrain;
    const int64_t tasks = B * chunks, indices = 3 * T_count;
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        // The value check of tris (status bit 1), split over the tasks as the
        // CUDA kernel splits it over its threads: a pixel reads only the
        // triangle it shows, so each task also reads its share of tris.
        if (st != nullptr) {
          const int64_t i0 = task * indices / tasks, i1 = (task + 1) * indices / tasks;
          if (!indices_in_range(tris_ptr + i0, i1 - i0, N)) flag_status(st, 1);
        }
        const int64_t b = task / chunks, q0 = (task % chunks) * kGrain;
        const int64_t q1 = std::min(pixels, q0 + kGrain);
        const scalar_t* a = attr_ptr + (Ba == 1 ? 0 : b) * N * C;
        const int64_t p0 = b * pixels + q0, p1 = b * pixels + q1;
        // A constant channel count lets the compiler unroll the common cases.
        auto run = [&](auto channels) {
          for (int64_t p = p0; p < p1; ++p)
            raster::interpolate_at(tri_ptr[p], tris_ptr, T_count, a, N, channels(),
                                   bary_ptr + 3 * p, out_ptr + p * channels());
        };
        if (C == 3) {
          run([] { return int64_t(3); });
        } else if (C == 1) {
          run([] { return int64_t(1); });
        } else {
          run([C] { return C; });
        }
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
  at::Tensor grad_attr =
      Ba == 1 && B != 1 ? grad_attr_items.sum(0, /*keepdim=*/true) : grad_attr_items;
  return {grad_attr, grad_bary};
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("rasterize", &rasterize_cpu);
  m.impl("rasterize_backward", &rasterize_backward_cpu);
  m.impl("interpolate", &interpolate_cpu);
  m.impl("interpolate_backward", &interpolate_backward_cpu);
}

}  // namespace pgnface
