// CPU twin of the fused 3DMM vertex synthesis op.
//
// Scheduling (batches above synthesize_cpu_small_batch.h's kSmallBatch; smaller
// ones take the schedule there): parallel over vertices (at::parallel_for). A micro-tile is two
// vertices x kLanes batch items; each basis element is loaded once per tile and
// multiplied against kLanes coefficients held in a [K, B_pad] transposed copy,
// so the basis streams from memory once for the whole batch and the inner loop
// vectorises over batch items. The mean add and the pose transform happen in
// the same pass (synthesize_kernel.h), so no intermediate [B,N,3] is written.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/cpu_simd.h"
#include "../common/status.h"
#include "../common/status_host.h"
#include "synthesize.h"
#include "synthesize_cpu_small_batch.h"
#include "synthesize_kernel.h"

namespace pgnface {

namespace {

// Batch items per micro-tile: two 256-bit vectors' worth.
template <typename T>
constexpr int kLanes = 2 * Simd<T>::width;
constexpr int kTileVerts = 2;
// Rows of the lane-major pose table: R (9, row-major), s, t (3).
constexpr int kPoseRows = 13;

template <typename T>
struct SynthesizeArgs {
  const T* mean;      // [N,3]
  const T* basis;     // [N,3,K]
  const T* coeffs;    // [B,K]
  const T* coeffs_t;  // [K,ld] coeffs transposed, zero-padded to ld columns
  const T* pose_t;    // [13,ld] R, s, t transposed, zero-padded to ld columns
  int64_t B, N, K, ld;
};

// One micro-tile's batch lanes as kLanes / width vectors.
template <typename T>
struct Lanes {
  using V = typename Simd<T>::type;
  static constexpr int W = Simd<T>::width;
  static constexpr int NV = kLanes<T> / W;
};

// acc[v][d][i] = sum_k basis[n_v, d, k] * coeffs[b0 + lanes of vector i, k]
// for the two vertex rows of one micro-tile; coeffs_t already points at
// column b0. The 12 accumulators stay in vector registers.
template <typename T>
PGN_ALWAYS_INLINE void contract_basis_tile(const T* const rows[kTileVerts], const T* coeffs_t,
                                           int64_t ld, int64_t K,
                                           typename Lanes<T>::V acc[kTileVerts][3][Lanes<T>::NV]) {
  using V = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W, NV = Lanes<T>::NV;
  for (int v = 0; v < kTileVerts; ++v)
    for (int d = 0; d < 3; ++d)
      for (int i = 0; i < NV; ++i) acc[v][d][i] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V c[NV];
    for (int i = 0; i < NV; ++i) c[i] = simd_load(coeffs_t + k * ld + i * W);
    for (int v = 0; v < kTileVerts; ++v) {
      for (int d = 0; d < 3; ++d) {
        const T w = rows[v][d * K + k];
        for (int i = 0; i < NV; ++i) acc[v][d][i] += w * c[i];
      }
    }
  }
}

// Basis rows of the micro-tile starting at vertex n0; a missing second vertex
// repeats the first (its results are never used).
template <typename T>
PGN_ALWAYS_INLINE void tile_rows(const SynthesizeArgs<T>& a, int64_t n0, int nv,
                                 const T* rows[kTileVerts]) {
  rows[0] = a.basis + n0 * 3 * a.K;
  rows[1] = a.basis + (n0 + nv - 1) * 3 * a.K;
}

// Loads the pose of lane vector i of the batch tile at b0 from the pose table.
template <typename T>
PGN_ALWAYS_INLINE void load_pose(const SynthesizeArgs<T>& a, int64_t b0, int i,
                                 typename Lanes<T>::V pose[kPoseRows]) {
  for (int r = 0; r < kPoseRows; ++r)
    pose[r] = simd_load(a.pose_t + r * a.ld + b0 + i * Lanes<T>::W);
}

// Entry points are compiled once per ISA and picked at load time (PGN_CPU_CLONES).
template <typename T>
PGN_CPU_CLONES void forward_tiles(const SynthesizeArgs<T>& a, T* out, int64_t tile_begin,
                                  int64_t tile_end) {
  using V = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W, NV = Lanes<T>::NV;
  V acc[kTileVerts][3][NV];
  const T* rows[kTileVerts];
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t n0 = tile * kTileVerts;
    const int nv = static_cast<int>(std::min<int64_t>(kTileVerts, a.N - n0));
    tile_rows(a, n0, nv, rows);
    for (int64_t b0 = 0; b0 < a.B; b0 += kLanes<T>) {
      contract_basis_tile<T>(rows, a.coeffs_t + b0, a.ld, a.K, acc);
      for (int i = 0; i < NV; ++i) {
        const int64_t bi = b0 + i * W;
        if (bi >= a.B) break;
        V pose[kPoseRows];
        load_pose(a, b0, i, pose);
        const int nb = static_cast<int>(std::min<int64_t>(W, a.B - bi));
        for (int v = 0; v < nv; ++v) {
          const int64_t n = n0 + v;
          const V shape[3] = {a.mean[3 * n] + acc[v][0][i], a.mean[3 * n + 1] + acc[v][1][i],
                              a.mean[3 * n + 2] + acc[v][2][i]};
          V posed[3];
          morphable::transform_point(pose, pose[9], pose + 10, shape, posed);
          for (int j = 0; j < nb; ++j) {
            T* o = out + ((bi + j) * a.N + n) * 3;
            o[0] = posed[0][j];
            o[1] = posed[1][j];
            o[2] = posed[2][j];
          }
        }
      }
    }
  }
}

