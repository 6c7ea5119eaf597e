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
// Backward scheduling: each pixel's terms are computed by (image, rows)
// tasks and added to its vertices in pixel order, so the gradient sums are
// those of one sequential pass whatever the thread count and the batch.
// Value checks (status.h) ride on the first read of each input, in the
// parallel tasks: projecting the vertices reads every pos value (a finite
// probe per vertex), the bounding-box pass reads every triangle's indices
// (its `indexed` test). Each task ORs its bits into the status word only when
// it found a bad value, so valid input costs no atomic and no extra pass.
// The SIMD path runs the shared float math of rasterize_kernel.h in vector
// lanes, where nothing else stops the compiler from fusing a product into the
// add that follows it (FMA, in the AVX2 clone): contraction is off for the
// whole file, so every lane rounds as the scalar code and the CUDA kernels do.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "../common/status.h"
#include "../common/status_host.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "../common/cpu_lanes.h"
#include "../common/cpu_parallel.h"
#include "../common/cpu_simd.h"
#include "../common/cpu_stream.h"
#include "../common/output_memory.h"
#include "rasterize.h"
#include "rasterize_kernel.h"

namespace pgnface {

namespace {

// Accumulator handed to the shared per-pixel code: each task owns the memory
// it writes, so plain stores suffice.
struct Add {
  template <typename T>
  void operator()(T* slot, T value) const {
    *slot += value;
  }
};

// Calls run(channels) with channels() returning C, as a compile-time constant
// for the common channel counts so that the per-pixel loops unroll.
template <typename Run>
void with_constant_channels(int64_t C, Run&& run) {
  if (C == 3) {
    run([] { return int64_t(3); });
  } else if (C == 1) {
    run([] { return int64_t(1); });
  } else {
    run([C] { return C; });
  }
}

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

// --- SIMD path (the default; set_cpu_simd(False) selects the scalar one) -----
//
// Per image: project the vertices in lanes into a fixed-point (fx, fy) table
// and an (X, Y, z/w, w) table; fill the band's outputs with the empty-pixel
// values; then take the triangles a chunk at a time: scalar loads copy the
// chunk's fixed-point vertices into structure-of-arrays form (a vector built
// lane by lane from scalar loads waits for them), and the lanes set 8
// triangles up at once. A triangle whose box holds exactly one pixel centre
// (most triangles of a dense mesh) is tested there in the lanes; one whose box
// holds up to 4 x 4 centres goes to a list that the lanes cover 8 triangles
// at a time, a pixel of their boxes per step; larger ones go to a scalar loop
// pixel by pixel (in int32 while the box is under 2^15 sub-pixels, i.e. 128
// pixels, wide and high, where edge_fixed is exact in 32 bits; the 64-bit
// setup_triangle otherwise). The lanes' results are compacted by a lane
// permutation (GCC; lane by lane elsewhere). Each covered (triangle, pixel)
// pair becomes a fragment; fragments are shaded in float lanes (screen
// barycentrics, depth and perspective barycentrics: the shared math of
// rasterize_kernel.h instantiated for LaneVec, the vertex records loaded by
// shuffles) and depth-tested one by one against the key of what the pixel
// holds. The winner writes its outputs at once, so there is no z-buffer and
// no resolve pass. The result is the minimum key per pixel, whatever order
// the fragments come in.

// Projected vertices of one image in structure-of-arrays form.
// Left uninitialised (the projection writes every vertex) but for the one
// vertex an empty table holds, as in Projected.
template <typename T>
struct ProjectedSoA {
  // Fixed point as (fx, fy) int32 pairs, one 8-byte load per vertex;
  // kInvalidFixed where the vertex draws nothing.
  std::unique_ptr<int32_t[]> fxy;
  std::unique_ptr<T[]> xyzw;  // X, Y, z/w, w per vertex (the fragment shading reads one record)
  explicit ProjectedSoA(int64_t N)
      : fxy(new int32_t[2 * std::max<int64_t>(N, 1)]), xyzw(new T[4 * std::max<int64_t>(N, 1)]) {
    fxy[0] = fxy[1] = kInvalidFixed;
    for (int k = 0; k < 4; ++k) xyzw[k] = T(0);
  }
};

// Rounds each lane to the nearest integer, ties to even (as std::rint):
// adding and subtracting 2^23 (2^52 for doubles) leaves the integer nearest x
// where |x| is below it; larger values are integers already.
template <typename T>
PGN_ALWAYS_INLINE LaneVec<T> rint_lanes(LaneVec<T> x) {
  const LaneVec<T> big(sizeof(T) == sizeof(float) ? T(0x1p23) : T(0x1p52)), zero(T(0));
  const LaneVec<T> up = (x + big) - big, down = (x - big) + big;
  return lane_select(pgn_abs(x) < big, lane_select(zero <= x, up, down), x);
}

// Lane masks as int32 lanes (a double's 64-bit mask narrowed to 32 bits).
PGN_ALWAYS_INLINE i32x8 int32_lanes(i32x8 m) { return m; }
typedef int i32x4 __attribute__((vector_size(16)));
PGN_ALWAYS_INLINE i32x4 int32_lanes(i64x4 m) { return __builtin_convertvector(m, i32x4); }

// project_vertex of vertices [n_begin, n_end), branch-free and in lanes: the
// guard-band and w tests become selects, llrint becomes rint_lanes (both
// round to nearest even; |X * kSubpixel| <= 2^28 fits int32). The vertices'
// records go in and out of the lanes by shuffles (load_records4). Flags
// kPosBit as project_vertices does.
template <typename T>
PGN_CPU_CLONES PGN_FLATTEN void project_vertices_soa(const T* pos, int64_t n_begin, int64_t n_end,
                                                     int H, int W, int32_t* fxy, T* xyzw,
                                                     int32_t* status) {
  using L = LaneVec<T>;
  using M = LaneMask<T>;
  constexpr int kL = L::width;
  const L hw(static_cast<T>(W) * T(0.5)), hh(static_cast<T>(H) * T(0.5));
  const L g(static_cast<T>(raster::kGuardBand)), neg_g(-static_cast<T>(raster::kGuardBand));
  const L lo_w(raster::min_w<T>()), big(std::numeric_limits<T>::max());
  const L S(static_cast<T>(raster::kSubpixel)), one(T(1)), zero(T(0));
  M bad{};
  int64_t n = n_begin;
  for (; n + kL <= n_end; n += kL) {
    L v[4];
    load_records4(pos + 4 * n, v);
    const L &x = v[0], &y = v[1], &z = v[2], &w = v[3];
    // |v| <= max is false for NaN and +-Inf.
    const M finite =
        (pgn_abs(x) <= big) && (pgn_abs(y) <= big) && (pgn_abs(z) <= big) && (pgn_abs(w) <= big);
    bad = bad || !finite;
    const L X = (x / w + one) * hw, Y = (y / w + one) * hh;
    const M valid = finite && (lo_w <= w) && (neg_g <= X) && (X <= g) && (neg_g <= Y) && (Y <= g);
    L out[4] = {lane_select(valid, X, zero), lane_select(valid, Y, zero),
                lane_select(valid, z / w, zero), w};
    store_records4(out, xyzw + 4 * n);
    const auto live = int32_lanes(valid.m);
    using I = decltype(live);
    const I ix = __builtin_convertvector(rint_lanes(out[0] * S).v, I);
    const I iy = __builtin_convertvector(rint_lanes(out[1] * S).v, I);
    const I invalid = I{} + kInvalidFixed;
    const I rx = live ? ix : invalid, ry = live ? iy : invalid;
    interleave_pairs(rx, ry, fxy + 2 * n);
  }
  bool any_bad = lane_any(bad);
  const T hws = static_cast<T>(W) * T(0.5), hhs = static_cast<T>(H) * T(0.5);
  const T gs = static_cast<T>(raster::kGuardBand), lo_ws = raster::min_w<T>();
  const T bigs = std::numeric_limits<T>::max(), Ss = static_cast<T>(raster::kSubpixel);
  for (; n < n_end; ++n) {
    const T x = pos[4 * n], y = pos[4 * n + 1], z = pos[4 * n + 2], w = pos[4 * n + 3];
    const bool finite = (std::abs(x) <= bigs) & (std::abs(y) <= bigs) & (std::abs(z) <= bigs) &
                        (std::abs(w) <= bigs);
    any_bad |= !finite;
    const T X = (x / w + T(1)) * hws, Y = (y / w + T(1)) * hhs;
    const bool valid = finite & (w >= lo_ws) & (X >= -gs) & (X <= gs) & (Y >= -gs) & (Y <= gs);
    const T Xv = valid ? X : T(0), Yv = valid ? Y : T(0);
    xyzw[4 * n] = Xv;
    xyzw[4 * n + 1] = Yv;
    xyzw[4 * n + 2] = valid ? z / w : T(0);
    xyzw[4 * n + 3] = w;
    fxy[2 * n] = valid ? static_cast<int32_t>(std::rint(Xv * Ss)) : kInvalidFixed;
    fxy[2 * n + 1] = valid ? static_cast<int32_t>(std::rint(Yv * Ss)) : kInvalidFixed;
  }
  if (status != nullptr && any_bad) flag_status(status, kPosBit);
}

// A covered (triangle, pixel) pair awaiting its depth test.
struct Fragment {
  int32_t tri;
  uint16_t col, row;
};
// The lanes read and write fragments as two int32: tri, col | row << 16.
static_assert(sizeof(Fragment) == 8, "a fragment is (tri, col | row << 16) as two int32");

// The pixel centres of fragments f[0, width) in lanes.
template <typename T>
PGN_ALWAYS_INLINE void fragment_centres(const Fragment* f, LaneVec<T>& qx, LaneVec<T>& qy) {
  constexpr int kL = LaneVec<T>::width;
  using Fv = typename Simd<T>::type;
  auto centres = [&](auto cr) {
    qx.v = __builtin_convertvector(cr & 0xffff, Fv) + T(0.5);
    qy.v = __builtin_convertvector((cr >> 16) & 0xffff, Fv) + T(0.5);
  };
  if constexpr (kL == 8) {
    i32x8 tri, cr;  // the fragments' two int32: tri, col | row << 16
    deinterleave_pairs(f, tri, cr);
    centres(cr);
  } else {
    i32x8 v;
    std::memcpy(&v, f, sizeof(v));
    centres(i32x4(__builtin_shufflevector(v, v, 1, 3, 5, 7)));
  }
}

// Shades fragments [0, count) of one image (their screen barycentrics, depth
// and perspective barycentrics in lanes, as pixel_depth and
// perspective_barycentrics compute them one at a time) and depth-tests them in
// order against what their pixels hold: a fragment wins when its key
// (depth_key) is below the key of the pixel's current (depth, tri_id), which
// for an empty pixel (+inf, -1) is above every finite depth's. frags has room
// for a block of lanes past count, which this fills with the last fragment
// (shaded, never tested).
template <typename T>
PGN_CPU_CLONES PGN_FLATTEN void shade_fragments(Fragment* frags, int count, const T* xyzw,
                                                const int32_t* tris, int W, int32_t* tri_id,
                                                T* bary, T* depth) {
  using L = LaneVec<T>;
  constexpr int kL = L::width;
  for (int l = count; l < count + kL; ++l) frags[l] = frags[count - 1];
  for (int i = 0; i < count; i += kL) {
    L X[3], Y[3], zeta[3], w[3], qx, qy, e[3], lam[3], b[3];
    for (int k = 0; k < 3; ++k) {
      const T* rec[kL];
      for (int l = 0; l < kL; ++l)
        rec[l] =
            xyzw + 4 * static_cast<int64_t>(tris[3 * static_cast<int64_t>(frags[i + l].tri) + k]);
      L v[4];
      gather_records4(rec, v);
      X[k] = v[0];
      Y[k] = v[1];
      zeta[k] = v[2];
      w[k] = v[3];
    }
    fragment_centres(frags + i, qx, qy);
    const L area = raster::screen_edges(X, Y, qx, qy, e);
    for (int k = 0; k < 3; ++k) lam[k] = raster::div_rn(e[k], area);
    const L d = raster::interpolate_depth(lam, zeta);
    raster::perspective_barycentrics(lam, w, b);
    const int lanes = std::min(kL, count - i);
    for (int l = 0; l < lanes; ++l) {
      const T dl = d[l];
      // pixel_depth's tests: a zero float area, a non-finite depth.
      if (area[l] == T(0) || !(std::abs(dl) <= std::numeric_limits<T>::max())) continue;
      const Fragment& f = frags[i + l];
      const int64_t pix = static_cast<int64_t>(f.row) * W + f.col;
      const uint64_t key = raster::depth_key(dl, f.tri);
      if (key >= raster::depth_key(depth[pix], tri_id[pix])) continue;
      tri_id[pix] = f.tri;
      depth[pix] = dl;
      bary[3 * pix] = b[0][l];
      bary[3 * pix + 1] = b[1][l];
      bary[3 * pix + 2] = b[2][l];
    }
  }
}

// Shades and depth-tests fragments into the outputs of one image.
template <typename T>
struct FragmentSink {
  static constexpr int kCapacity = 2048;
  static constexpr int kLanes = Simd<T>::width;
  Fragment frags[kCapacity + 16];  // room for a block of unconditional stores past the count
  int count = 0;
  const T* xyzw;
  const int32_t* tris;
  int W;
  int32_t* tri_id;
  T* bary;
  T* depth;

