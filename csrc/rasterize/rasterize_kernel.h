// Per-pixel math of the rasterizer, shared by the CPU twin (rasterize_cpu.cpp)
// and the CUDA kernels (rasterize_cuda.cu).
//
// Conventions (README "Rasterizer conventions"):
// - A clip-space vertex (x, y, z, w) lands at screen position
//   X = (x/w + 1) * W/2, Y = (y/w + 1) * H/2 (pixels); pixel (col, row) has its
//   centre at (col + 0.5, row + 0.5); row 0 is y/w = -1 (top of the image).
// - Coverage is decided exactly, in 64-bit fixed point with kSubpixelBits of
//   sub-pixel precision, with a deterministic fill rule: a pixel centre on an
//   edge shared by two triangles belongs to exactly one of them.
// - Depth is z/w interpolated linearly in screen space; smaller is nearer. The
//   depth test compares (depth as float32, triangle id) keys, so equal depths
//   go to the lower triangle id, identically on CPU and GPU.
// - Barycentrics are perspective-correct; bary[k] weighs vertex tris[t, k].
//
// Every float operation that decides coverage or the depth test goes through
// the *_rn helpers below, which forbid fused multiply-adds on both sides (CUDA
// intrinsics on the GPU, an empty asm barrier on the CPU that keeps the
// compiler from fusing a product into a following add), so CPU and GPU produce
// bit-identical depth keys.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../common/hostdevice.h"
#include "../common/scalar_math.h"

namespace pgnface {
namespace raster {

constexpr int kSubpixelBits = 8;
constexpr int64_t kSubpixel = int64_t(1) << kSubpixelBits;
// A vertex beyond +-kGuardBand pixels is invalid (its triangles are culled),
// so the 64-bit edge functions can never overflow.
constexpr double kGuardBand = 1048576.0;
constexpr uint64_t kEmptyKey = ~uint64_t(0);

enum CullMode : int { kCullNone = 0, kCullBack = 1, kCullFront = 2 };

// Whether all three vertex indices of a triangle lie in [0, N).
PGN_HD bool valid_triangle(const int32_t* tri, int64_t N) {
  return tri[0] >= 0 && tri[0] < N && tri[1] >= 0 && tri[1] < N && tri[2] >= 0 && tri[2] < N;
}

// The vertex indices of triangle t, or null when t is not a triangle id
// (-1 for an empty pixel) or the triangle has an index outside [0, N): the
// backward passes and interpolation never read out of bounds.
PGN_HD const int32_t* pixel_triangle(int32_t t, const int32_t* tris, int64_t T_count, int64_t N) {
  if (t < 0 || t >= T_count) return nullptr;
  const int32_t* tri = tris + 3 * static_cast<int64_t>(t);
  return valid_triangle(tri, N) ? tri : nullptr;
}

// --- arithmetic that is rounded identically on host and device -----------

// Makes the compiler treat x as opaque, so a product cannot be fused (FMA)
// with the operation that consumes it.
#if defined(__CUDA_ARCH__)
#define PGN_OPAQUE(x) (void)0
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define PGN_OPAQUE(x) __asm__("" : "+x"(x))
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
#define PGN_OPAQUE(x) __asm__("" : "+w"(x))
#elif defined(__GNUC__) || defined(__clang__)
#define PGN_OPAQUE(x) __asm__("" : "+m"(x))
#else
#define PGN_OPAQUE(x) (void)0
#endif

PGN_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  float r = a * b;
  PGN_OPAQUE(r);
  return r;
#endif
}
PGN_HD double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  double r = a * b;
  PGN_OPAQUE(r);
  return r;
#endif
}
PGN_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PGN_HD double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
PGN_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
PGN_HD double sub_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
PGN_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
PGN_HD double div_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
#if !defined(__CUDA_ARCH__)
// The same for the CPU twin's SIMD lanes (common/cpu_lanes.h LaneVec): one
// exactly rounded operation per lane. Nothing here keeps a product from being
// fused into a following add, so the CPU file that runs the lanes compiles
// without contraction (rasterize_cpu.cpp: fp-contract off).
template <typename L>
L mul_rn(L a, L b) {
  return a * b;
}
template <typename L>
L add_rn(L a, L b) {
  return a + b;
}
template <typename L>
L sub_rn(L a, L b) {
  return a - b;
}
template <typename L>
L div_rn(L a, L b) {
  return a / b;
}
#endif
PGN_HD int64_t round_to_int64(float v) {
#ifdef __CUDA_ARCH__
  return __float2ll_rn(v);
#else
  return std::llrint(v);
#endif
}
PGN_HD int64_t round_to_int64(double v) {
#ifdef __CUDA_ARCH__
  return __double2ll_rn(v);
#else
  return std::llrint(v);
#endif
}