template <typename T>
struct SynthesizeGradArgs {
  SynthesizeArgs<T> in;
  const T* grad_out;  // [B,N,3]
  T* pose_part;       // [chunks,12,ld] per-chunk pose partial sums, lane-major
  T* coeff_part;      // [chunks,K,ld] per-chunk coefficient-gradient partial sums
  T* grad_mean;       // [N,3] or nullptr
  T* grad_basis;      // [N,3,K] or nullptr
  int64_t chunk_verts;
};

// One chunk of vertices: recompute the shape tile, turn the upstream gradient
// into the shape-space gradient gl = s R^T g, and accumulate the chunk's
// partial sums. Chunks own disjoint partial buffers and vertices, so there are
// no races and the result does not depend on the thread count.
template <typename T>
PGN_CPU_CLONES void backward_chunks(const SynthesizeGradArgs<T>& g, int64_t chunk_begin,
                                    int64_t chunk_end) {
  using V = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W, NV = Lanes<T>::NV;
  const SynthesizeArgs<T>& a = g.in;
  const int64_t K = a.K, ld = a.ld;
  V acc[kTileVerts][3][NV];
  V gl[kTileVerts][3][NV];
  const T* rows[kTileVerts];
  for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
    T* pose_sum = g.pose_part + chunk * morphable::kPoseGradSize * ld;
    T* coeff = g.coeff_part + chunk * K * ld;
    const int64_t n_end = std::min(a.N, (chunk + 1) * g.chunk_verts);
    for (int64_t n0 = chunk * g.chunk_verts; n0 < n_end; n0 += kTileVerts) {
      const int nv = static_cast<int>(std::min<int64_t>(kTileVerts, n_end - n0));
      tile_rows(a, n0, nv, rows);
      for (int64_t b0 = 0; b0 < a.B; b0 += kLanes<T>) {
        contract_basis_tile<T>(rows, a.coeffs_t + b0, ld, K, acc);
        for (int v = 0; v < kTileVerts; ++v)
          for (int d = 0; d < 3; ++d)
            for (int i = 0; i < NV; ++i) gl[v][d][i] = V{};
        for (int i = 0; i < NV; ++i) {
          const int64_t bi = b0 + i * W;
          if (bi >= a.B) break;
          const int nb = static_cast<int>(std::min<int64_t>(W, a.B - bi));
          V pose[kPoseRows];
          load_pose(a, b0, i, pose);
          V partial[morphable::kPoseGradSize];
          for (int e = 0; e < morphable::kPoseGradSize; ++e)
            partial[e] = simd_load(pose_sum + e * ld + bi);
          for (int v = 0; v < nv; ++v) {
            const int64_t n = n0 + v;
            V go[3] = {V{}, V{}, V{}};
            for (int j = 0; j < nb; ++j) {
              const T* src = g.grad_out + ((bi + j) * a.N + n) * 3;
              go[0][j] = src[0];
              go[1][j] = src[1];
              go[2][j] = src[2];
            }
            const V shape[3] = {a.mean[3 * n] + acc[v][0][i], a.mean[3 * n + 1] + acc[v][1][i],
                                a.mean[3 * n + 2] + acc[v][2][i]};
            V gs[3];
            morphable::shape_grad(pose, pose[9], go, gs);
            gl[v][0][i] = gs[0];
            gl[v][1][i] = gs[1];
            gl[v][2][i] = gs[2];
            morphable::accumulate_pose_grad(go, shape, partial);
          }
          for (int e = 0; e < morphable::kPoseGradSize; ++e)
            simd_store(pose_sum + e * ld + bi, partial[e]);
        }
        // coeff[k][b0 + lanes] += sum_{v,d} basis[n_v, d, k] * gl[v][d]
        for (int64_t k = 0; k < K; ++k) {
          T* row = coeff + k * ld + b0;
          V sum[NV];
          for (int i = 0; i < NV; ++i) sum[i] = simd_load(row + i * W);
          for (int v = 0; v < kTileVerts; ++v) {
            for (int d = 0; d < 3; ++d) {
              const T w = rows[v][d * K + k];
              for (int i = 0; i < NV; ++i) sum[i] += w * gl[v][d][i];
            }
          }
          for (int i = 0; i < NV; ++i) simd_store(row + i * W, sum[i]);
        }
        if (g.grad_mean != nullptr) {
          // Model gradients: each vertex is owned by this chunk, so plain adds.
          const int nb = static_cast<int>(std::min<int64_t>(kLanes<T>, a.B - b0));
          for (int v = 0; v < nv; ++v) {
            const int64_t n = n0 + v;
            for (int j = 0; j < nb; ++j) {
              const T* c = a.coeffs + (b0 + j) * K;
              for (int d = 0; d < 3; ++d) {
                const T gvd = gl[v][d][j / W][j % W];
                g.grad_mean[3 * n + d] += gvd;
                T* gb = g.grad_basis + (3 * n + d) * K;
                for (int64_t k = 0; k < K; ++k) gb[k] += gvd * c[k];
              }
            }
          }
        }
      }
    }
  }
}