  // Appends (tri, col, row) when keep; flushes a full buffer.
  PGN_ALWAYS_INLINE void push(int32_t t, int col, int row, bool keep) {
    frags[count] = {t, static_cast<uint16_t>(col), static_cast<uint16_t>(row)};
    count += keep;
    if (count >= kCapacity) flush();
  }

  void flush() {
    if (count > 0) shade_fragments(frags, count, xyzw, tris, W, tri_id, bary, depth);
    count = 0;
  }
};

// The vertices of a chunk of triangles in structure-of-arrays form, each an
// (fx, fy) pair, so that the lanes load them whole (built lane by lane, a
// vector waits for the scalar stores it reads).
struct ChunkVertices {
  static constexpr int kChunk = 512;
  static constexpr int kCapacity = kChunk + 8;  // room for a block of lanes past the count
  int64_t a[kCapacity], b[kCapacity], c[kCapacity];
};

// Copies the fixed-point vertices of triangles [t_begin, t_end) (at most
// kChunk) to out; a triangle with an index outside [0, N) gets vertex a at
// (kInvalidFixed, kInvalidFixed), which culls it, and clears all_indexed.
// Loads and stores only, no branch and no dependency between triangles.
PGN_CPU_CLONES void gather_chunk_vertices(const int32_t* fxy, const int32_t* tris, int64_t N,
                                          int64_t t_begin, int64_t t_end, ChunkVertices& out,
                                          bool& all_indexed) {
  const uint32_t limit = static_cast<uint32_t>(std::min<int64_t>(N, int64_t{1} << 31));
  constexpr uint64_t kInvalidPair =
      static_cast<uint32_t>(kInvalidFixed) | (uint64_t{static_cast<uint32_t>(kInvalidFixed)} << 32);
  uint32_t ok = 1;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int32_t* tri = tris + 3 * t;
    const uint32_t a = static_cast<uint32_t>(tri[0]), b = static_cast<uint32_t>(tri[1]),
                   c = static_cast<uint32_t>(tri[2]);
    const uint32_t indexed = (a < limit) & (b < limit) & (c < limit);
    ok &= indexed;
    uint64_t pa, pb, pc;
    std::memcpy(&pa, fxy + 2 * static_cast<int64_t>(indexed ? a : 0), 8);
    std::memcpy(&pb, fxy + 2 * static_cast<int64_t>(indexed ? b : 0), 8);
    std::memcpy(&pc, fxy + 2 * static_cast<int64_t>(indexed ? c : 0), 8);
    const int64_t i = t - t_begin;
    out.a[i] = static_cast<int64_t>(indexed ? pa : kInvalidPair);
    out.b[i] = static_cast<int64_t>(pb);
    out.c[i] = static_cast<int64_t>(pc);
  }
  all_indexed &= ok != 0;
}

// The pixel-centre boxes of a lane group of triangles (setup_triangle's):
// columns [c0, c1] within [0, W), rows [r0, r1] within [row_lo, row_hi];
// `small` where the vertices span under 2^15 sub-pixels (128 pixels) both
// ways, so that edge_fixed is exact in 32 bits relative to vertex 0. An
// invalid vertex sits at kInvalidFixed in x and y, below every valid one, so
// it shows as minx or miny == kInvalidFixed.
struct LaneBoxes {
  i32x8 minx, miny, c0, c1, r0, r1, small;
};

PGN_ALWAYS_INLINE LaneBoxes lane_boxes(i32x8 ax, i32x8 ay, i32x8 bx, i32x8 by, i32x8 cx, i32x8 cy,
                                       int W, int row_lo, int row_hi) {
  constexpr int32_t bits = raster::kSubpixelBits, half = raster::kSubpixel / 2;
  constexpr int32_t up = raster::kSubpixel - 1 - half;  // ceil((m - half) / S) = (m + up) >> bits
  constexpr int32_t kSmall = int32_t(1) << 15;
  LaneBoxes x;
  x.minx = ax < bx ? (ax < cx ? ax : cx) : (bx < cx ? bx : cx);
  x.miny = ay < by ? (ay < cy ? ay : cy) : (by < cy ? by : cy);
  const i32x8 maxx = ax > bx ? (ax > cx ? ax : cx) : (bx > cx ? bx : cx);
  const i32x8 maxy = ay > by ? (ay > cy ? ay : cy) : (by > cy ? by : cy);
  const i32x8 c0 = (x.minx + up) >> bits, c1 = (maxx - half) >> bits;
  const i32x8 r0 = (x.miny + up) >> bits, r1 = (maxy - half) >> bits;
  x.c0 = c0 > 0 ? c0 : 0;
  x.c1 = c1 < W - 1 ? c1 : W - 1;
  x.r0 = r0 > row_lo ? r0 : row_lo;
  x.r1 = r1 < row_hi ? r1 : row_hi;
  x.small = ((maxx - x.minx) < kSmall) & ((maxy - x.miny) < kSmall);
  return x;
}

// The 32-bit coverage test of a lane group of triangles (setup_triangle's
// culling and covers_pixel's fill rule), relative to vertex 0 (edge functions
// are translation invariant); lanes outside `use` get a degenerate triangle
// at the origin, whose results are not used.
struct LaneEdges {
  i32x8 ax, ay;         // vertex 0
  i32x8 px[3], py[3];   // the vertices relative to vertex 0
  i32x8 front, facing;  // negative area; drawn under the cull mode
  i32x8 not_owned[3];   // -1 on the edges the triangle does not own, else 0

