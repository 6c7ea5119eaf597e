// Small-batch schedule of the synthesize CPU twin; see synthesize_cpu_small_batch.h.
#include "synthesize_cpu_small_batch.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/cpu_parallel.h"
#include "../common/cpu_simd.h"
#include "../common/status.h"
#include "synthesize_kernel.h"

namespace pgnface {
namespace morphable_cpu {
namespace {

template <typename T>
PGN_ALWAYS_INLINE T hsum(typename Simd<T>::type v) {
  T sum = T(0);
  for (int i = 0; i < Simd<T>::width; ++i) sum += v[i];
  return sum;
}

template <typename T>
struct SmallArgs {
  const T *mean, *basis, *coeffs, *rotation, *scale, *translation;
  int64_t B, N, K;
};

// shape[d] = mean[n, d] + basis[n, d, :] . coeffs[b, :], the three dot
// products in one pass that loads each coefficient vector once.
template <typename T>
PGN_ALWAYS_INLINE void shape_point(const SmallArgs<T>& a, int64_t n, int64_t b, T shape[3]) {
  using V = typename Simd<T>::type;
  constexpr int W = Simd<T>::width;
  const int64_t K = a.K;
  const T* r = a.basis + 3 * n * K;
  const T* c = a.coeffs + b * K;
  V acc0{}, acc1{}, acc2{};
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    const V cv = simd_load(c + k);
    acc0 += simd_load(r + k) * cv;
    acc1 += simd_load(r + K + k) * cv;
    acc2 += simd_load(r + 2 * K + k) * cv;
  }
  T s0 = hsum<T>(acc0), s1 = hsum<T>(acc1), s2 = hsum<T>(acc2);
  for (; k < K; ++k) {
    s0 += r[k] * c[k];
    s1 += r[K + k] * c[k];
    s2 += r[2 * K + k] * c[k];
  }
  shape[0] = a.mean[3 * n] + s0;
  shape[1] = a.mean[3 * n + 1] + s1;
  shape[2] = a.mean[3 * n + 2] + s2;
}

// The value check (status bits 1 coeffs, 2 rotation, 4 scale, 8 translation)
// of the B (K + 13) per-item values, made by the task that reads them first.
template <typename T>
void check_items(const SmallArgs<T>& a, int32_t* status) {
  const int64_t sizes[4] = {a.B * a.K, 9 * a.B, a.B, 3 * a.B};
  const T* values[4] = {a.coeffs, a.rotation, a.scale, a.translation};
  int32_t bits = 0;
  for (int i = 0; i < 4; ++i)
    if (!finite_share(values[i], sizes[i], 0, 1)) bits |= 1 << i;
  if (bits) flag_status(status, bits);
}

template <typename T>
PGN_CPU_CLONES void forward_vertices(const SmallArgs<T>& a, T* out, int64_t begin, int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    for (int64_t b = 0; b < a.B; ++b) {
      T shape[3];
      shape_point(a, n, b, shape);
      morphable::transform_point(a.rotation + 9 * b, a.scale[b], a.translation + 3 * b, shape,
                                 out + (b * a.N + n) * 3);
    }
  }
}

template <typename T>
struct SmallGradArgs {
  SmallArgs<T> in;
  const T *grad_out, *out, *path;
  T *pose_part, *coeff_part, *grad_mean, *grad_basis;
  int64_t chunk_verts;
};

// One vertex and batch item of the backward: the shape-space gradient
// gl = s R^T g does not depend on the shape, so one pass over the components
// accumulates the coefficient gradient (and with Model the basis gradient)
// and, with Shape (the recompute path), recomputes the shape (three dot
// products), loading each basis element once. Without Shape the pose partial
// sums take p = out - t (the output path).
template <typename T, bool Model, bool Shape>
PGN_ALWAYS_INLINE void backward_point(const SmallGradArgs<T>& g, int64_t n, int64_t b, T* pose,
                                      T* coeff) {
  using V = typename Simd<T>::type;
  constexpr int W = Simd<T>::width;
  const SmallArgs<T>& a = g.in;
  const int64_t K = a.K;
  const T* go = g.grad_out + (b * a.N + n) * 3;
  T gl[3];
  morphable::shape_grad(a.rotation + 9 * b, a.scale[b], go, gl);
  const T* r = a.basis + 3 * n * K;
  const T* c = a.coeffs + b * K;
  T* gb = Model ? g.grad_basis + 3 * n * K : nullptr;
  V acc0{}, acc1{}, acc2{};
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    const V r0 = simd_load(r + k), r1 = simd_load(r + K + k), r2 = simd_load(r + 2 * K + k);
    if constexpr (Shape || Model) {
      const V cv = simd_load(c + k);
      if constexpr (Shape) {
        acc0 += r0 * cv;
        acc1 += r1 * cv;
        acc2 += r2 * cv;
      }
      if constexpr (Model) {
        for (int d = 0; d < 3; ++d)
          simd_store(gb + d * K + k, simd_load(gb + d * K + k) + gl[d] * cv);
      }
    }
    simd_store(coeff + k, simd_load(coeff + k) + gl[0] * r0 + gl[1] * r1 + gl[2] * r2);
  }
  T q[3];
  if constexpr (Shape) {
    q[0] = hsum<T>(acc0);
    q[1] = hsum<T>(acc1);
    q[2] = hsum<T>(acc2);
  }
  for (; k < K; ++k) {
    if constexpr (Shape) {
      q[0] += r[k] * c[k];
      q[1] += r[K + k] * c[k];
      q[2] += r[2 * K + k] * c[k];
    }
    coeff[k] += gl[0] * r[k] + gl[1] * r[K + k] + gl[2] * r[2 * K + k];
    if constexpr (Model) {
      for (int d = 0; d < 3; ++d) gb[d * K + k] += gl[d] * c[k];
    }
  }
  if constexpr (Shape) {
    for (int d = 0; d < 3; ++d) q[d] += a.mean[3 * n + d];
  } else {
    const T* o = g.out + (b * a.N + n) * 3;
    for (int d = 0; d < 3; ++d) q[d] = o[d] - a.translation[3 * b + d];
  }
  morphable::accumulate_pose_grad(go, q, pose);
  if constexpr (Model) {
    for (int d = 0; d < 3; ++d) g.grad_mean[3 * n + d] += gl[d];
  }
}