// [rows, ld] transposed copy of a [B, rows] matrix, zero-padded to a whole
// number of micro-tile lanes so the vector loops never need a remainder.
at::Tensor lane_major(const at::Tensor& per_item, int64_t lanes) {
  const int64_t B = per_item.size(0), rows = per_item.size(1);
  const int64_t ld = (B + lanes - 1) / lanes * lanes;
  at::Tensor table = at::zeros({rows, ld}, per_item.options());
  table.narrow(1, 0, B).copy_(per_item.t());
  return table;
}

// Holds the lane-major tables the kernels read, and the argument struct.
template <typename T>
struct PreparedInputs {
  at::Tensor coeffs_t, pose_t;
  SynthesizeArgs<T> args;
};

template <typename T>
PreparedInputs<T> prepare(const at::Tensor& mean, const at::Tensor& basis, const at::Tensor& coeffs,
                          const at::Tensor& rotation, const at::Tensor& scale,
                          const at::Tensor& translation) {
  const int64_t B = coeffs.size(0);
  PreparedInputs<T> p;
  p.coeffs_t = lane_major(coeffs, kLanes<T>);
  p.pose_t = lane_major(at::cat({rotation.reshape({B, 9}), scale.reshape({B, 1}), translation}, 1),
                        kLanes<T>);
  SynthesizeArgs<T>& args = p.args;
  args.mean = mean.data_ptr<T>();
  args.basis = basis.data_ptr<T>();
  args.coeffs = coeffs.data_ptr<T>();
  args.coeffs_t = p.coeffs_t.template data_ptr<T>();
  args.pose_t = p.pose_t.template data_ptr<T>();
  args.B = B;
  args.N = mean.size(0);
  args.K = basis.size(2);
  args.ld = p.coeffs_t.size(1);
  return p;
}

// The value check of synthesize: the per-item inputs are B (K + 13) values
// that every vertex tile reads again, so the CPU twin checks them once up front
// (raising before any work); the CUDA kernel splits the same check over its
// first vertex tile. Status bits 1 coeffs, 2 rotation, 4 scale, 8 translation.
void check_item_inputs(const at::Tensor& coeffs, const at::Tensor& rotation,
                       const at::Tensor& scale, const at::Tensor& translation, int32_t* status) {
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "synthesize_check", [&] {
    int32_t bits = 0;
    const at::Tensor* inputs[4] = {&coeffs, &rotation, &scale, &translation};
    for (int i = 0; i < 4; ++i) {
      if (!finite_share(inputs[i]->data_ptr<scalar_t>(), inputs[i]->numel(), 0, 1)) bits |= 1 << i;
    }
    if (bits) flag_status(status, bits);
  });
}