  // Whether the pixel centres (col, row) are covered: each edge value e,
  // oriented by the sign of the area, has e > 0, or e == 0 on an owned edge,
  // i.e. e + (owned ? 0 : -1) >= 0. Culling is left to `facing`.
  PGN_ALWAYS_INLINE i32x8 covers(i32x8 col, i32x8 row) const {
    constexpr int32_t bits = raster::kSubpixelBits, half = raster::kSubpixel / 2;
    const i32x8 qx = (col << bits) + half - ax, qy = (row << bits) + half - ay;
    i32x8 inside = ~i32x8{};
    for (int k = 0; k < 3; ++k) {
      const int a = (k + 1) % 3, b = (k + 2) % 3;
      const i32x8 e = raster::edge_fixed(px[a], py[a], px[b], py[b], qx, qy);
      inside &= (((e ^ front) - front) + not_owned[k]) >= 0;
    }
    return inside;
  }
};

PGN_ALWAYS_INLINE LaneEdges lane_edges(i32x8 use, i32x8 ax, i32x8 ay, i32x8 bx, i32x8 by, i32x8 cx,
                                       i32x8 cy, int cull) {
  const i32x8 zero = {};
  LaneEdges x;
  x.ax = ax;
  x.ay = ay;
  x.px[0] = x.py[0] = zero;
  x.px[1] = use ? bx - ax : zero;
  x.py[1] = use ? by - ay : zero;
  x.px[2] = use ? cx - ax : zero;
  x.py[2] = use ? cy - ay : zero;
  const i32x8 area = raster::edge_fixed(zero, zero, x.px[1], x.py[1], x.px[2], x.py[2]);
  const i32x8 back = area > 0;
  x.front = area < 0;  // front-facing: negative area
  x.facing = cull == raster::kCullBack    ? x.front
             : cull == raster::kCullFront ? back
                                          : (x.front | back);
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    const i32x8 dx = x.px[b] - x.px[a], dy = x.py[b] - x.py[a];
    const i32x8 dxs = (dx ^ x.front) - x.front, dys = (dy ^ x.front) - x.front;
    x.not_owned[k] = ~((dys > 0) | ((dys == 0) & (dxs > 0)));
  }
  return x;
}