// --- vertices ----------------------------------------------------------------

// A clip-space vertex projected to the screen.
template <typename T>
struct ScreenVertex {
  T X, Y;          // screen position in pixels (guard-band clamped)
  T zeta;          // z / w
  int64_t fx, fy;  // X, Y in fixed point (1/kSubpixel pixel)
  bool valid;      // finite, w >= min_w, within the guard band: else its triangles are culled
};

// The smallest w of a valid vertex: nearer the eye plane the screen position
// and its gradient (which grows as 1/w^2) overflow.
template <typename T>
PGN_HD T min_w() {
  return sizeof(T) == sizeof(float) ? static_cast<T>(0x1p-32) : static_cast<T>(0x1p-256);
}

template <typename T>
PGN_HD bool is_finite(T v) {
#ifdef __CUDA_ARCH__
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

// p points at (x, y, z, w).
template <typename T>
PGN_HD ScreenVertex<T> project_vertex(const T* p, int height, int width) {
  ScreenVertex<T> v;
  const T x = p[0], y = p[1], z = p[2], w = p[3];
  v.valid = w >= min_w<T>() && is_finite(x) && is_finite(y) && is_finite(z) && is_finite(w);
  if (v.valid) {
    v.X = mul_rn(add_rn(div_rn(x, w), T(1)), static_cast<T>(width) * T(0.5));
    v.Y = mul_rn(add_rn(div_rn(y, w), T(1)), static_cast<T>(height) * T(0.5));
    const T g = static_cast<T>(kGuardBand);
    v.valid = v.X >= -g && v.X <= g && v.Y >= -g && v.Y <= g;
  }
  if (!v.valid) {
    v.X = v.Y = v.zeta = T(0);
    v.fx = v.fy = 0;
    return v;
  }
  v.zeta = div_rn(z, w);
  v.fx = round_to_int64(mul_rn(v.X, static_cast<T>(kSubpixel)));
  v.fy = round_to_int64(mul_rn(v.Y, static_cast<T>(kSubpixel)));
  return v;
}

// --- exact coverage ----------------------------------------------------------

// Fixed-point edge function of edge a->b at q: twice the signed area of (a, b, q).
// I is int64_t (exact for any vertices of the guard band) or, on the CPU, a
// lane vector of int32 where the coordinate differences are below 2^15 (then
// every product is below 2^30 and the difference below 2^31: still exact).
template <typename I>
PGN_HD I edge_fixed(I ax, I ay, I bx, I by, I qx, I qy) {
  return (bx - ax) * (qy - ay) - (by - ay) * (qx - ax);
}

// Fill rule: of the two directions of an edge, exactly one owns the points on
// it, so a pixel centre on an edge shared by two consistently oriented
// triangles is drawn once.
PGN_HD bool owns_edge(int64_t dx, int64_t dy) { return dy > 0 || (dy == 0 && dx > 0); }

// floor(a / b) for b > 0.
PGN_HD int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Everything coverage needs of one triangle, set up once.
struct TriangleSetup {
  int64_t fx[3], fy[3];        // fixed-point vertices
  int64_t sign;                // +1 for positive screen area, -1 for negative
  bool owns[3];                // fill-rule ownership of edge k (opposite vertex k)
  int col0, col1, row0, row1;  // inclusive pixel bounding box, clipped to the image
};

// Returns false when the triangle draws nothing: an invalid vertex, zero area,
// culled by facing, or entirely off-screen. Front-facing means
// counter-clockwise as seen in the output image (row 0 at the top), which is
// negative signed area in pixel coordinates (x right, y down): a mesh wound
// counter-clockwise seen from outside, drawn upright in OpenCV pixel
// coordinates, shows its front faces.
template <typename T>
PGN_HD bool setup_triangle(const ScreenVertex<T>& v0, const ScreenVertex<T>& v1,
                           const ScreenVertex<T>& v2, int height, int width, int cull,
                           TriangleSetup& t) {
  if (!v0.valid || !v1.valid || !v2.valid) return false;
  const ScreenVertex<T>* v[3] = {&v0, &v1, &v2};
  for (int k = 0; k < 3; ++k) {
    t.fx[k] = v[k]->fx;
    t.fy[k] = v[k]->fy;
  }
  const int64_t area = edge_fixed(t.fx[0], t.fy[0], t.fx[1], t.fy[1], t.fx[2], t.fy[2]);
  if (area == 0) return false;
  if (cull == kCullBack && area > 0) return false;
  if (cull == kCullFront && area < 0) return false;
  t.sign = area > 0 ? 1 : -1;
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    t.owns[k] = owns_edge(t.sign * (t.fx[b] - t.fx[a]), t.sign * (t.fy[b] - t.fy[a]));
  }
  int64_t minx = t.fx[0], maxx = t.fx[0], miny = t.fy[0], maxy = t.fy[0];
  for (int k = 1; k < 3; ++k) {
    minx = t.fx[k] < minx ? t.fx[k] : minx;
    maxx = t.fx[k] > maxx ? t.fx[k] : maxx;
    miny = t.fy[k] < miny ? t.fy[k] : miny;
    maxy = t.fy[k] > maxy ? t.fy[k] : maxy;
  }
  // Pixel centres (c + 1/2) * kSubpixel inside [min, max]; floor division.
  const int64_t half = kSubpixel / 2;
  int64_t c0 = -floor_div(-(minx - half), kSubpixel);  // ceil((minx - half) / S)
  int64_t c1 = floor_div(maxx - half, kSubpixel);
  int64_t r0 = -floor_div(-(miny - half), kSubpixel);
  int64_t r1 = floor_div(maxy - half, kSubpixel);
  c0 = c0 < 0 ? 0 : c0;
  r0 = r0 < 0 ? 0 : r0;
  c1 = c1 > width - 1 ? width - 1 : c1;
  r1 = r1 > height - 1 ? height - 1 : r1;
  if (c0 > c1 || r0 > r1) return false;
  t.col0 = static_cast<int>(c0);
  t.col1 = static_cast<int>(c1);
  t.row0 = static_cast<int>(r0);
  t.row1 = static_cast<int>(r1);
  return true;
}

