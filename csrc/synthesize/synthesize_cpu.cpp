// CPU twin of the fused 3DMM vertex synthesis op.
//
// Scheduling (batches above synthesize_cpu_small_batch.h's kSmallBatch; smaller
// ones take the schedule there): parallel over vertices, pieces handed out
// dynamically (common/cpu_parallel.h).
// Batch items are vector lanes: coeffs and the pose are packed once into
// [K, ld] / [13, ld] lane-major tables (checking their values on the way),
// each basis element is loaded once per micro-tile of vertices and multiplied
// against a vector or two of batch items, so the basis streams from memory
// once for the whole batch. The mean add and the pose transform happen in the
// same pass (synthesize_kernel.h), so no intermediate [B,N,3] is written.
// An output of 4 MiB or more is staged a piece at a time in L2 and streamed
// out with streaming stores while the next piece is computed
// (common/cpu_stream.h), which lets two threads write it at twice the rate.
// The backward works a block of vertices at a time: it forms the
// shape-space and pose gradients, the latter from the forward's output
// (p = out - t = s R shape, synthesize_kernel.h's output path), then
// contracts the block's basis rows into the coefficient gradient, the rows
// still in cache, so the basis streams from memory once and is multiplied
// once. Only batch items the output path cannot serve (output_path) have
// their shapes recomputed, which costs a second contraction of the block.
// Instruction sets: the kernels are templates over the vector size. The
// 256-bit build is compiled for baseline x86-64 and x86-64-v3 (AVX2 + FMA)
// and picked at load time (PGN_CPU_CLONES); the 512-bit one for x86-64-v4
// (AVX-512), picked per call (vector_bytes) where the CPU supports it, the
// set_cpu_simd_width limit allows it and the batch needs more than one 256-bit
// vector, so that 512-bit lanes are not left mostly idle. The wide kernels
// double the lanes per instruction and have 32 registers for their tiles,
// which pays where the contraction is compute-bound. Every lane adds its
// terms in the same order in both, so their results are bit-identical.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "../common/cpu_parallel.h"
#include "../common/cpu_simd.h"
#include "../common/cpu_stream.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "synthesize.h"
#include "synthesize_cpu_small_batch.h"
#include "synthesize_kernel.h"