// Sets triangles [t_begin, t_begin + count) up 8 at a time in int32 lanes
// for rows [row_lo, row_hi] of an image, their vertices in v: writes a
// fragment to single[] for each one whose box holds exactly one pixel centre
// and covers it, and the id of each one whose box holds more (or is too large
// for 32 bits) to multi[]; returns the two counts. The box, culling and fill
// rule are setup_triangle's and covers_pixel's, computed relative to vertex 0
// (edge functions are translation invariant), where |coordinates| < 2^15
// keeps every product exact in 32 bits.
PGN_CPU_CLONES std::pair<int, int> classify_triangles(const ChunkVertices& v, int64_t t_begin,
                                                      int count, int W, int row_lo, int row_hi,
                                                      int cull, Fragment* single, int32_t* multi) {
  constexpr int kL = 8;
  const i32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
  int ns = 0, nm = 0;
  for (int i = 0; i < count; i += kL) {
    i32x8 ax, ay, bx, by, cx, cy;
    deinterleave_pairs(v.a + i, ax, ay);
    deinterleave_pairs(v.b + i, bx, by);
    deinterleave_pairs(v.c + i, cx, cy);
    const LaneBoxes box = lane_boxes(ax, ay, bx, by, cx, cy, W, row_lo, row_hi);
    const i32x8 &c0 = box.c0, &r0 = box.r0, &small = box.small;
    const i32x8 valid = (lane < count - i) & (box.minx != kInvalidFixed) &
                        (box.miny != kInvalidFixed) & (c0 <= box.c1) & (r0 <= box.r1);
    const i32x8 one_pixel = (c0 == box.c1) & (r0 == box.r1);
    const LaneEdges edges = lane_edges(small, ax, ay, bx, by, cx, cy, cull);
    const i32x8& facing = edges.facing;
    const i32x8 inside = edges.covers(c0, r0);
    const i32x8 draw_single = valid & small & one_pixel & facing & inside;
    const i32x8 go_multi = valid & ~(small & one_pixel) & (~small | facing);
#ifdef PGN_HAVE_LANE_COMPRESS
    // Compacted in the lanes and stored whole (8 fragments, 8 ids), the
    // counts advancing by the lanes kept.
    const i32x8 id = static_cast<int32_t>(t_begin + i) + lane;
    const unsigned bs = lane_bits(draw_single), bm = lane_bits(go_multi);
    const i32x8 ks = compress_lanes(id, bs), kcr = compress_lanes(c0 | (r0 << 16), bs);
    interleave_pairs(ks, kcr, reinterpret_cast<int32_t*>(single + ns));
    const i32x8 km = compress_lanes(id, bm);
    std::memcpy(multi + nm, &km, sizeof(km));
    ns += __builtin_popcount(bs);
    nm += __builtin_popcount(bm);
#else
    for (int l = 0; l < kL; ++l) {
      const int32_t t = static_cast<int32_t>(t_begin + i + l);
      single[ns] = {t, static_cast<uint16_t>(c0[l]), static_cast<uint16_t>(r0[l])};
      ns += draw_single[l] & 1;
      multi[nm] = t;
      nm += go_multi[l] & 1;
    }
#endif
  }
  return {ns, nm};
}

#ifdef PGN_HAVE_LANE_COMPRESS
// The largest of the lanes of v.
PGN_ALWAYS_INLINE int32_t lane_max(i32x8 v) {
  v = v > __builtin_shuffle(v, i32x8{4, 5, 6, 7, 0, 1, 2, 3})
          ? v
          : __builtin_shuffle(v, i32x8{4, 5, 6, 7, 0, 1, 2, 3});
  v = v > __builtin_shuffle(v, i32x8{2, 3, 0, 1, 6, 7, 4, 5})
          ? v
          : __builtin_shuffle(v, i32x8{2, 3, 0, 1, 6, 7, 4, 5});
  v = v > __builtin_shuffle(v, i32x8{1, 0, 3, 2, 5, 4, 7, 6})
          ? v
          : __builtin_shuffle(v, i32x8{1, 0, 3, 2, 5, 4, 7, 6});
  return v[0];
}

// Triangles whose box, up to kSmallBox x kSmallBox pixels, holds more than one
// pixel centre are covered 8 at a time in int32 lanes, one pixel of their
// boxes per step.
constexpr int kSmallBox = 4;
constexpr int kSmallBoxBatch = 32;