// Vertices per backward chunk: depends on N only (never on the thread count),
// so the reduction order and hence the result is reproducible.
int64_t backward_chunk_verts(int64_t N) {
  const int64_t target_chunks = 64;
  int64_t verts = std::clamp<int64_t>((N + target_chunks - 1) / target_chunks, 64, 1024);
  return (verts + kTileVerts - 1) / kTileVerts * kTileVerts;
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
  if (check != kCheckOff) {
    check_item_inputs(coeffs, rotation, scale, translation, status.data_ptr<int32_t>());
    synthesize_act_on_status(status, check, call);
  }
  if (B <= morphable_cpu::kSmallBatch) {
    morphable_cpu::synthesize_small_batch(mean, basis, coeffs, rotation, scale, translation, out);
    return {out, status};
  }
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_cpu", [&] {
    const auto prepared = prepare<scalar_t>(mean, basis, coeffs, rotation, scale, translation);
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    const int64_t tiles = (N + kTileVerts - 1) / kTileVerts;
    at::parallel_for(0, tiles, 16, [&](int64_t begin, int64_t end) {
      forward_tiles(prepared.args, out_ptr, begin, end);
    });
  });
  return {out, status};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
synthesize_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& mean_in,
                        const at::Tensor& basis_in, const at::Tensor& coeffs_in,
                        const at::Tensor& rotation_in, const at::Tensor& scale_in,
                        const at::Tensor& translation_in, bool need_model_grad) {
  const auto call = synthesize_backward_prologue(grad_out_in, mean_in, basis_in, coeffs_in,
                                                 rotation_in, scale_in, translation_in);
  const at::Tensor &mean = call.mean, &basis = call.basis, &coeffs = call.coeffs,
                   &rotation = call.rotation, &scale = call.scale, &translation = call.translation,
                   &grad_out = call.grad_out;
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
  at::Tensor pose;  // [B,12] reduced pose partial sums
  if (B <= morphable_cpu::kSmallBatch) {
    at::Tensor pose_part = at::zeros({chunks, B, morphable::kPoseGradSize}, opts);
    at::Tensor coeff_part = at::zeros({chunks, B, K}, opts);
    morphable_cpu::synthesize_backward_small_batch(grad_out, mean, basis, coeffs, rotation, scale,
                                                   chunk_verts, pose_part, coeff_part, grad_mean,
                                                   grad_basis);
    grad_coeffs.copy_(coeff_part.sum(0));
    pose = pose_part.sum(0).contiguous();
  }
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_backward_cpu", [&] {
    if (!pose.defined()) {
      const auto prepared = prepare<scalar_t>(mean, basis, coeffs, rotation, scale, translation);
      const int64_t ld = prepared.args.ld;
      at::Tensor pose_part = at::zeros({chunks, morphable::kPoseGradSize, ld}, opts);
      at::Tensor coeff_part = at::zeros({chunks, K, ld}, opts);
      SynthesizeGradArgs<scalar_t> g{prepared.args,
                                     grad_out.data_ptr<scalar_t>(),
                                     pose_part.data_ptr<scalar_t>(),
                                     coeff_part.data_ptr<scalar_t>(),
                                     need_model_grad ? grad_mean.data_ptr<scalar_t>() : nullptr,
                                     need_model_grad ? grad_basis.data_ptr<scalar_t>() : nullptr,
                                     chunk_verts};
      at::parallel_for(0, chunks, 1,
                       [&](int64_t begin, int64_t end) { backward_chunks(g, begin, end); });
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
      morphable::finish_pose_grad(pose_ptr + b * morphable::kPoseGradSize, R + 9 * b, s[b],
                                  gR + 9 * b, gs + b, gt + 3 * b);
    }
  });
  return {grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation};
}

TORCH_LIBRARY_IMPL(pgnface, CPU, m) {
  m.impl("synthesize", &synthesize_cpu);
  m.impl("synthesize_backward", &synthesize_backward_cpu);
}

}  // namespace pgnface
