// Small-batch schedule of the synthesize CPU twin; see synthesize_cpu_small_batch.h.
#include "synthesize_cpu_small_batch.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/cpu_simd.h"
#include "synthesize_kernel.h"

namespace pgnface {
namespace morphable_cpu {
namespace {

template <typename T>
PGN_ALWAYS_INLINE T dot(const T* a, const T* b, int64_t K) {
  using V = typename Simd<T>::type;
  constexpr int W = Simd<T>::width;
  V acc0{}, acc1{};
  int64_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    acc0 += simd_load(a + k) * simd_load(b + k);
    acc1 += simd_load(a + k + W) * simd_load(b + k + W);
  }
  for (; k + W <= K; k += W) acc0 += simd_load(a + k) * simd_load(b + k);
  const V acc = acc0 + acc1;
  T sum = T(0);
  for (int i = 0; i < W; ++i) sum += acc[i];
  for (; k < K; ++k) sum += a[k] * b[k];
  return sum;
}

// y += alpha * x over K values.
template <typename T>
PGN_ALWAYS_INLINE void axpy(T alpha, const T* x, T* y, int64_t K) {
  constexpr int W = Simd<T>::width;
  int64_t k = 0;
  for (; k + W <= K; k += W) simd_store(y + k, simd_load(y + k) + alpha * simd_load(x + k));
  for (; k < K; ++k) y[k] += alpha * x[k];
}

template <typename T>
struct SmallArgs {
  const T *mean, *basis, *coeffs, *rotation, *scale, *translation;
  int64_t B, N, K;
};

// shape[d] = mean[n, d] + basis[n, d, :] . coeffs[b, :]
template <typename T>
PGN_ALWAYS_INLINE void shape_point(const SmallArgs<T>& a, int64_t n, int64_t b, T shape[3]) {
  for (int d = 0; d < 3; ++d)
    shape[d] = a.mean[3 * n + d] + dot(a.basis + (3 * n + d) * a.K, a.coeffs + b * a.K, a.K);
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
  const T* grad_out;
  T *pose_part, *coeff_part, *grad_mean, *grad_basis;
  int64_t chunk_verts;
};

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
        T shape[3], gl[3];
        shape_point(a, n, b, shape);
        const T* go = g.grad_out + (b * a.N + n) * 3;
        morphable::shape_grad(a.rotation + 9 * b, a.scale[b], go, gl);
        morphable::accumulate_pose_grad(go, shape, pose + b * morphable::kPoseGradSize);
        for (int d = 0; d < 3; ++d) {
          axpy(gl[d], a.basis + (3 * n + d) * K, coeff + b * K, K);
          if (g.grad_mean != nullptr) {
            g.grad_mean[3 * n + d] += gl[d];
            axpy(gl[d], a.coeffs + b * K, g.grad_basis + (3 * n + d) * K, K);
          }
        }
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
                            const at::Tensor& scale, const at::Tensor& translation,
                            at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_small_batch", [&] {
    const auto a = small_args<scalar_t>(mean, basis, coeffs, rotation, scale, translation);
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    at::parallel_for(0, a.N, 64,
                     [&](int64_t begin, int64_t end) { forward_vertices(a, out_ptr, begin, end); });
  });
}

void synthesize_backward_small_batch(const at::Tensor& grad_out, const at::Tensor& mean,
                                     const at::Tensor& basis, const at::Tensor& coeffs,
                                     const at::Tensor& rotation, const at::Tensor& scale,
                                     int64_t chunk_verts, at::Tensor& pose_part,
                                     at::Tensor& coeff_part, at::Tensor& grad_mean,
                                     at::Tensor& grad_basis) {
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "synthesize_backward_small_batch", [&] {
    SmallGradArgs<scalar_t> g;
    g.in = small_args<scalar_t>(mean, basis, coeffs, rotation, scale, at::Tensor());
    g.grad_out = grad_out.data_ptr<scalar_t>();
    g.pose_part = pose_part.data_ptr<scalar_t>();
    g.coeff_part = coeff_part.data_ptr<scalar_t>();
    const bool model = grad_mean.defined() && grad_mean.numel() > 0;
    g.grad_mean = model ? grad_mean.data_ptr<scalar_t>() : nullptr;
    g.grad_basis = model ? grad_basis.data_ptr<scalar_t>() : nullptr;
    g.chunk_verts = chunk_verts;
    at::parallel_for(0, pose_part.size(0), 1,
                     [&](int64_t begin, int64_t end) { backward_chunks(g, begin, end); });
  });
}

}  // namespace morphable_cpu
}  // namespace pgnface