// Covers rows [row_lo, row_hi] of an image with the triangles ids[0, n)
// (n <= kSmallBoxBatch; classify_triangles' multi list) whose boxes are
// small: writes their covered (triangle, pixel) pairs to out (room for
// kSmallBox^2 n + 8 fragments) and the other ids to large[] (room for n + 8);
// returns the two counts. The coverage test is classify_triangles', pixel by
// pixel of the box.
PGN_CPU_CLONES std::pair<int, int> cover_small_boxes(const int32_t* ids, int n, const int32_t* fxy,
                                                     const int32_t* tris, int W, int row_lo,
                                                     int row_hi, int cull, Fragment* out,
                                                     int32_t* large) {
  constexpr int kL = 8, kCap = kSmallBoxBatch + kL;
  // The triangles' vertices as (fx, fy) pairs, copied by scalar loads and
  // stores so that the lanes load them whole.
  int64_t va[kCap] = {}, vb[kCap] = {}, vc[kCap] = {};
  int32_t id[kCap] = {};
  for (int j = 0; j < n; ++j) {
    const int32_t* tri = tris + 3 * static_cast<int64_t>(ids[j]);
    std::memcpy(va + j, fxy + 2 * static_cast<int64_t>(tri[0]), 8);
    std::memcpy(vb + j, fxy + 2 * static_cast<int64_t>(tri[1]), 8);
    std::memcpy(vc + j, fxy + 2 * static_cast<int64_t>(tri[2]), 8);
    id[j] = ids[j];
  }
  const i32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7}, zero = {};
  int nf = 0, nl = 0;
  for (int i = 0; i < n; i += kL) {
    i32x8 ax, ay, bx, by, cx, cy, t;
    deinterleave_pairs(va + i, ax, ay);
    deinterleave_pairs(vb + i, bx, by);
    deinterleave_pairs(vc + i, cx, cy);
    std::memcpy(&t, id + i, sizeof(t));
    const i32x8 live = lane < n - i;
    const LaneBoxes box = lane_boxes(ax, ay, bx, by, cx, cy, W, row_lo, row_hi);
    const i32x8 &c0 = box.c0, &c1 = box.c1, &r0 = box.r0, &r1 = box.r1;
    const i32x8 fits = live & box.small & ((c1 - c0) < kSmallBox) & ((r1 - r0) < kSmallBox);
    const unsigned to_large = lane_bits(live & ~fits);
    const i32x8 kl = compress_lanes(t, to_large);
    std::memcpy(large + nl, &kl, sizeof(kl));
    nl += __builtin_popcount(to_large);
    if (lane_bits(fits) == 0) continue;
    // classify_triangles' setup (its multi list holds only facing small
    // triangles).
    const LaneEdges edges = lane_edges(fits, ax, ay, bx, by, cx, cy, cull);
    const i32x8 draw = fits & edges.facing;
    const int rows = lane_max(draw ? r1 - r0 : zero), cols = lane_max(draw ? c1 - c0 : zero);
    for (int dy = 0; dy <= rows; ++dy) {
      const i32x8 row = r0 + dy;
      for (int dx = 0; dx <= cols; ++dx) {
        const i32x8 col = c0 + dx;
        const i32x8 inside = draw & (col <= c1) & (row <= r1) & edges.covers(col, row);
        const unsigned keep = lane_bits(inside);
        interleave_pairs(compress_lanes(t, keep), compress_lanes(col | (row << 16), keep),
                         reinterpret_cast<int32_t*>(out + nf));
        nf += __builtin_popcount(keep);
      }
    }
  }
  return {nf, nl};
}
#endif

// Covers rows [row_lo, row_hi] of an image with triangle t, whose box holds
// more than one pixel centre, pixel by pixel into sink.
template <typename T>
void cover_large_triangle(int32_t t, const int32_t* fxy, const int32_t* tris, int H, int W,
                          int row_lo, int row_hi, int cull, FragmentSink<T>& sink) {
  constexpr int32_t bits = raster::kSubpixelBits, half = raster::kSubpixel / 2;
  constexpr int32_t up = raster::kSubpixel - 1 - half;
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  const int32_t *pa = fxy + 2 * static_cast<int64_t>(tri[0]),
                *pb = fxy + 2 * static_cast<int64_t>(tri[1]),
                *pc = fxy + 2 * static_cast<int64_t>(tri[2]);
  const int32_t ax = pa[0], ay = pa[1], bx = pb[0], by = pb[1], cx = pc[0], cy = pc[1];
  const int32_t minx = std::min(ax, std::min(bx, cx)), maxx = std::max(ax, std::max(bx, cx));
  const int32_t miny = std::min(ay, std::min(by, cy)), maxy = std::max(ay, std::max(by, cy));
  if (maxx - minx >= (1 << 15) || maxy - miny >= (1 << 15)) {
    // 64-bit edge functions, as the CUDA kernels run them.
    raster::ScreenVertex<T> v[3];
    for (int k = 0; k < 3; ++k) {
      v[k].X = v[k].Y = v[k].zeta = T(0);  // unused by the setup
      v[k].fx = fxy[2 * static_cast<int64_t>(tri[k])];
      v[k].fy = fxy[2 * static_cast<int64_t>(tri[k]) + 1];
      v[k].valid = true;
    }
    raster::TriangleSetup s;
    if (!raster::setup_triangle(v[0], v[1], v[2], H, W, cull, s)) return;
    for (int row = std::max(s.row0, row_lo); row <= std::min(s.row1, row_hi); ++row)
      for (int col = s.col0; col <= s.col1; ++col)
        sink.push(t, col, row, raster::covers_pixel(s, col, row));
    return;
  }
  // 32 bits, relative to vertex 0, as classify_triangles.
  const int32_t px[3] = {0, bx - ax, cx - ax}, py[3] = {0, by - ay, cy - ay};
  const int32_t area = raster::edge_fixed(px[0], py[0], px[1], py[1], px[2], py[2]);
  if (area == 0 || (cull == raster::kCullBack && area > 0) ||
      (cull == raster::kCullFront && area < 0))
    return;
  const int32_t sign = area > 0 ? 1 : -1;
  int32_t bias[3];
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    bias[k] = raster::owns_edge(sign * (px[b] - px[a]), sign * (py[b] - py[a])) ? 0 : -1;
  }
  const int c0 = std::max((minx + up) >> bits, 0), c1 = std::min((maxx - half) >> bits, W - 1);
  const int r0 = std::max((miny + up) >> bits, row_lo);
  const int r1 = std::min((maxy - half) >> bits, row_hi);
  for (int row = r0; row <= r1; ++row) {
    const int32_t qy = (row << bits) + half - ay;
    for (int col = c0; col <= c1; ++col) {
      const int32_t qx = (col << bits) + half - ax;
      int32_t inside = 0;
      for (int k = 0; k < 3; ++k) {
        const int a = (k + 1) % 3, b = (k + 2) % 3;
        inside |= sign * raster::edge_fixed(px[a], py[a], px[b], py[b], qx, qy) + bias[k];
      }
      sink.push(t, col, row, inside >= 0);
    }
  }
}