namespace pgnface {

namespace {

// Register tiles of one vector size (Bytes: 32 for AVX2, 64 for AVX-512).
// The forward works blocks of kBlockVerts vertices (the unit of the parallel
// loop over vertices) in tiles of kWideTV vertices x 2 lane vectors, and a
// last single lane vector in tiles of kBlockVerts vertices; the backward's
// coefficient tiles hold kCoeffWide components x 2 lane vectors or
// kCoeffNarrow components x 1. AVX-512's 32 registers hold twice the
// accumulators of AVX2's 16, so its forward tiles load fewer basis values per
// multiply-add. Its backward tiles time alike at 2 x 12, 2 x 10, 4 x 6 and
// 4 x 5; a single-vector tile of 24 components took twice as long as one of
// 12 (batches of 9-16 items).
template <int Bytes>
struct Tiles;
template <>
struct Tiles<32> {
  static constexpr int kBlockVerts = 4, kWideTV = 2, kCoeffWide = 6, kCoeffNarrow = 12;
};
template <>
struct Tiles<64> {
  static constexpr int kBlockVerts = 4, kWideTV = 4, kCoeffWide = 12, kCoeffNarrow = 12;
};
constexpr int kBlockVerts = 4;
static_assert(Tiles<32>::kBlockVerts == kBlockVerts && Tiles<64>::kBlockVerts == kBlockVerts);

// Rows of the lane-major pose table: R (9, row-major), s, t (3).
constexpr int kPoseRows = 13;

// Where the forward writes item b's vertex n: the output itself (row_stride
// N * 3, first_vert 0) or a piece's staging buffer, whose rows hold the
// piece's vertices only.
template <typename T>
struct OutRows {
  T* base;
  int64_t row_stride;  // values from one item's row to the next
  int64_t first_vert;  // the vertex at the start of each row
  PGN_ALWAYS_INLINE T* at(int64_t b, int64_t n) const {
    return base + b * row_stride + (n - first_vert) * 3;
  }
};

template <typename T>
struct SynthesizeArgs {
  const T* mean;      // [N,3]
  const T* basis;     // [N,3,K]
  const T* coeffs;    // [B,K]
  const T* coeffs_t;  // [K,ld] coeffs transposed, zero-padded to ld columns
  const T* pose_t;    // [13,ld] R, s, t transposed, zero-padded to ld columns
  int64_t B, N, K, ld;
};

// Batch items per vector of type V.
template <typename T, typename V>
constexpr int kLanes = sizeof(V) / sizeof(T);

// Transposes the W x W block v in registers: v[j][i] becomes v[i][j]
// (unpack, then pair-shuffle, then 128-bit-half stages for 8 floats; unpack,
// then half stages for 4 doubles).
PGN_ALWAYS_INLINE void transpose_square(f32x8 v[8]) {
  f32x8 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(v[i], v[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(v[i], v[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    v[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

PGN_ALWAYS_INLINE void transpose_square(f64x4 v[4]) {
  const f64x4 t0 = __builtin_shufflevector(v[0], v[1], 0, 4, 2, 6);
  const f64x4 t1 = __builtin_shufflevector(v[0], v[1], 1, 5, 3, 7);
  const f64x4 t2 = __builtin_shufflevector(v[2], v[3], 0, 4, 2, 6);
  const f64x4 t3 = __builtin_shufflevector(v[2], v[3], 1, 5, 3, 7);
  v[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
  v[1] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
  v[2] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
  v[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}

// Rows a = v[i] and b = v[i + H] (bit H of i clear) of a W x W block trade
// the H x H blocks either side of the diagonal: a's elements p with bit H
// set and b's with bit H clear.
template <int H, typename V, int... P>
PGN_ALWAYS_INLINE void swap_off_diagonal(V& a, V& b, std::integer_sequence<int, P...>) {
  constexpr int W = sizeof...(P);
  const V lo = __builtin_shufflevector(a, b, ((P & H) ? W + P - H : P)...);
  const V hi = __builtin_shufflevector(a, b, ((P & H) ? W + P : P + H)...);
  a = lo;
  b = hi;
}

// The W x W transpose as log2(W) block swaps (one per bit of the row and
// column indices), each a two-source shuffle per row: 16 x 16 floats and
// 8 x 8 doubles for 512-bit vectors.
template <int W, int H, typename V>
PGN_ALWAYS_INLINE void transpose_levels(V v[W]) {
  if constexpr (H > 0) {
    for (int i = 0; i < W; ++i)
      if ((i & H) == 0) swap_off_diagonal<H>(v[i], v[i + H], std::make_integer_sequence<int, W>{});
    transpose_levels<W, H / 2>(v);
  }
}

PGN_ALWAYS_INLINE void transpose_square(f32x16 v[16]) { transpose_levels<16, 8>(v); }
PGN_ALWAYS_INLINE void transpose_square(f64x8 v[8]) { transpose_levels<8, 4>(v); }

// acc[v][d][i] = sum_k basis[n_v, d, k] * coeffs[b0 + lanes of vector i, k]
// for TV vertex rows and NV lane vectors; coeffs_t already points at column b0.
// Each basis element is loaded once and multiplied against NV vectors of
// batch items; the TV * 3 * NV accumulators stay in vector registers. Every
// lane sums over k in order, whatever the tile, so all tiles and vector
// sizes give the same bits.
template <typename T, typename V, int NV, int TV>
PGN_ALWAYS_INLINE void contract_basis_tile(const T* const* rows, const T* coeffs_t, int64_t ld,
                                           int64_t K, V acc[TV][3][NV]) {
  constexpr int W = kLanes<T, V>;
  for (int v = 0; v < TV; ++v)
    for (int d = 0; d < 3; ++d)
      for (int i = 0; i < NV; ++i) acc[v][d][i] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V c[NV];
    for (int i = 0; i < NV; ++i) c[i] = vec_load<V>(coeffs_t + k * ld + i * W);
    for (int v = 0; v < TV; ++v) {
      for (int d = 0; d < 3; ++d) {
        const T w = rows[v][d * K + k];
        for (int i = 0; i < NV; ++i) acc[v][d][i] += w * c[i];
      }
    }
  }
}

// Loads the pose of the lane vector at batch column b from the pose table.
template <typename T, typename V>
PGN_ALWAYS_INLINE void load_pose(const SynthesizeArgs<T>& a, int64_t b, V pose[kPoseRows]) {
  for (int r = 0; r < kPoseRows; ++r) pose[r] = vec_load<V>(a.pose_t + r * a.ld + b);
}

// Stores rows R0 .. of a tile's posed points (row 3 v + d, lane j: item
// bi + j) as x, y, z runs of item bi + j from vertex n0, W rows at a time: a
// register transpose turns them into each item's contiguous run, written with
// a few whole-vector stores instead of a scalar store per value.
template <int R0, int R, typename T, typename V>
PGN_ALWAYS_INLINE void store_posed_rows(const V* posed, const OutRows<T>& out, int64_t n0,
                                        int64_t bi, int nb) {
  if constexpr (R0 < R) {
    constexpr int W = kLanes<T, V>;
    constexpr int kCount = std::min(W, R - R0);
    V v[W];
    for (int i = 0; i < W; ++i) v[i] = i < kCount ? posed[R0 + i] : V{};
    transpose_square(v);
    for (int j = 0; j < nb; ++j) std::memcpy(out.at(bi + j, n0) + R0, &v[j], kCount * sizeof(T));
    store_posed_rows<R0 + W, R>(posed, out, n0, bi, nb);
  }
}

// Posed points of nv <= TV vertices from n0 and NV lane vectors from b0.
// Full tiles leave by store_posed_rows, partial ones (the last vertices) by
// scalar stores.
template <typename T, typename V, int NV, int TV>
PGN_ALWAYS_INLINE void forward_tile(const SynthesizeArgs<T>& a, const T* const* rows, int64_t n0,
                                    int nv, int64_t b0, const OutRows<T>& out) {
  constexpr int W = kLanes<T, V>;
  V acc[TV][3][NV];
  contract_basis_tile<T, V, NV, TV>(rows, a.coeffs_t + b0, a.ld, a.K, acc);
  for (int i = 0; i < NV; ++i) {
    const int64_t bi = b0 + i * W;
    if (bi >= a.B) break;
    V pose[kPoseRows];
    load_pose<T, V>(a, bi, pose);
    const int nb = static_cast<int>(std::min<int64_t>(W, a.B - bi));
    V posed[TV * 3];
    for (int v = 0; v < TV; ++v) {
      const int64_t n = n0 + std::min(v, nv - 1);
      const V shape[3] = {a.mean[3 * n] + acc[v][0][i], a.mean[3 * n + 1] + acc[v][1][i],
                          a.mean[3 * n + 2] + acc[v][2][i]};
      morphable::transform_point(pose, pose[9], pose + 10, shape, posed + 3 * v);
    }
    if (nv == TV) {
      store_posed_rows<0, 3 * TV>(posed, out, n0, bi, nb);
      continue;
    }
    for (int v = 0; v < nv; ++v) {
      for (int j = 0; j < nb; ++j) {
        T* o = out.at(bi + j, n0 + v);
        o[0] = posed[3 * v][j];
        o[1] = posed[3 * v + 1][j];
        o[2] = posed[3 * v + 2][j];
      }
    }
  }
}

// Forward blocks [block_begin, block_end) with vectors of Bytes bytes,
// streaming out a step of `pending` (if any) after each block.
template <typename T, int Bytes>
PGN_ALWAYS_INLINE void forward_blocks_impl(const SynthesizeArgs<T>& a, const OutRows<T>& out,
                                           int64_t block_begin, int64_t block_end,
                                           StagedRows<T>* pending) {
  using V = typename SimdOf<T, Bytes>::type;
  constexpr int W = kLanes<T, V>, TV = Tiles<Bytes>::kWideTV;
  for (int64_t block = block_begin; block < block_end; ++block) {
    const int64_t n0 = block * kBlockVerts;
    const int nv = static_cast<int>(std::min<int64_t>(kBlockVerts, a.N - n0));
    // Rows past the last vertex repeat it (their results are never used).
    const T* rows[kBlockVerts];
    for (int v = 0; v < kBlockVerts; ++v) rows[v] = a.basis + (n0 + std::min(v, nv - 1)) * 3 * a.K;
    int64_t b0 = 0;
    for (; a.B - b0 >= 2 * W; b0 += 2 * W) {
      for (int v0 = 0; v0 < nv; v0 += TV)
        forward_tile<T, V, 2, TV>(a, rows + v0, n0 + v0, std::min(nv - v0, TV), b0, out);
    }
    for (; b0 < a.B; b0 += W) forward_tile<T, V, 1, kBlockVerts>(a, rows, n0, nv, b0, out);
    if (pending != nullptr) pending->step();
  }
}

// Entry points are compiled once per ISA and picked at load time
// (PGN_CPU_CLONES), or compiled for AVX-512 and picked by the caller.
template <typename T>
PGN_CPU_CLONES void forward_blocks(const SynthesizeArgs<T>& a, const OutRows<T>& out,
                                   int64_t block_begin, int64_t block_end, StagedRows<T>* pending) {
  forward_blocks_impl<T, 32>(a, out, block_begin, block_end, pending);
}

#ifdef PGN_CPU_V4
template <typename T>
PGN_CPU_V4 void forward_blocks_v4(const SynthesizeArgs<T>& a, const OutRows<T>& out,
                                  int64_t block_begin, int64_t block_end, StagedRows<T>* pending) {
  forward_blocks_impl<T, 64>(a, out, block_begin, block_end, pending);
}
#endif

template <typename T>
struct SynthesizeGradArgs {
  SynthesizeArgs<T> in;
  const T* grad_out;  // [B,N,3]
  const T* out;       // [B,N,3] the forward's output
  const T* t_out;     // [3,ld] t of output-path lanes, 0 for recompute-path lanes and padding
  const T* path;      // [B,kOutputPathSize] output_path's records
  bool recompute;     // whether any item takes the recompute path
  T* pose_part;       // [chunks,12,ld] per-chunk pose partial sums, lane-major
  T* coeff_part;      // [chunks,K,ld] per-chunk coefficient-gradient partial sums
  T* grad_mean;       // [N,3] or nullptr
  T* grad_basis;      // [N,3,K] or nullptr
  int64_t chunk_verts;
};

// Vertices the backward handles per block (its lane-major tables of the
// upstream gradient, the shape-space gradient, the output and, if needed,
// the shape: a few tens of KB at B = 64, so they stay in L1/L2 between the
// block's phases).
constexpr int64_t kGradBlockVerts = 32;
// Prefetches the coefficient tiles issue per shape-gradient row: the next
// block's lines (about B * 14 + 300 at K = 50) within this block's first
// few tiles.
constexpr int kPrefetchesPerRow = 2;

// Copies x[b, n0 .. n0 + nv, :] of a [B,N,3] array (grad_out or out) for
// every item b into table [nv * 3, ld] (row 3 v + d, lane b), a W x W
// register transpose at a time. Each item's values are read as one
// contiguous run (prefetched a block ahead by BlockPrefetcher); gathering a
// vector of items per vertex instead touches B cache lines at a stride of
// N * 3 values, and waiting for them was the backward's largest cost. Lanes
// past B keep the zeros the table starts with.
template <typename T, typename V>
PGN_ALWAYS_INLINE void transpose_vertices(const T* x, int64_t B, int64_t N, int64_t n0, int64_t nv,
                                          T* table, int64_t ld) {
  constexpr int W = kLanes<T, V>;
  const int64_t rows = nv * 3;
  int64_t b = 0;
  for (; B - b >= W; b += W) {
    const T* src[W];
    for (int i = 0; i < W; ++i) src[i] = x + ((b + i) * N + n0) * 3;
    int64_t r = 0;
    for (; rows - r >= W; r += W) {
      V v[W];
      for (int i = 0; i < W; ++i) v[i] = vec_load<V>(src[i] + r);
      transpose_square(v);
      for (int j = 0; j < W; ++j) vec_store(table + (r + j) * ld + b, v[j]);
    }
    for (; r < rows; ++r)
      for (int i = 0; i < W; ++i) table[r * ld + b + i] = src[i][r];
  }
  for (; b < B; ++b) {
    const T* src = x + (b * N + n0) * 3;
    for (int64_t r = 0; r < rows; ++r) table[r * ld + b] = src[r];
  }
}

// Prefetches into L2 what the backward's next block of vertices reads from
// memory: x0[b, n0 .. n0 + nv, :] and x1[b, ...] (grad_out and out) of every
// item b, then the block's basis rows. The item runs are too short and too
// many (one per item and array) for the hardware prefetchers to follow, and
// the basis rows are read first at a stride of K values, a pattern they pick
// up too late; without this each block's transposes and tiles wait on their
// loads one cache line at a time. The prefetches are issued a few at a time
// (step) between the current block's multiply-adds rather than in one burst:
// in a burst they fill the line-fill buffers and stall the core for as long
// as the memory takes, so that computing and streaming do not overlap.
template <typename T>
class BlockPrefetcher {
 public:
  // Queues the next block: vertices n0 .. n0 + nv (none if nv <= 0).
  void start(const T* x0, const T* x1, const T* basis, int64_t B, int64_t N, int64_t K, int64_t n0,
             int64_t nv) {
    x0_ = x0 + n0 * 3;
    x1_ = x1 + n0 * 3;
    stride_ = N * 3;
    run_rows_ = nv * 3;
    basis_ = basis + n0 * 3 * K;
    basis_rows_ = nv * 3 * K;
    runs_ = nv > 0 ? 2 * B + 1 : 0;
    run_ = 0;
    r_ = 0;
  }

  // Issues the next `count` queued prefetches, or as many as are left.
  PGN_ALWAYS_INLINE void step(int count) {
    for (int i = 0; i < count && run_ < runs_; ++i) {
      // Runs 0 .. 2B - 1 alternate between x0 and x1 per item; the last is the basis.
      const bool basis = run_ == runs_ - 1;
      const T* src = basis ? basis_ : (run_ & 1 ? x1_ : x0_) + (run_ >> 1) * stride_;
      const int64_t n = basis ? basis_rows_ : run_rows_;
      // Every line of src[0 .. n): steps of one line, then the last value.
      __builtin_prefetch(src + std::min(r_, n - 1), 0, 2);
      if (r_ >= n - 1) {
        ++run_;
        r_ = 0;
      } else {
        r_ += kLine;
      }
    }
  }

  // Issues all that is left.
  void finish() {
    while (run_ < runs_) step(64);
  }

 private:
  static constexpr int64_t kLine = 64 / sizeof(T);
  const T *x0_ = nullptr, *x1_ = nullptr, *basis_ = nullptr;
  int64_t stride_ = 0, run_rows_ = 0, basis_rows_ = 0, runs_ = 0, run_ = 0, r_ = 0;
};

// Stores mean + acc for tv vertices from n (table row 3 v0 + d for vertex
// v0 of the tile) and NV lane vectors from column b0.
template <typename T, typename V, int NV>
PGN_ALWAYS_INLINE void store_shapes(const SynthesizeArgs<T>& a, V acc[2][3][NV], int64_t n, int tv,
                                    int64_t row0, int64_t b0, T* table) {
  constexpr int W = kLanes<T, V>;
  for (int v = 0; v < tv; ++v) {
    for (int d = 0; d < 3; ++d) {
      T* row = table + (row0 + 3 * v + d) * a.ld + b0;
      for (int i = 0; i < NV; ++i) vec_store(row + i * W, a.mean[3 * (n + v) + d] + acc[v][d][i]);
    }
  }
}

// Recomputes the un-posed shape of nv <= kGradBlockVerts vertices from n0
// for every batch lane: table rows 3 v + d, lanes as in coeffs_t. The same
// register tiles as the forward (each basis element loaded once per tile).
template <typename T, typename V>
PGN_ALWAYS_INLINE void shape_block(const SynthesizeArgs<T>& a, int64_t n0, int nv, T* table) {
  constexpr int W = kLanes<T, V>;
  const int64_t ld = a.ld;
  for (int v0 = 0; v0 < nv; v0 += 2) {
    const int tv = std::min(2, nv - v0);
    // Rows past the last vertex repeat it (their results are never stored).
    const T* rows[2];
    for (int v = 0; v < 2; ++v) rows[v] = a.basis + (n0 + v0 + std::min(v, tv - 1)) * 3 * a.K;
    int64_t b0 = 0;
    for (; ld - b0 >= 2 * W; b0 += 2 * W) {
      V acc[2][3][2];
      contract_basis_tile<T, V, 2, 2>(rows, a.coeffs_t + b0, ld, a.K, acc);
      store_shapes<T, V, 2>(a, acc, n0 + v0, tv, 3 * v0, b0, table);
    }
    for (; b0 < ld; b0 += W) {
      V acc[2][3][1];
      contract_basis_tile<T, V, 1, 2>(rows, a.coeffs_t + b0, ld, a.K, acc);
      store_shapes<T, V, 1>(a, acc, n0 + v0, tv, 3 * v0, b0, table);
    }
  }
}

// coeff[k0 + j, lanes] += sum_r basis_rows[r, k0 + j] gl[r, lanes] over the
// `rows` shape-gradient rows of a vertex block, for KB components and NV lane
// vectors from b0: KB * NV accumulators stay in registers for the whole
// block, each basis element is loaded once per tile and there is no
// load/store of the partial sums per component. Every lane sums over the
// rows in order, whatever the tile.
template <typename T, typename V, int NV, int KB>
PGN_ALWAYS_INLINE void coeff_grad_tile(const T* basis_rows, int64_t K, int64_t k0, const T* gl,
                                       int64_t rows, int64_t ld, int64_t b0, T* coeff,
                                       BlockPrefetcher<T>& prefetch) {
  constexpr int W = kLanes<T, V>;
  V acc[KB][NV];
  for (int j = 0; j < KB; ++j)
    for (int i = 0; i < NV; ++i) acc[j][i] = vec_load<V>(coeff + (k0 + j) * ld + b0 + i * W);
  for (int64_t r = 0; r < rows; ++r) {
    prefetch.step(kPrefetchesPerRow);
    V x[NV];
    for (int i = 0; i < NV; ++i) x[i] = vec_load<V>(gl + r * ld + b0 + i * W);
    const T* w = basis_rows + r * K + k0;
    for (int j = 0; j < KB; ++j) {
      const T wj = w[j];
      for (int i = 0; i < NV; ++i) acc[j][i] += wj * x[i];
    }
  }
  for (int j = 0; j < KB; ++j)
    for (int i = 0; i < NV; ++i) vec_store(coeff + (k0 + j) * ld + b0 + i * W, acc[j][i]);
}

// The last `rest` < KB components in one tile of exactly that many, so that
// they keep enough independent accumulators to hide the multiply-add latency.
template <typename T, typename V, int NV, int KB>
PGN_ALWAYS_INLINE void coeff_grad_rest(const T* basis_rows, int64_t K, int64_t k0, int rest,
                                       const T* gl, int64_t rows, int64_t ld, int64_t b0, T* coeff,
                                       BlockPrefetcher<T>& prefetch) {
  if constexpr (KB > 1) {
    if (rest == KB - 1) {
      coeff_grad_tile<T, V, NV, KB - 1>(basis_rows, K, k0, gl, rows, ld, b0, coeff, prefetch);
    } else {
      coeff_grad_rest<T, V, NV, KB - 1>(basis_rows, K, k0, rest, gl, rows, ld, b0, coeff, prefetch);
    }
  }
}

// All components for NV lane vectors from b0, in tiles of KB (then one of the rest).
template <typename T, typename V, int NV, int KB>
PGN_ALWAYS_INLINE void coeff_grad_block(const T* basis_rows, int64_t K, const T* gl, int64_t rows,
                                        int64_t ld, int64_t b0, T* coeff,
                                        BlockPrefetcher<T>& prefetch) {
  int64_t k0 = 0;
  for (; k0 + KB <= K; k0 += KB)
    coeff_grad_tile<T, V, NV, KB>(basis_rows, K, k0, gl, rows, ld, b0, coeff, prefetch);
  if (k0 < K)
    coeff_grad_rest<T, V, NV, KB>(basis_rows, K, k0, static_cast<int>(K - k0), gl, rows, ld, b0,
                                  coeff, prefetch);
}

// One chunk of vertices, a block of kGradBlockVerts at a time: transpose the
// upstream gradient g and the output lane-major (recomputing the shape for
// the recompute-path lanes), turn g into the shape-space gradient
// gl = s R^T g while adding g (x) q to the pose partial sums (q = out - t on
// the output path, the shape on the recompute path), then contract gl with
// the block's basis rows into the coefficient gradient. Each phase is a
// register tile of its own; the block's basis rows and tables stay in L1/L2
// between the phases, so the basis streams from memory once. Chunks own
// disjoint partial buffers and vertices, so there are no races and the result
// does not depend on the thread count (nor on the vector size: each lane's
// sums run in the same order). `tables` holds the
// thread's (3 or, with recompute, 4) x kGradBlockVerts * 3 x ld values, zero
// where a lane is past B.
template <typename T, int Bytes>
PGN_ALWAYS_INLINE void backward_chunks_impl(const SynthesizeGradArgs<T>& g, T* tables,
                                            int64_t chunk_begin, int64_t chunk_end) {
  using V = typename SimdOf<T, Bytes>::type;
  constexpr int W = kLanes<T, V>;
  const SynthesizeArgs<T>& a = g.in;
  const int64_t K = a.K, ld = a.ld;
  constexpr int64_t kRows = kGradBlockVerts * 3;
  // The tables: transposed grad_out, shape-space gradient, the points q
  // (transposed out, or shapes), recomputed shapes.
  T* go_t = tables;
  T* gl_t = go_t + kRows * ld;
  T* q_t = gl_t + kRows * ld;
  T* sh_t = q_t + kRows * ld;
  BlockPrefetcher<T> prefetch;
  for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
    T* pose_sum = g.pose_part + chunk * morphable::kPoseGradSize * ld;
    T* coeff = g.coeff_part + chunk * K * ld;
    const int64_t n_end = std::min(a.N, (chunk + 1) * g.chunk_verts);
    for (int64_t n0 = chunk * g.chunk_verts; n0 < n_end; n0 += kGradBlockVerts) {
      const int nv = static_cast<int>(std::min<int64_t>(kGradBlockVerts, n_end - n0));
      const int64_t rows = 3 * nv;
      // Lanes past B stay zero in go_t, so their gl and pose terms are zero.
      const int64_t next = std::min(a.N - n0 - nv, kGradBlockVerts);
      prefetch.start(g.grad_out, g.out, a.basis, a.B, a.N, K, n0 + nv, next);
      transpose_vertices<T, V>(g.grad_out, a.B, a.N, n0, nv, go_t, ld);
      transpose_vertices<T, V>(g.out, a.B, a.N, n0, nv, q_t, ld);
      if (g.recompute) {
        shape_block<T, V>(a, n0, nv, sh_t);
        for (int64_t b = 0; b < a.B; ++b) {
          if (g.path[b * morphable::kOutputPathSize + 9] != T(0)) continue;
          for (int64_t r = 0; r < rows; ++r) q_t[r * ld + b] = sh_t[r * ld + b];
        }
      }
      for (int64_t b0 = 0; b0 < ld; b0 += W) {
        V pose[kPoseRows];
        load_pose<T, V>(a, b0, pose);
        const V t_out[3] = {vec_load<V>(g.t_out + b0), vec_load<V>(g.t_out + ld + b0),
                            vec_load<V>(g.t_out + 2 * ld + b0)};
        V partial[morphable::kPoseGradSize];
        for (int e = 0; e < morphable::kPoseGradSize; ++e)
          partial[e] = vec_load<V>(pose_sum + e * ld + b0);
        for (int v = 0; v < nv; ++v) {
          V go[3], gl[3], q[3];
          for (int d = 0; d < 3; ++d) {
            go[d] = vec_load<V>(go_t + (3 * v + d) * ld + b0);
            q[d] = vec_load<V>(q_t + (3 * v + d) * ld + b0) - t_out[d];
          }
          morphable::shape_grad(pose, pose[9], go, gl);
          for (int d = 0; d < 3; ++d) vec_store(gl_t + (3 * v + d) * ld + b0, gl[d]);
          morphable::accumulate_pose_grad(go, q, partial);
        }
        for (int e = 0; e < morphable::kPoseGradSize; ++e)
          vec_store(pose_sum + e * ld + b0, partial[e]);
      }
      const T* basis_rows = a.basis + n0 * 3 * K;
      int64_t b0 = 0;
      for (; ld - b0 >= 2 * W; b0 += 2 * W)
        coeff_grad_block<T, V, 2, Tiles<Bytes>::kCoeffWide>(basis_rows, K, gl_t, rows, ld, b0,
                                                            coeff, prefetch);
      for (; b0 < ld; b0 += W)
        coeff_grad_block<T, V, 1, Tiles<Bytes>::kCoeffNarrow>(basis_rows, K, gl_t, rows, ld, b0,
                                                              coeff, prefetch);
      if (g.grad_mean != nullptr) {
        // Model gradients: each vertex is owned by this chunk, so plain adds.
        for (int64_t r = 0; r < rows; ++r) {
          const T* glr = gl_t + r * ld;
          T* gb = g.grad_basis + (n0 * 3 + r) * K;
          for (int64_t b = 0; b < a.B; ++b) {
            const T* c = a.coeffs + b * K;
            const T gvd = glr[b];
            g.grad_mean[n0 * 3 + r] += gvd;
            for (int64_t k = 0; k < K; ++k) gb[k] += gvd * c[k];
          }
        }
      }
      prefetch.finish();
    }
  }
}

template <typename T>
PGN_CPU_CLONES void backward_chunks(const SynthesizeGradArgs<T>& g, T* tables, int64_t chunk_begin,
                                    int64_t chunk_end) {
  backward_chunks_impl<T, 32>(g, tables, chunk_begin, chunk_end);
}

#ifdef PGN_CPU_V4
template <typename T>
PGN_CPU_V4 void backward_chunks_v4(const SynthesizeGradArgs<T>& g, T* tables, int64_t chunk_begin,
                                   int64_t chunk_end) {
  backward_chunks_impl<T, 64>(g, tables, chunk_begin, chunk_end);
}
#endif

// Vector size in bytes for a batch of B items of type T: 64 (AVX-512) where
// the CPU allows it and the batch fills more than one 256-bit vector (fewer
// would leave the wider vectors half idle at no gain), 32 otherwise.
template <typename T>
int vector_bytes(int64_t B) {
  return cpu_simd_width() >= 512 && B > Simd<T>::width ? 64 : 32;
}

// Copies per-item values src [B, rows] (contiguous) transposed into rows
// [rows, ld] of a lane-major table and returns the sum of their finite probes
// (common/status.h): the value check rides on this first read of the inputs.
template <typename T>
T pack_transposed(const T* src, int64_t B, int64_t rows, T* table, int64_t ld) {
  T probe = T(0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      const T x = src[b * rows + r];
      probe += finite_probe(x);
      table[r * ld + b] = x;
    }
  }
  return probe;
}

// Holds the lane-major tables the kernels read, and the argument struct.
template <typename T>
struct PreparedInputs {
  at::Tensor coeffs_t, pose_t;
  SynthesizeArgs<T> args;
};

// Packs coeffs and the pose into [K, ld] / [13, ld] tables zero-padded to a
// whole number of vectors of `bytes` bytes (so the vector loops never need a
// remainder) and, when status is given, ORs the value-check bits 1 coeffs,
// 2 rotation, 4 scale, 8 translation into it. These per-item inputs are
// B (K + 13) values that every vertex tile reads again, so they are checked
// once, here.
template <typename T>
PreparedInputs<T> prepare(const at::Tensor& mean, const at::Tensor& basis, const at::Tensor& coeffs,
                          const at::Tensor& rotation, const at::Tensor& scale,
                          const at::Tensor& translation, int bytes, int32_t* status) {
  const int64_t B = coeffs.size(0), K = basis.size(2);
  const int64_t W = bytes / static_cast<int64_t>(sizeof(T));
  const int64_t ld = (B + W - 1) / W * W;
  PreparedInputs<T> p;
  p.coeffs_t = at::zeros({K, ld}, coeffs.options());
  p.pose_t = at::zeros({kPoseRows, ld}, coeffs.options());
  T* ct = p.coeffs_t.template data_ptr<T>();
  T* pt = p.pose_t.template data_ptr<T>();
  const T probes[4] = {
      pack_transposed(coeffs.data_ptr<T>(), B, K, ct, ld),
      pack_transposed(rotation.data_ptr<T>(), B, 9, pt, ld),
      pack_transposed(scale.data_ptr<T>(), B, 1, pt + 9 * ld, ld),
      pack_transposed(translation.data_ptr<T>(), B, 3, pt + 10 * ld, ld),
  };
  if (status != nullptr) {
    int32_t bits = 0;
    for (int i = 0; i < 4; ++i)
      if (!sum_is_finite(probes[i])) bits |= 1 << i;
    if (bits) flag_status(status, bits);
  }
  SynthesizeArgs<T>& args = p.args;
  args.mean = mean.data_ptr<T>();
  args.basis = basis.data_ptr<T>();
  args.coeffs = coeffs.data_ptr<T>();
  args.coeffs_t = ct;
  args.pose_t = pt;
  args.B = B;
  args.N = mean.size(0);
  args.K = K;
  args.ld = ld;
  return p;
}

// Blocks of kBlockVerts vertices per piece of the forward's parallel loop:
// 128 vertices.
constexpr int64_t kForwardPieceBlocks = 32;

// Blocks per piece of the staged forward: kForwardPieceBlocks, fewer for
// large batches, so that a thread's two staging buffers stay within 1 MiB
// (in L2), but at least 4 (16 vertices, three lines per item and float).
template <typename T>
int64_t staged_piece_blocks(int64_t B) {
  const int64_t block_bytes = 2 * B * kBlockVerts * 3 * static_cast<int64_t>(sizeof(T));
  return std::clamp<int64_t>((int64_t{1} << 20) / block_bytes, 4, kForwardPieceBlocks);
}

// Vertices per backward chunk: depends on N only (never on the thread count),
// so the reduction order and hence the result is reproducible.
int64_t backward_chunk_verts(int64_t N) {
  const int64_t target_chunks = 64;
  int64_t verts = std::clamp<int64_t>((N + target_chunks - 1) / target_chunks, 64, 1024);
  return (verts + kGradBlockVerts - 1) / kGradBlockVerts * kGradBlockVerts;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> synthesize_cpu(const at::Tensor& mean_in,
                                                  const at::Tensor& basis_in,
                                                  const at::Tensor& coeffs_in,
                                                  const at::Tensor& rotation_in,
                                                  const at::Tensor& scale_in,
                                                  const at::Tensor& translation_in, int64_t check) {
  const auto call =
      synthesize_prologue(mean_in, basis_in, coeffs_in, rotation_in, scale_in, translation_in);
  const at::Tensor &mean = call.mean, &basis = call.basis, &coeffs = call.coeffs,
                   &rotation = call.rotation, &scale = call.scale, &translation = call.translation;
  const int64_t B = call.B, N = call.N;
  at::Tensor out = call.out;
  const at::Tensor status = new_status(mean_in, check);
  if (B == 0 || N == 0) return {out, status};
  // The value check rides on the kernels' first read of the per-item inputs;
  // the status word is acted on once they are done.
  int32_t* st = check == kCheckOff ? nullptr : status.data_ptr<int32_t>();
  if (B <= morphable_cpu::kSmallBatch) {
    morphable_cpu::synthesize_small_batch(mean, basis, coeffs, rotation, scale, translation, out,
                                          st);
  } else {
    AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_cpu", [&] {
      const int bytes = vector_bytes<scalar_t>(B);
      const auto prepared =
          prepare<scalar_t>(mean, basis, coeffs, rotation, scale, translation, bytes, st);
      scalar_t* out_ptr = out.data_ptr<scalar_t>();
      const int64_t blocks = (N + kBlockVerts - 1) / kBlockVerts;
      const auto run = [&](const OutRows<scalar_t>& rows, int64_t first, int64_t last,
                           StagedRows<scalar_t>* pending) {
#ifdef PGN_CPU_V4
        if (bytes == 64) return forward_blocks_v4(prepared.args, rows, first, last, pending);
#endif
        forward_blocks(prepared.args, rows, first, last, pending);
      };
      if (static_cast<int64_t>(out.nbytes()) < kStreamOutputBytes) {
        parallel_for_dynamic(blocks, kForwardPieceBlocks, [&](int64_t begin, int64_t end) {
          run({out_ptr, N * 3, 0}, begin, end, nullptr);
        });
        return;
      }
      // A large output leaves the cache anyway: each piece goes to one of two
      // staging buffers in L2 (kept by the thread for its next calls) and
      // streams out of it (common/cpu_stream.h)
      // while the thread computes its next piece into the other. Written in
      // place, every 48-byte run of an item's row reads its lines for
      // ownership first, and two threads write no faster than one.
      const bool whole_lines = stream_whole_lines();
      // One line of padding per row spreads the rows over the L1's sets.
      const int64_t piece_blocks = staged_piece_blocks<scalar_t>(B);
      const int64_t stride =
          piece_blocks * kBlockVerts * 3 + 64 / static_cast<int64_t>(sizeof(scalar_t));
      const int64_t rows_per_step = (B + piece_blocks - 1) / piece_blocks;
      struct Staging {
        StagedRows<scalar_t> pending;
        int64_t buffer = 0;
      };
      parallel_for_dynamic_with_state<Staging>(
          blocks, piece_blocks,
          [&](Staging& staging, int64_t first, int64_t last) {
            thread_local std::vector<scalar_t> buffers;
            if (static_cast<int64_t>(buffers.size()) < 2 * B * stride)
              buffers.resize(2 * B * stride);
            scalar_t* rows = buffers.data() + staging.buffer * B * stride;
            const int64_t n0 = first * kBlockVerts, nv = std::min(N, last * kBlockVerts) - n0;
            run({rows, stride, n0}, first, last, &staging.pending);
            staging.pending.finish();
            staging.pending = StagedRows<scalar_t>(rows, stride, B, nv * 3, out_ptr + n0 * 3, N * 3,
                                                   rows_per_step, whole_lines);
            staging.buffer ^= 1;
          },
          [](Staging& staging) {
            staging.pending.finish();
            stream_fence();
          });
    });
  }
  if (st != nullptr) synthesize_act_on_status(status, check, call);
  return {out, status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
synthesize_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& out_in,
                        const at::Tensor& mean_in, const at::Tensor& basis_in,
                        const at::Tensor& coeffs_in, const at::Tensor& rotation_in,
                        const at::Tensor& scale_in, const at::Tensor& translation_in,
                        bool need_model_grad) {
  const auto call = synthesize_backward_prologue(grad_out_in, out_in, mean_in, basis_in, coeffs_in,
                                                 rotation_in, scale_in, translation_in);
  const at::Tensor &mean = call.mean, &basis = call.basis, &coeffs = call.coeffs,
                   &rotation = call.rotation, &scale = call.scale, &translation = call.translation,
                   &grad_out = call.grad_out, &out = call.out;
  const int64_t B = call.B, N = call.N, K = call.K;
  const auto opts = mean.options();
  at::Tensor grad_mean = need_model_grad ? at::zeros({N, 3}, opts) : at::empty({0}, opts);
  at::Tensor grad_basis = need_model_grad ? at::zeros({N, 3, K}, opts) : at::empty({0}, opts);
  const at::Tensor &grad_coeffs = call.grad_coeffs, &grad_rotation = call.grad_rotation,
                   &grad_scale = call.grad_scale, &grad_translation = call.grad_translation;
  if (B == 0 || N == 0)
    return {grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation};

  const int64_t chunk_verts = backward_chunk_verts(N);
  const int64_t chunks = (N + chunk_verts - 1) / chunk_verts;
  // Each item's path (synthesize_kernel.h's output_path) and R^{-1}.
  at::Tensor path = at::zeros({B, morphable::kOutputPathSize}, opts);
  bool recompute = false;
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_backward_cpu", [&] {
    const scalar_t X = synthesize_model_scale(mean).item<scalar_t>();
    const scalar_t* R = rotation.data_ptr<scalar_t>();
    const scalar_t* s = scale.data_ptr<scalar_t>();
    const scalar_t* t = translation.data_ptr<scalar_t>();
    scalar_t* p = path.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      scalar_t* rec = p + b * morphable::kOutputPathSize;
      const bool output = morphable::output_path(R + 9 * b, s[b], t + 3 * b, X, rec);
      rec[9] = output ? scalar_t(1) : scalar_t(0);
      recompute = recompute || !output;
    }
  });
  at::Tensor pose;  // [B,12] reduced pose partial sums
  if (B <= morphable_cpu::kSmallBatch) {
    at::Tensor pose_part = at::zeros({chunks, B, morphable::kPoseGradSize}, opts);
    at::Tensor coeff_part = at::zeros({chunks, B, K}, opts);
    morphable_cpu::synthesize_backward_small_batch(grad_out, out, mean, basis, coeffs, rotation,
                                                   scale, translation, path, chunk_verts, pose_part,
                                                   coeff_part, grad_mean, grad_basis);
    grad_coeffs.copy_(coeff_part.sum(0));
    pose = pose_part.sum(0).contiguous();
  }
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_backward_cpu", [&] {
    const scalar_t* path_ptr = path.data_ptr<scalar_t>();
    if (!pose.defined()) {
      const int bytes = vector_bytes<scalar_t>(B);
      const auto prepared =
          prepare<scalar_t>(mean, basis, coeffs, rotation, scale, translation, bytes, nullptr);
      const int64_t ld = prepared.args.ld;
      // t of the output-path lanes, lane-major; 0 leaves the recompute-path lanes' shapes as they
      // are.
      at::Tensor t_out = at::zeros({3, ld}, opts);
      scalar_t* t_out_ptr = t_out.data_ptr<scalar_t>();
      const scalar_t* t = translation.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        if (path_ptr[b * morphable::kOutputPathSize + 9] == scalar_t(0)) continue;
        for (int d = 0; d < 3; ++d) t_out_ptr[d * ld + b] = t[3 * b + d];
      }
      at::Tensor pose_part = at::zeros({chunks, morphable::kPoseGradSize, ld}, opts);
      at::Tensor coeff_part = at::zeros({chunks, K, ld}, opts);
      SynthesizeGradArgs<scalar_t> g{prepared.args,
                                     grad_out.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>(),
                                     t_out_ptr,
                                     path_ptr,
                                     recompute,
                                     pose_part.data_ptr<scalar_t>(),
                                     coeff_part.data_ptr<scalar_t>(),
                                     need_model_grad ? grad_mean.data_ptr<scalar_t>() : nullptr,
                                     need_model_grad ? grad_basis.data_ptr<scalar_t>() : nullptr,
                                     chunk_verts};
      // Each thread's tables (backward_chunks_impl), made at its first chunk.
      const int64_t table_values = (recompute ? 4 : 3) * kGradBlockVerts * 3 * ld;
      parallel_for_dynamic_with_state<std::vector<scalar_t>>(
          chunks, 1,
          [&](std::vector<scalar_t>& tables, int64_t begin, int64_t end) {
            if (tables.empty()) tables.assign(table_values, scalar_t(0));
#ifdef PGN_CPU_V4
            if (bytes == 64) return backward_chunks_v4(g, tables.data(), begin, end);
#endif
            backward_chunks(g, tables.data(), begin, end);
          },
          [](std::vector<scalar_t>&) {});
      grad_coeffs.copy_(coeff_part.sum(0).narrow(1, 0, B).t());
      pose = pose_part.sum(0).narrow(1, 0, B).t().contiguous();
    }
    const scalar_t* pose_ptr = pose.data_ptr<scalar_t>();
    const scalar_t* R = rotation.data_ptr<scalar_t>();
    const scalar_t* s = scale.data_ptr<scalar_t>();
    scalar_t* gR = grad_rotation.data_ptr<scalar_t>();
    scalar_t* gs = grad_scale.data_ptr<scalar_t>();
    scalar_t* gt = grad_translation.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t* rec = path_ptr + b * morphable::kOutputPathSize;
      const scalar_t* acc = pose_ptr + b * morphable::kPoseGradSize;
      if (rec[9] != scalar_t(0)) {
        morphable::finish_pose_grad_output(acc, rec, R + 9 * b, s[b], gR + 9 * b, gs + b,
                                           gt + 3 * b);
      } else {
        morphable::finish_pose_grad(acc, R + 9 * b, s[b], gR + 9 * b, gs + b, gt + 3 * b);
      }
    }
  });
  return {grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation};
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("synthesize", &synthesize_cpu);
  m.impl("synthesize_backward", &synthesize_backward_cpu);
}

}  // namespace pgnface