// Whether the centre of pixel (col, row) is covered by the triangle.
PGN_HD bool covers_pixel(const TriangleSetup& t, int col, int row) {
  const int64_t qx = static_cast<int64_t>(col) * kSubpixel + kSubpixel / 2;
  const int64_t qy = static_cast<int64_t>(row) * kSubpixel + kSubpixel / 2;
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    const int64_t e = t.sign * edge_fixed(t.fx[a], t.fy[a], t.fx[b], t.fy[b], qx, qy);
    if (e < 0 || (e == 0 && !t.owns[k])) return false;
  }
  return true;
}

// --- barycentrics and depth (differentiable, floating point) ----------------

// Floating-point edge function of a->b at q, rounded identically everywhere.
template <typename T>
PGN_HD T edge_float(T ax, T ay, T bx, T by, T qx, T qy) {
  return sub_rn(mul_rn(sub_rn(bx, ax), sub_rn(qy, ay)), mul_rn(sub_rn(by, ay), sub_rn(qx, ax)));
}

// The float edge functions e[k] (of the edge opposite vertex k) at q and
// their sum, twice the float area. T is float, double or a CPU lane vector.
template <typename T>
PGN_HD T screen_edges(const T X[3], const T Y[3], T qx, T qy, T e[3]) {
  e[0] = edge_float(X[1], Y[1], X[2], Y[2], qx, qy);
  e[1] = edge_float(X[2], Y[2], X[0], Y[0], qx, qy);
  e[2] = edge_float(X[0], Y[0], X[1], Y[1], qx, qy);
  return add_rn(add_rn(e[0], e[1]), e[2]);
}