template <typename T, bool Model>
PGN_ALWAYS_INLINE void backward_item(const SmallGradArgs<T>& g, int64_t n, int64_t b, T* pose,
                                     T* coeff) {
  if (g.path[b * morphable::kOutputPathSize + 9] != T(0))
    backward_point<T, Model, false>(g, n, b, pose, coeff);
  else
    backward_point<T, Model, true>(g, n, b, pose, coeff);
}

template <typename T>
PGN_CPU_CLONES void backward_chunks(const SmallGradArgs<T>& g, int64_t begin, int64_t end) {
  const SmallArgs<T>& a = g.in;
  const int64_t K = a.K;
  for (int64_t chunk = begin; chunk < end; ++chunk) {
    T* pose = g.pose_part + chunk * a.B * morphable::kPoseGradSize;
    T* coeff = g.coeff_part + chunk * a.B * K;
    const int64_t n_end = std::min(a.N, (chunk + 1) * g.chunk_verts);
    for (int64_t n = chunk * g.chunk_verts; n < n_end; ++n) {
      for (int64_t b = 0; b < a.B; ++b) {
        T* pose_b = pose + b * morphable::kPoseGradSize;
        if (g.grad_mean != nullptr)
          backward_item<T, true>(g, n, b, pose_b, coeff + b * K);
        else
          backward_item<T, false>(g, n, b, pose_b, coeff + b * K);
      }
    }
  }
}

template <typename T>
SmallArgs<T> small_args(const at::Tensor& mean, const at::Tensor& basis, const at::Tensor& coeffs,
                        const at::Tensor& rotation, const at::Tensor& scale,
                        const at::Tensor& translation) {
  SmallArgs<T> a;
  a.mean = mean.data_ptr<T>();
  a.basis = basis.data_ptr<T>();
  a.coeffs = coeffs.data_ptr<T>();
  a.rotation = rotation.data_ptr<T>();
  a.scale = scale.data_ptr<T>();
  a.translation = translation.defined() ? translation.data_ptr<T>() : nullptr;
  a.B = coeffs.size(0);
  a.N = mean.size(0);
  a.K = basis.size(2);
  return a;
}

}  // namespace

void synthesize_small_batch(const at::Tensor& mean, const at::Tensor& basis,
                            const at::Tensor& coeffs, const at::Tensor& rotation,
                            const at::Tensor& scale, const at::Tensor& translation, at::Tensor& out,
                            int32_t* status) {
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_small_batch", [&] {
    const auto a = small_args<scalar_t>(mean, basis, coeffs, rotation, scale, translation);
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    parallel_for_dynamic(a.N, 256, [&](int64_t begin, int64_t end) {
      if (begin == 0 && status != nullptr) check_items(a, status);
      forward_vertices(a, out_ptr, begin, end);
    });
  });
}

void synthesize_backward_small_batch(const at::Tensor& grad_out, const at::Tensor& out,
                                     const at::Tensor& mean, const at::Tensor& basis,
                                     const at::Tensor& coeffs, const at::Tensor& rotation,
                                     const at::Tensor& scale, const at::Tensor& translation,
                                     const at::Tensor& path, int64_t chunk_verts,
                                     at::Tensor& pose_part, at::Tensor& coeff_part,
                                     at::Tensor& grad_mean, at::Tensor& grad_basis) {
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_backward_small_batch", [&] {
    SmallGradArgs<scalar_t> g;
    g.in = small_args<scalar_t>(mean, basis, coeffs, rotation, scale, translation);
    g.grad_out = grad_out.data_ptr<scalar_t>();
    g.out = out.data_ptr<scalar_t>();
    g.path = path.data_ptr<scalar_t>();
    g.pose_part = pose_part.data_ptr<scalar_t>();
    g.coeff_part = coeff_part.data_ptr<scalar_t>();
    const bool model = grad_mean.defined() && grad_mean.numel() > 0;
    g.grad_mean = model ? grad_mean.data_ptr<scalar_t>() : nullptr;
    g.grad_basis = model ? grad_basis.data_ptr<scalar_t>() : nullptr;
    g.chunk_verts = chunk_verts;
    parallel_for_dynamic(pose_part.size(0), 1,
                         [&](int64_t begin, int64_t end) { backward_chunks(g, begin, end); });
  });
}

}  // namespace morphable_cpu
}  // namespace pgnface
