// SIMD helpers for per-item reductions over interleaved 3-vectors (points):
// loading width points as x, y, z lane vectors and storing them back, and
// summing the lanes of width vectors at once. Only used inside
// PGN_CPU_CLONES functions (see common/cpu_simd.h).
#pragma once

#include <cstddef>
#include <utility>

#include "cpu_lanes.h"

namespace pgnface {

// Sums of the lanes of width vectors at once: lane l of the result is the
// sum of the lanes of v[l][k]. A tree of pairwise shuffles and adds (width - 1
// of each pair for the whole group, where lane_sum costs width - 1 scalar adds
// per vector); each lane's terms are added in a fixed order, whatever the
// other vectors hold.
namespace lane_tree {

// Combines x and y, each holding partial sums of `s`-lane blocks of several
// vectors, into sums of 2s-lane blocks: lane i takes (of x for i % 2s < s,
// else of y) the lanes first(i) and first(i) + s.
template <int W>
constexpr int first(int i, int s) {
  const int g = i / (2 * s), r = i % (2 * s);
  return r < s ? 2 * s * g + r : W + 2 * s * g + (r - s);
}

template <int S, typename V, int W, size_t... I>
PGN_ALWAYS_INLINE V combine(V x, V y, std::index_sequence<I...>) {
  return __builtin_shufflevector(x, y, first<W>(int(I), S)...) +
         __builtin_shufflevector(x, y, (first<W>(int(I), S) + S)...);
}

template <int N, int K, typename T>
PGN_ALWAYS_INLINE typename Simd<T>::type reduce(const LaneVec<T> (*v)[K], int k) {
  using V = typename Simd<T>::type;
  constexpr int W = Simd<T>::width;
  if constexpr (N == 1) {
    return v[0][k].v;
  } else {
    const V x = reduce<N / 2, K, T>(v, k);
    const V y = reduce<N / 2, K, T>(v + N / 2, k);
    return combine<N / 2, V, W>(x, y, std::make_index_sequence<W>());
  }
}

}  // namespace lane_tree

template <int K, typename T>
PGN_ALWAYS_INLINE LaneVec<T> lane_sums(const LaneVec<T> (*v)[K], int k) {
  return LaneVec<T>::of(lane_tree::reduce<Simd<T>::width, K, T>(v, k));
}

// Structure-of-arrays views of width consecutive 3-vectors (points) stored
// interleaved, x0 y0 z0 x1 y1 z1 ...: three whole-vector loads or stores and
// a few in-register shuffles, where a lane-by-lane gather costs a scalar move
// per value. Lane l of component vector d comes from flat element 3 l + d,
// which sits in lane (3 l + d) % W of loaded vector (3 l + d) / W.
namespace lanes3 {

template <int W>
constexpr int source_of(int lane, int d) {  // which loaded vector holds component d at `lane`
  for (int s = 0; s < 3; ++s) {
    if ((lane + s * W) % 3 == d) return s;
  }
  return 0;
}
template <int W>
constexpr int lane_of_point(int j, int d) {  // where point j's component d sits
  return (3 * j + d) % W;
}
template <int W>
constexpr int point_of_lane(int lane, int d) {  // the inverse of lane_of_point
  for (int j = 0; j < W; ++j) {
    if (lane_of_point<W>(j, d) == lane) return j;
  }
  return 0;
}

template <int D, typename V, int W, size_t... I>
PGN_ALWAYS_INLINE V gather_component(V a, V b, V c, std::index_sequence<I...>) {
  // Blend the lanes holding component D into place, then reorder them by point.
  const V ab = __builtin_shufflevector(a, b, (source_of<W>(I, D) == 1 ? int(I) + W : int(I))...);
  const V m = __builtin_shufflevector(ab, c, (source_of<W>(I, D) == 2 ? int(I) + W : int(I))...);
  return __builtin_shufflevector(m, m, lane_of_point<W>(int(I), D)...);
}

template <int S, typename V, int W, size_t... I>
PGN_ALWAYS_INLINE V scatter_vector(V m0, V m1, V m2, std::index_sequence<I...>) {
  // Loaded vector S holds component (lane + S W) % 3 at each lane.
  const V t = __builtin_shufflevector(m0, m1, ((int(I) + S * W) % 3 == 1 ? int(I) + W : int(I))...);
  return __builtin_shufflevector(t, m2, ((int(I) + S * W) % 3 == 2 ? int(I) + W : int(I))...);
}

template <int D, typename V, int W, size_t... I>
PGN_ALWAYS_INLINE V spread_component(V x, std::index_sequence<I...>) {
  return __builtin_shufflevector(x, x, point_of_lane<W>(int(I), D)...);
}

}  // namespace lanes3

// Points p[0 .. width) of an interleaved [*, 3] array as x, y, z lane vectors.
template <typename T>
PGN_ALWAYS_INLINE void load_points3(const T* p, LaneVec<T>* out) {
  using V = typename Simd<T>::type;
  constexpr int W = Simd<T>::width;
  constexpr auto seq = std::make_index_sequence<W>();
  const V a = simd_load(p), b = simd_load(p + W), c = simd_load(p + 2 * W);
  out[0] = LaneVec<T>::of(lanes3::gather_component<0, V, W>(a, b, c, seq));
  out[1] = LaneVec<T>::of(lanes3::gather_component<1, V, W>(a, b, c, seq));
  out[2] = LaneVec<T>::of(lanes3::gather_component<2, V, W>(a, b, c, seq));
}

// The inverse of load_points3: x, y, z lane vectors stored as width interleaved points.
template <typename T>
PGN_ALWAYS_INLINE void store_points3(const LaneVec<T>* in, T* p) {
  using V = typename Simd<T>::type;
  constexpr int W = Simd<T>::width;
  constexpr auto seq = std::make_index_sequence<W>();
  const V m0 = lanes3::spread_component<0, V, W>(in[0].v, seq);
  const V m1 = lanes3::spread_component<1, V, W>(in[1].v, seq);
  const V m2 = lanes3::spread_component<2, V, W>(in[2].v, seq);
  simd_store(p, lanes3::scatter_vector<0, V, W>(m0, m1, m2, seq));
  simd_store(p + W, lanes3::scatter_vector<1, V, W>(m0, m1, m2, seq));
  simd_store(p + 2 * W, lanes3::scatter_vector<2, V, W>(m0, m1, m2, seq));
}

}  // namespace pgnface