// Rasterizes rows [row_lo, row_hi] of one image whose vertices are projected
// (status: as cover_triangles).
template <typename T>
void rasterize_rows_simd(const ProjectedSoA<T>& pr, const int32_t* tris, int64_t N, int64_t T_count,
                         int H, int W, int row_lo, int row_hi, int cull, int32_t* tri_id, T* bary,
                         T* depth, int32_t* status) {
  const int64_t p_begin = static_cast<int64_t>(row_lo) * W;
  const int64_t p_end = static_cast<int64_t>(row_hi + 1) * W;
  std::fill(tri_id + p_begin, tri_id + p_end, -1);
  std::fill(bary + 3 * p_begin, bary + 3 * p_end, T(0));
  std::fill(depth + p_begin, depth + p_end, std::numeric_limits<T>::infinity());
  constexpr int64_t kChunk = ChunkVertices::kChunk;
  // Not value-initialised: the fragment buffer is written before it is read.
  std::unique_ptr<FragmentSink<T>> sink(new FragmentSink<T>);
  sink->xyzw = pr.xyzw.get();
  sink->tris = tris;
  sink->W = W;
  sink->tri_id = tri_id;
  sink->bary = bary;
  sink->depth = depth;
  int32_t multi[kChunk + 8];
  // Zeroed once: the lanes past a chunk's count read its entries unused.
  std::unique_ptr<ChunkVertices> chunk(new ChunkVertices());
  bool all_indexed = true;
  for (int64_t base = 0; base < T_count; base += kChunk) {
    if (sink->count > FragmentSink<T>::kCapacity - kChunk - 8) sink->flush();
    const int64_t end = std::min(base + kChunk, T_count);
    gather_chunk_vertices(pr.fxy.get(), tris, N, base, end, *chunk, all_indexed);
    const auto [ns, nm] = classify_triangles(*chunk, base, static_cast<int>(end - base), W, row_lo,
                                             row_hi, cull, sink->frags + sink->count, multi);
    sink->count += ns;
#ifdef PGN_HAVE_LANE_COMPRESS
    int32_t large[kChunk + 8];
    int nl = 0;
    for (int j = 0; j < nm; j += kSmallBoxBatch) {
      constexpr int kRoom = kSmallBox * kSmallBox * kSmallBoxBatch + 8;
      if (sink->count > FragmentSink<T>::kCapacity - kRoom) sink->flush();
      const auto [nf, nlj] =
          cover_small_boxes(multi + j, std::min(kSmallBoxBatch, nm - j), pr.fxy.get(), tris, W,
                            row_lo, row_hi, cull, sink->frags + sink->count, large + nl);
      sink->count += nf;
      nl += nlj;
    }
#else
    const int32_t* large = multi;
    const int nl = nm;
#endif
    for (int i = 0; i < nl; ++i)
      cover_large_triangle(large[i], pr.fxy.get(), tris, H, W, row_lo, row_hi, cull, *sink);
  }
  sink->flush();
  if (status != nullptr && !all_indexed) flag_status(status, kTrisBit);
}

// The SIMD path's scheduling: whole images per task when there are at least
// as many as threads, else bands of rows of one image at a time. Tasks take
// their images or bands from a shared counter (as parallel_for_dynamic), so a
// thread that another process holds up delays only the piece it holds; the
// result never depends on the split.
template <typename T>
void rasterize_simd(const T* pos, const int32_t* tris, int64_t B, int64_t N, int64_t T_count, int H,
                    int W, int cull, int32_t* tri_id, T* bary, T* depth, int32_t* status) {
  const int64_t threads = at::get_num_threads();
  const int64_t pixels = static_cast<int64_t>(H) * W;
  auto project = [&](const T* p, int64_t begin, int64_t end, ProjectedSoA<T>& pr) {
    project_vertices_soa(p, begin, end, H, W, pr.fxy.get(), pr.xyzw.get(), status);
  };
  if (B >= threads || threads == 1) {
    parallel_for_dynamic_with_state<std::unique_ptr<ProjectedSoA<T>>>(
        B, 1,
        [&](std::unique_ptr<ProjectedSoA<T>>& pr, int64_t begin, int64_t end) {
          if (!pr) pr = std::make_unique<ProjectedSoA<T>>(N);
          for (int64_t b = begin; b < end; ++b) {
            project(pos + b * N * 4, 0, N, *pr);
            rasterize_rows_simd(*pr, tris, N, T_count, H, W, 0, H - 1, cull, tri_id + b * pixels,
                                bary + 3 * b * pixels, depth + b * pixels, status);
          }
        },
        [](std::unique_ptr<ProjectedSoA<T>>&) {});
    return;
  }
  // Fewer images than threads: one band of rows per thread. Every band sets up
  // every triangle (the lanes' pass costs about a third of a frontal 224 x 224
  // face), so more bands than threads cost more than they balance.
  const int64_t bands = std::min<int64_t>(threads, H);
  ProjectedSoA<T> pr(N);
  for (int64_t b = 0; b < B; ++b) {
    const T* p = pos + b * N * 4;
    parallel_for_dynamic(N, 8192, [&](int64_t begin, int64_t end) { project(p, begin, end, pr); });
    parallel_for_dynamic(bands, 1, [&](int64_t begin, int64_t end) {
      for (int64_t band = begin; band < end; ++band) {
        const int row_lo = static_cast<int>(band * H / bands);
        const int row_hi = static_cast<int>((band + 1) * H / bands) - 1;
        rasterize_rows_simd(pr, tris, N, T_count, H, W, row_lo, row_hi, cull, tri_id + b * pixels,
                            bary + 3 * b * pixels, depth + b * pixels, status);
      }
    });
  }
}

// What one pixel sends to the vertices of its triangle: g[k] to vertex tri[k].
template <typename T>
struct Contribution {
  const int32_t* tri;
  T g[3][4];
};