// Screen-space (linear) barycentrics of q; false when the float area is 0.
template <typename T>
PGN_HD bool screen_barycentrics(const T X[3], const T Y[3], T qx, T qy, T lam[3]) {
  T e[3];
  const T area = screen_edges(X, Y, qx, qy, e);
  if (area == T(0)) return false;
  lam[0] = div_rn(e[0], area);
  lam[1] = div_rn(e[1], area);
  lam[2] = div_rn(e[2], area);
  return true;
}

// Depth z/w at q, linear in screen space; -0 becomes +0 so that the float
// comparison and the packed-key comparison agree.
template <typename T>
PGN_HD T interpolate_depth(const T lam[3], const T zeta[3]) {
  const T d =
      add_rn(add_rn(mul_rn(lam[0], zeta[0]), mul_rn(lam[1], zeta[1])), mul_rn(lam[2], zeta[2]));
  return add_rn(d, T(0));
}

// Perspective-correct barycentrics from screen barycentrics and vertex w.
template <typename T>
PGN_HD void perspective_barycentrics(const T lam[3], const T w[3], T bary[3]) {
  const T u0 = div_rn(lam[0], w[0]), u1 = div_rn(lam[1], w[1]), u2 = div_rn(lam[2], w[2]);
  const T sum = add_rn(add_rn(u0, u1), u2);
  bary[0] = div_rn(u0, sum);
  bary[1] = div_rn(u1, sum);
  bary[2] = div_rn(u2, sum);
}