// Writes the contributions of the pixels of rows [row_begin, row_end) of an
// image that send a gradient, in pixel order, to out; returns their count.
template <typename T>
int64_t rasterize_backward_band(const T* grad_bary, const T* grad_depth, const T* pos,
                                const int32_t* tris, const int32_t* tri_id, int64_t N,
                                int64_t T_count, int H, int W, int row_begin, int row_end,
                                Contribution<T>* out) {
  int64_t n = 0;
  for (int row = row_begin; row < row_end; ++row) {
    for (int col = 0; col < W; ++col) {
      const int64_t pix = static_cast<int64_t>(row) * W + col;
      int64_t v[3];
      if (!raster::rasterize_backward_contribution(tri_id[pix], grad_bary + 3 * pix,
                                                   grad_depth + pix, pos, tris, N, T_count, col,
                                                   row, H, W, v, out[n].g))
        continue;
      out[n++].tri = tris + 3 * static_cast<int64_t>(tri_id[pix]);
    }
  }
  return n;
}

// rasterize_backward_band with the pixels' gradients computed in lanes: the
// pixels that send a gradient (rasterize_backward_contribution's test) are
// taken kL at a time and clip_pixel_backward runs on them at once.
template <typename T>
PGN_CPU_CLONES PGN_FLATTEN int64_t
rasterize_backward_band_simd(const T* grad_bary, const T* grad_depth, const T* pos,
                             const int32_t* tris, const int32_t* tri_id, int64_t N, int64_t T_count,
                             int H, int W, int row_begin, int row_end, Contribution<T>* out) {
  using L = LaneVec<T>;
  constexpr int kL = L::width;
  int64_t pix_of[kL];
  int64_t count = 0;
  int n = 0;
  auto run = [&] {
    // Lanes past n repeat lane n - 1; built lane by lane in registers.
    L p[3][4], g[3][4], gb[3], gd, qx, qy;
    for (int l = 0; l < kL; ++l) {
      const int m = l < n ? l : n - 1;
      const int64_t pix = pix_of[m];
      for (int k = 0; k < 3; ++k) {
        const T* pk = pos + 4 * static_cast<int64_t>(out[count + m].tri[k]);
        for (int c = 0; c < 4; ++c) p[k][c].set(l, pk[c]);
        gb[k].set(l, grad_bary[3 * pix + k]);
      }
      gd.set(l, grad_depth[pix]);
      qx.set(l, static_cast<T>(pix % W) + T(0.5));
      qy.set(l, static_cast<T>(pix / W) + T(0.5));
    }
    raster::clip_pixel_backward(p, qx, qy, H, W, gb, gd, g);
    for (int l = 0; l < n; ++l)
      for (int k = 0; k < 3; ++k)
        for (int c = 0; c < 4; ++c) out[count + l].g[k][c] = g[k][c][l];
    count += n;
    n = 0;
  };
  for (int64_t pix = static_cast<int64_t>(row_begin) * W; pix < static_cast<int64_t>(row_end) * W;
       ++pix) {
    const int32_t* tri = raster::pixel_triangle(tri_id[pix], tris, T_count, N);
    if (tri == nullptr) continue;
    const T* gb = grad_bary + 3 * pix;
    if (gb[0] == T(0) && gb[1] == T(0) && gb[2] == T(0) && grad_depth[pix] == T(0)) continue;
    pix_of[n] = pix;
    out[count + n].tri = tri;
    if (++n == kL) run();
  }
  if (n > 0) run();
  return count;
}

// Adds contributions [0, count), in order, to the vertices in [v_begin, v_end)
// of grad_pos [N,4]: each vertex receives its terms in pixel order, however
// the vertices are split.
template <typename T>
void add_contributions(const Contribution<T>* c, int64_t count, int64_t v_begin, int64_t v_end,
                       T* grad_pos) {
  for (int64_t i = 0; i < count; ++i) {
    for (int k = 0; k < 3; ++k) {
      const int64_t v = c[i].tri[k];
      if (v < v_begin || v >= v_end) continue;
      T* out = grad_pos + 4 * v;
      for (int j = 0; j < 4; ++j) out[j] += c[i].g[k][j];
    }
  }
}

// Whether index[0, n) all lie in [0, size): one unsigned 32-bit compare per
// index (a negative one wraps past every valid bound) and no branch, so the
// loop vectorises; interpolate's tasks run it on their shares of tris.
PGN_CPU_CLONES bool indices_in_range(const int32_t* index, int64_t n, int64_t size) {
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
    if (cpu_simd_enabled()) {
      rasterize_simd(pos_ptr, tris_ptr, B, N, T_count, H, W, c, tri_ptr, bary_ptr, depth_ptr, st);
      return;
    }
    if (B >= threads || threads == 1) {
      // A thread's projection and depth buffer, made at its first image.
      struct Buffers {
        std::unique_ptr<Projected<scalar_t>> pr;
        std::vector<uint64_t> zbuf;
      };
      parallel_for_dynamic_with_state<Buffers>(
          B, 1,
          [&](Buffers& buffers, int64_t begin, int64_t end) {
            if (!buffers.pr) {
              buffers.pr = std::make_unique<Projected<scalar_t>>(N);
              buffers.zbuf.resize(pixels);
            }
            for (int64_t b = begin; b < end; ++b) {
              const scalar_t* p = pos_ptr + b * N * 4;
              project_vertices(p, 0, N, H, W, *buffers.pr, st);
              rasterize_rows(*buffers.pr, p, tris_ptr, T_count, H, W, 0, H - 1, c,
                             buffers.zbuf.data(), tri_ptr + b * pixels, bary_ptr + 3 * b * pixels,
                             depth_ptr + b * pixels, st);
            }
          },
          [](Buffers&) {});
      return;
    }
    // Fewer images than threads: bands of rows, each over every triangle.
    const int64_t bands = std::min<int64_t>(threads, H);
    Projected<scalar_t> pr(N);
    std::vector<uint64_t> zbuf(pixels);
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t* p = pos_ptr + b * N * 4;
      parallel_for_dynamic(N, 4096, [&](int64_t begin, int64_t end) {
        project_vertices(p, begin, end, H, W, pr, st);
      });
      parallel_for_dynamic(bands, 1, [&](int64_t begin, int64_t end) {
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
  if (B == 0 || N == 0) return at::zeros({B, N, 4}, pos.options());
  // Every vertex adds its pixels' terms in pixel order (the order of one
  // sequential pass), so the sums depend on neither the thread count nor the
  // batch. With at least as many images as threads each task takes whole
  // images, computing a block of rows' terms and adding them at once; with
  // fewer, an image's rows are split between the threads, which then add the
  // terms of every row, each to its own share of the vertices.
  at::Tensor grad_pos = zeros_output({B, N, 4}, pos.options());
  const int64_t threads = at::get_num_threads();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cpu", [&] {
    const scalar_t* pos_ptr = pos.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* gb_ptr = grad_bary.data_ptr<scalar_t>();
    const scalar_t* gd_ptr = grad_depth.data_ptr<scalar_t>();
    scalar_t* out_ptr = grad_pos.data_ptr<scalar_t>();
    const bool simd = cpu_simd_enabled();
    using C = Contribution<scalar_t>;
    // Rows [row_begin, row_end) of image b, into out; returns the count.
    auto band = [&](int64_t b, int row_begin, int row_end, C* out) -> int64_t {
      const int64_t img = b * H * W;
      if (simd)
        return rasterize_backward_band_simd(gb_ptr + 3 * img, gd_ptr + img, pos_ptr + b * N * 4,
                                            tris_ptr, tri_ptr + img, N, T_count, H, W, row_begin,
                                            row_end, out);
      return rasterize_backward_band(gb_ptr + 3 * img, gd_ptr + img, pos_ptr + b * N * 4, tris_ptr,
                                     tri_ptr + img, N, T_count, H, W, row_begin, row_end, out);
    };
    // Splitting an image holds the terms of all its pixels at once (up to
    // 100 bytes each): images above a megapixel are not split.
    const bool whole_images = B >= threads || threads == 1 || int64_t{H} * W > (int64_t{1} << 20);
    if (whole_images) {
      // Blocks of about 4096 pixels: their terms stay in cache until added.
      const int rows = static_cast<int>(std::max<int64_t>(1, 4096 / W));
      parallel_for_dynamic_with_state<std::unique_ptr<C[]>>(
          B, 1,
          [&](std::unique_ptr<C[]>& buf, int64_t begin, int64_t end) {
            if (!buf) buf.reset(new C[static_cast<int64_t>(rows) * W]);
            for (int64_t b = begin; b < end; ++b) {
              for (int r = 0; r < H; r += rows) {
                const int64_t n = band(b, r, std::min(H, r + rows), buf.get());
                add_contributions(buf.get(), n, 0, N, out_ptr + b * N * 4);
              }
            }
          },
          [](std::unique_ptr<C[]>&) {});
      return;
    }
    const int64_t bands = std::min<int64_t>(threads, H);
    std::unique_ptr<C[]> buf(new C[static_cast<int64_t>(H) * W]);
    std::vector<int64_t> count(bands);
    for (int64_t b = 0; b < B; ++b) {
      parallel_for_dynamic(bands, 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int row_begin = static_cast<int>(k * H / bands);
          count[k] = band(b, row_begin, static_cast<int>((k + 1) * H / bands),
                          buf.get() + static_cast<int64_t>(row_begin) * W);
        }
      });
      parallel_for_dynamic(bands, 1, [&](int64_t begin, int64_t end) {
        for (int64_t share = begin; share < end; ++share) {
          const int64_t v_begin = share * N / bands, v_end = (share + 1) * N / bands;
          for (int64_t k = 0; k < bands; ++k)
            add_contributions(buf.get() + (k * H / bands) * W, count[k], v_begin, v_end,
                              out_ptr + b * N * 4);
        }
      });
    }
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
  at::Tensor out = empty_output({B, H, W, C}, attr.options());
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
    // A large output leaves the cache anyway: write it with streaming stores
    // (common/cpu_stream.h), for up to kStreamChannels channels.
    constexpr int64_t kStreamRun = 64, kStreamChannels = 16;
    const bool stream =
        static_cast<int64_t>(out.nbytes()) >= kStreamOutputBytes && C <= kStreamChannels;
    const bool whole_lines = stream_whole_lines();
    // Tasks handed out one at a time (common/cpu_parallel.h): a thread that
    // another process holds up delays only the task it holds.
    parallel_for_dynamic(tasks, 1, [&](int64_t begin, int64_t end) {
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
        auto run = [&](auto channels) {
          if (!stream) {
            for (int64_t p = p0; p < p1; ++p)
              raster::interpolate_at(tri_ptr[p], tris_ptr, T_count, a, N, channels(),
                                     bary_ptr + 3 * p, out_ptr + p * channels());
            return;
          }
          // A run of pixels into a buffer in L1, then streamed out.
          scalar_t buffer[kStreamRun * kStreamChannels];
          for (int64_t q = p0; q < p1; q += kStreamRun) {
            const int64_t n = std::min(kStreamRun, p1 - q);
            for (int64_t i = 0; i < n; ++i)
              raster::interpolate_at(tri_ptr[q + i], tris_ptr, T_count, a, N, channels(),
                                     bary_ptr + 3 * (q + i), buffer + i * channels());
            stream_copy(buffer, n * channels(), out_ptr + q * channels(), whole_lines);
          }
        };
        with_constant_channels(C, run);
      }
      if (stream) stream_fence();
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
  at::Tensor grad_attr_items = zeros_output({B, N, C}, attr.options());
  at::Tensor grad_bary = zeros_output({B, H, W, 3}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cpu", [&] {
    const scalar_t* attr_ptr = attr.data_ptr<scalar_t>();
    const int32_t* tri_ptr = tri_id.data_ptr<int32_t>();
    const scalar_t* bary_ptr = bary.data_ptr<scalar_t>();
    const int32_t* tris_ptr = tris.data_ptr<int32_t>();
    const scalar_t* go_ptr = grad_out.data_ptr<scalar_t>();
    scalar_t* ga_ptr = grad_attr_items.data_ptr<scalar_t>();
    scalar_t* gb_ptr = grad_bary.data_ptr<scalar_t>();
    const int64_t pixels = H * W;
    parallel_for_dynamic(B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* a = attr_ptr + (Ba == 1 ? 0 : b) * N * C;
        scalar_t* ga = ga_ptr + b * N * C;
        auto run = [&](auto channels) {
          for (int64_t q = 0; q < pixels; ++q) {
            const int64_t p = b * pixels + q;
            raster::interpolate_backward_pixel(tri_ptr[p], tris_ptr, T_count, a, N, channels(),
                                               bary_ptr + 3 * p, go_ptr + p * channels(), ga,
                                               gb_ptr + 3 * p, Add{});
          }
        };
        with_constant_channels(C, run);
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