// Order-preserving map of a float to uint32 (for packed depth keys).
PGN_HD uint32_t ordered_bits(float d) {
  uint32_t u;
#ifdef __CUDA_ARCH__
  u = __float_as_uint(d);
#else
  static_assert(sizeof(float) == sizeof(uint32_t), "float must be 32-bit");
  __builtin_memcpy(&u, &d, sizeof(u));
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Depth-test key: nearer depth first, then the lower triangle id.
template <typename T>
PGN_HD uint64_t depth_key(T depth, int32_t tri) {
  return (static_cast<uint64_t>(ordered_bits(static_cast<float>(depth))) << 32) |
         static_cast<uint32_t>(tri);
}

// Depth and screen barycentrics lam[3] of the triangle at pixel (col, row),
// or false if it has none (float degenerate). The coverage pass uses the depth
// for the depth test; the CPU twin keeps lam of the winner so that resolving
// the pixel does not compute it again (resolve_screen_pixel gets the same lam).
template <typename T>
PGN_HD bool pixel_depth(const ScreenVertex<T>& v0, const ScreenVertex<T>& v1,
                        const ScreenVertex<T>& v2, int col, int row, T& depth, T lam[3]) {
  const T X[3] = {v0.X, v1.X, v2.X}, Y[3] = {v0.Y, v1.Y, v2.Y};
  const T zeta[3] = {v0.zeta, v1.zeta, v2.zeta};
  if (!screen_barycentrics(X, Y, static_cast<T>(col) + T(0.5), static_cast<T>(row) + T(0.5), lam))
    return false;
  depth = interpolate_depth(lam, zeta);
  return is_finite(depth);
}
template <typename T>
PGN_HD bool pixel_depth(const ScreenVertex<T>& v0, const ScreenVertex<T>& v1,
                        const ScreenVertex<T>& v2, int col, int row, T& depth) {
  T lam[3];
  return pixel_depth(v0, v1, v2, col, row, depth, lam);
}

// Outputs of one covered pixel from its triangle's projected vertices and
// their clip-space w: perspective-correct barycentrics and depth.
template <typename T>
PGN_HD void resolve_screen_pixel(const ScreenVertex<T>& v0, const ScreenVertex<T>& v1,
                                 const ScreenVertex<T>& v2, const T w[3], int col, int row,
                                 T bary[3], T& depth) {
  const T X[3] = {v0.X, v1.X, v2.X}, Y[3] = {v0.Y, v1.Y, v2.Y};
  const T zeta[3] = {v0.zeta, v1.zeta, v2.zeta};
  // The coverage pass only keeps triangles whose float area is non-zero at
  // this pixel, so this succeeds; the zeros only silence the compiler.
  T lam[3] = {T(0), T(0), T(0)};
  screen_barycentrics(X, Y, static_cast<T>(col) + T(0.5), static_cast<T>(row) + T(0.5), lam);
  depth = interpolate_depth(lam, zeta);
  perspective_barycentrics(lam, w, bary);
}

// Outputs of a pixel no triangle covers.
template <typename T>
PGN_HD void resolve_empty_pixel(int32_t& tri_id, T bary[3], T& depth) {
  tri_id = -1;
  bary[0] = bary[1] = bary[2] = T(0);
  depth = std::numeric_limits<T>::infinity();
}

// The same from clip-space positions p_k = (x, y, z, w).
template <typename T>
PGN_HD void resolve_pixel(const T* p0, const T* p1, const T* p2, int col, int row, int height,
                          int width, T bary[3], T& depth) {
  const T w[3] = {p0[3], p1[3], p2[3]};
  resolve_screen_pixel(project_vertex(p0, height, width), project_vertex(p1, height, width),
                       project_vertex(p2, height, width), w, col, row, bary, depth);
}

// Gradient of (bary, depth) at the pixel centre (qx, qy) w.r.t. the
// clip-space positions p[k] = (x, y, z, w) of the triangle's vertices, given
// the upstream gradients grad_bary[3] and grad_depth. Adds into grad_p[k][0..3]
// (nothing where the float area is 0). L is float or double, or on the CPU a
// lane vector (common/cpu_lanes.h) of that many pixels: the same operations in
// the same order, a zero-area lane adding zeros.
// (Coverage itself is piecewise constant and has no gradient.)
template <typename L>
PGN_HD void clip_pixel_backward(const L p[3][4], L qx, L qy, int height, int width,
                                const L grad_bary[3], L grad_depth, L grad_p[3][4]) {
  using S = lane_scalar_t<L>;
  const L hw = L(static_cast<S>(width) * S(0.5)), hh = L(static_cast<S>(height) * S(0.5));
  L X[3], Y[3], zeta[3], w[3];
  for (int k = 0; k < 3; ++k) {
    w[k] = p[k][3];
    X[k] = (p[k][0] / w[k] + L(S(1))) * hw;
    Y[k] = (p[k][1] / w[k] + L(S(1))) * hh;
    zeta[k] = p[k][2] / w[k];
  }
  L e[3];
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    e[k] = (X[b] - X[a]) * (qy - Y[a]) - (Y[b] - Y[a]) * (qx - X[a]);
  }
  const L area = e[0] + e[1] + e[2];
  const auto degenerate = area == L(S(0));
  if (lane_all(degenerate)) return;
  L lam[3], u[3];
  for (int k = 0; k < 3; ++k) lam[k] = e[k] / area;
  for (int k = 0; k < 3; ++k) u[k] = lam[k] / w[k];
  const L usum = u[0] + u[1] + u[2];
  L bary[3];
  for (int k = 0; k < 3; ++k) bary[k] = u[k] / usum;

  // bary_k = u_k / sum(u)
  const L gb_dot_b = grad_bary[0] * bary[0] + grad_bary[1] * bary[1] + grad_bary[2] * bary[2];
  L g_lam[3], g_w[3], g_zeta[3];
  for (int k = 0; k < 3; ++k) {
    const L g_u = (grad_bary[k] - gb_dot_b) / usum;
    // u_k = lam_k / w_k ; depth = sum lam_k zeta_k
    g_lam[k] = g_u / w[k] + grad_depth * zeta[k];
    g_w[k] = -g_u * u[k] / w[k];  // d(lam/w)/dw = -lam/w^2 = -u/w
    g_zeta[k] = grad_depth * lam[k];
  }
  // lam_k = e_k / area, area = sum e
  const L gl_dot_l = g_lam[0] * lam[0] + g_lam[1] * lam[1] + g_lam[2] * lam[2];
  L g_e[3];
  for (int k = 0; k < 3; ++k) g_e[k] = (g_lam[k] - gl_dot_l) / area;
  // e_k = E(a, b, q): dE/dax = by - qy, dE/day = qx - bx, dE/dbx = qy - ay, dE/dby = ax - qx
  L g_X[3] = {L(S(0)), L(S(0)), L(S(0))}, g_Y[3] = {L(S(0)), L(S(0)), L(S(0))};
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    g_X[a] += g_e[k] * (Y[b] - qy);
    g_Y[a] += g_e[k] * (qx - X[b]);
    g_X[b] += g_e[k] * (qy - Y[a]);
    g_Y[b] += g_e[k] * (X[a] - qx);
  }
  // X = (x/w + 1) W/2, Y = (y/w + 1) H/2, zeta = z/w
  const L zero = L(S(0));
  for (int k = 0; k < 3; ++k) {
    const L inv_w = L(S(1)) / w[k];
    grad_p[k][0] += lane_select(degenerate, zero, g_X[k] * hw * inv_w);
    grad_p[k][1] += lane_select(degenerate, zero, g_Y[k] * hh * inv_w);
    grad_p[k][2] += lane_select(degenerate, zero, g_zeta[k] * inv_w);
    grad_p[k][3] +=
        lane_select(degenerate, zero,
                    g_w[k] - (g_X[k] * hw * p[k][0] + g_Y[k] * hh * p[k][1] + g_zeta[k] * p[k][2]) *
                                 inv_w * inv_w);
  }
}

// The same for the pixel (col, row) from pointers p[k] to (x, y, z, w).
template <typename T>
PGN_HD void resolve_pixel_backward(const T* const p[3], int col, int row, int height, int width,
                                   const T grad_bary[3], T grad_depth, T grad_p[3][4]) {
  const T pk[3][4] = {{p[0][0], p[0][1], p[0][2], p[0][3]},
                      {p[1][0], p[1][1], p[1][2], p[1][3]},
                      {p[2][0], p[2][1], p[2][2], p[2][3]}};
  clip_pixel_backward(pk, static_cast<T>(col) + T(0.5), static_cast<T>(row) + T(0.5), height, width,
                      grad_bary, grad_depth, grad_p);
}

// Depth-tests triangle t (projected vertices v0..v2, set up as `setup`) at
// every pixel it covers, lowering zbuf [H*W] (64-bit keys) to its packed key through
// keep_min(slot, key): a plain min on the CPU, atomicMin on the GPU.
template <typename T, typename Key, typename KeepMin>
PGN_HD void cover_triangle(const ScreenVertex<T>& v0, const ScreenVertex<T>& v1,
                           const ScreenVertex<T>& v2, const TriangleSetup& setup, int32_t t, int W,
                           Key* zbuf, KeepMin keep_min) {
  for (int row = setup.row0; row <= setup.row1; ++row) {
    Key* zrow = zbuf + static_cast<int64_t>(row) * W;
    for (int col = setup.col0; col <= setup.col1; ++col) {
      if (!covers_pixel(setup, col, row)) continue;
      T d;
      if (!pixel_depth(v0, v1, v2, col, row, d)) continue;
      keep_min(zrow + col, static_cast<Key>(depth_key(d, t)));
    }
  }
}

// The gradient pixel (col, row) sends to the vertices v[0..2] of its triangle
// t: g[k][0..3] for vertex v[k] (pos and grad_pos offset to the pixel's batch
// item). Returns false where the pixel sends nothing (no valid triangle, or a
// zero upstream gradient), leaving v and g unset.
template <typename T>
PGN_HD bool rasterize_backward_contribution(int32_t t, const T* grad_bary, const T* grad_depth,
                                            const T* pos, const int32_t* tris, int64_t N,
                                            int64_t T_count, int col, int row, int H, int W,
                                            int64_t v[3], T g[3][4]) {
  const int32_t* tri = pixel_triangle(t, tris, T_count, N);
  if (tri == nullptr) return false;
  const T gb[3] = {grad_bary[0], grad_bary[1], grad_bary[2]};
  const T gd = *grad_depth;
  if (gb[0] == T(0) && gb[1] == T(0) && gb[2] == T(0) && gd == T(0)) return false;
  for (int k = 0; k < 3; ++k) v[k] = tri[k];  // 4 * index overflows int32 past 2^29 vertices
  const T* p[3] = {pos + 4 * v[0], pos + 4 * v[1], pos + 4 * v[2]};
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 4; ++c) g[k][c] = T(0);
  resolve_pixel_backward(p, col, row, H, W, gb, gd, g);
  return true;
}

// Backward of one pixel (col, row) of an image: scatters the gradient of its
// bary (grad_bary[3]) and depth (*grad_depth) into grad_pos [N,4] of that
// image through add(slot, value): += on the CPU, atomicAdd on the GPU.
// pos [N,4] is the image's clip-space positions, t the pixel's triangle id.
template <typename T, typename Add>
PGN_HD void rasterize_backward_pixel(int32_t t, const T* grad_bary, const T* grad_depth,
                                     const T* pos, const int32_t* tris, int64_t N, int64_t T_count,
                                     int col, int row, int H, int W, T* grad_pos, Add add) {
  int64_t v[3];
  T g[3][4];
  if (!rasterize_backward_contribution(t, grad_bary, grad_depth, pos, tris, N, T_count, col, row, H,
                                       W, v, g))
    return;
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 4; ++c) add(grad_pos + 4 * v[k] + c, g[k][c]);
}

// --- interpolation -----------------------------------------------------------

// out[c] = sum_k bary[k] * attr_k[c] for C channels.
template <typename T>
PGN_HD void interpolate_pixel(const T* a0, const T* a1, const T* a2, const T bary[3], int64_t C,
                              T* out) {
  for (int64_t c = 0; c < C; ++c) out[c] = bary[0] * a0[c] + bary[1] * a1[c] + bary[2] * a2[c];
}

// Interpolated value of one pixel: out[C] from attr [N,C] of its image, or
// zeros when the pixel has no valid triangle t.
template <typename T>
PGN_HD void interpolate_at(int32_t t, const int32_t* tris, int64_t T_count, const T* attr,
                           int64_t N, int64_t C, const T bary[3], T* out) {
  const int32_t* tri = pixel_triangle(t, tris, T_count, N);
  if (tri == nullptr) {
    for (int64_t c = 0; c < C; ++c) out[c] = T(0);
    return;
  }
  interpolate_pixel(attr + tri[0] * C, attr + tri[1] * C, attr + tri[2] * C, bary, C, out);
}

// Backward of one pixel's interpolation: writes grad_bary[3] and adds
// bary[k] * grad_out into the rows of grad_attr [N,C] (of the pixel's
// attribute set) through add(slot, value): += on the CPU, atomicAdd on the GPU.
// Pixels without a valid triangle t are left alone.
template <typename T, typename Add>
PGN_HD void interpolate_backward_pixel(int32_t t, const int32_t* tris, int64_t T_count,
                                       const T* attr, int64_t N, int64_t C, const T* bary,
                                       const T* grad_out, T* grad_attr, T* grad_bary, Add add) {
  const int32_t* tri = pixel_triangle(t, tris, T_count, N);
  if (tri == nullptr) return;
  for (int k = 0; k < 3; ++k) {
    const T bk = bary[k];
    const T* ak = attr + tri[k] * C;
    T* gak = grad_attr + tri[k] * C;
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) {
      dot += grad_out[c] * ak[c];
      add(gak + c, bk * grad_out[c]);
    }
    grad_bary[k] = dot;
  }
}

}  // namespace raster
}  // namespace pgnface
