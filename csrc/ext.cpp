// Operator schemas of the pgnface library, its build metadata ops, and the
// importable module pgnface._C.
//
// Every op is declared here once with TORCH_LIBRARY; implementations register
// themselves per device in <op>/<op>_cpu.cpp / <op>/<op>_cuda.cu with
// TORCH_LIBRARY_IMPL. Fake (meta) kernels and autograd formulas are registered
// from Python (pgnface/ops/<op>.py), so the ops work under torch.compile and
// torch.export. No kernels live in this file.
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "common/cpu_pool.h"
#include "common/cpu_simd.h"

#ifndef PGN_TORCH_VERSION
#define PGN_TORCH_VERSION "unknown"
#endif

namespace {

bool cuda_built() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string torch_version_built() { return PGN_TORCH_VERSION; }

std::atomic<bool> cpu_simd_on{true};

// Switches the CPU twins' SIMD-across-the-batch paths on or off; returns the
// previous setting. Off, they run the scalar per-element code (what CUDA runs),
// which the tests compare the SIMD paths with.
bool set_cpu_simd(bool enabled) { return cpu_simd_on.exchange(enabled); }

// Widest vectors (bits) this build and CPU run: 512 where the PGN_CPU_V4
// kernels are compiled in and the CPU (and OS) support AVX-512 F/BW/DQ/VL.
int64_t max_cpu_simd_width() {
#ifdef PGN_CPU_V4
  static const bool v4 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return v4 ? 512 : 256;
#else
  return 256;
#endif
}

std::atomic<int> cpu_simd_width_limit{512};

// Limits the CPU twins' vectors to 256 or 512 bits; returns the previous limit.
// Tests use it to reach the 256-bit kernels on a CPU with AVX-512.
int64_t set_cpu_simd_width(int64_t bits) {
  TORCH_CHECK(bits == 256 || bits == 512, "set_cpu_simd_width: bits must be 256 or 512, got ",
              bits);
  return cpu_simd_width_limit.exchange(static_cast<int>(bits));
}

}  // namespace

namespace pgnface {
bool cpu_simd_enabled() { return cpu_simd_on.load(std::memory_order_relaxed); }
int cpu_simd_width() {
  return static_cast<int>(std::min<int64_t>(max_cpu_simd_width(),
                                            cpu_simd_width_limit.load(std::memory_order_relaxed)));
}
}  // namespace pgnface

TORCH_LIBRARY(pgnface, m) {
  // Build metadata: whether the CUDA kernels were compiled in, and the torch
  // version this library was compiled against.
  m.def("cuda_built() -> bool", &cuda_built);
  m.def("torch_version_built() -> str", &torch_version_built);
  // Test control: SIMD paths of the CPU twins on (the default) or off.
  m.def("set_cpu_simd(bool enabled) -> bool", &set_cpu_simd);
  // Test control: the CPU twins' widest vectors, 256 or 512 bits (the default:
  // 512 where max_cpu_simd_width allows), and what this build and CPU allow.
  m.def("set_cpu_simd_width(int bits) -> int", &set_cpu_simd_width);
  m.def("max_cpu_simd_width() -> int", &max_cpu_simd_width);
  // The CPU twins' parallel loops on pgnface's thread pool (true) or on
  // torch's OpenMP threads (false, the default); returns the previous setting.
  // See csrc/common/cpu_pool.h.
  m.def("set_cpu_pool(bool enabled) -> bool", &pgnface::set_cpu_pool_enabled);

  // Every forward op takes `check` (0 off, 1 record, 2 raise / assert; see
  // csrc/common/status.h) and returns its status word last: an int32 [1]
  // tensor whose bits name the inputs that failed the value checks.

  // s * R (mean + basis @ c) + t -> [B,N,3]; see pgnface/ops/synthesize.py.
  // Status bits: 1 coeffs, 2 rotation, 4 scale, 8 translation non-finite.
  m.def(
      "synthesize(Tensor mean, Tensor basis, Tensor coeffs, Tensor rotation, Tensor scale, "
      "Tensor translation, int check=2) -> (Tensor, Tensor status)");
  // Returns (grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale,
  // grad_translation) from the upstream gradient and the forward's output out;
  // the first two are empty unless need_model_grad.
  m.def(
      "synthesize_backward(Tensor grad_out, Tensor out, Tensor mean, Tensor basis, Tensor coeffs, "
      "Tensor rotation, Tensor scale, Tensor translation, bool need_model_grad) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Rasterizes clip-space triangles: (bary [B,H,W,3], depth [B,H,W],
  // tri_id [B,H,W] int32); cull: 0 none, 1 back, 2 front. See pgnface/ops/rasterize.py.
  // Status bits: 1 pos non-finite, 2 tris out of [0, N - 1].
  m.def(
      "rasterize(Tensor pos, Tensor tris, int height, int width, int cull, int check=2) -> "
      "(Tensor, Tensor, Tensor, Tensor status)");
  // Gradient w.r.t. pos [B,N,4] from the gradients of bary and depth.
  m.def(
      "rasterize_backward(Tensor grad_bary, Tensor grad_depth, Tensor pos, Tensor tris, "
      "Tensor tri_id) -> Tensor");
  // Interpolates per-vertex attributes [Ba,N,C] (Ba = 1 or B) -> [B,H,W,C].
  // Status bits: 1 tris out of [0, N - 1].
  m.def(
      "interpolate(Tensor attr, Tensor tri_id, Tensor bary, Tensor tris, int check=2) -> "
      "(Tensor, Tensor status)");
  // Returns (grad_attr shaped like attr, grad_bary [B,H,W,3]).
  m.def(
      "interpolate_backward(Tensor grad_out, Tensor attr, Tensor tri_id, Tensor bary, "
      "Tensor tris) -> (Tensor, Tensor)");

  // M [B,3,3] -> (U, S, V), M = U diag(S) V^T; see pgnface/ops/svd3x3.py.
  // Status bits: 1 M non-finite.
  m.def("svd3x3(Tensor M, int check=2) -> (Tensor U, Tensor S, Tensor V, Tensor status)");
  // Returns grad_M from the gradients of U, S, V and the forward's outputs.
  m.def(
      "svd3x3_backward(Tensor grad_U, Tensor grad_S, Tensor grad_V, Tensor U, Tensor S, "
      "Tensor V) -> Tensor");
  // Weighted Umeyama alignment dst ~ scale R src + t; see pgnface/ops/similarity_align.py.
  // sums [B,17]: each item's sums over its points, which the backward op solves from.
  // Status bits: 1 src, 2 dst, 4 weights non-finite, 8 weights negative.
  m.def(
      "similarity_align(Tensor src, Tensor dst, Tensor? weights, bool estimate_scale, "
      "int check=2) -> (Tensor scale, Tensor R, Tensor t, Tensor sums, Tensor status)");
  // Returns (grad_src, grad_dst, grad_weights) from the forward's inputs and sums;
  // grad_weights is empty without weights.
  m.def(
      "similarity_align_backward(Tensor grad_scale, Tensor grad_R, Tensor grad_t, Tensor src, "
      "Tensor dst, Tensor? weights, Tensor sums, bool estimate_scale) -> (Tensor, Tensor, Tensor)");
}

// `import pgnface._C` loads this shared library, which runs the TORCH_LIBRARY
// registrations above; the module itself is empty (the ops live in
// torch.ops.pgnface), so no binding library is needed. Python finds the module
// by this symbol, whose name follows the module name _C.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",                                                                  // name
      "pgnface compiled ops; the ops themselves live in torch.ops.pgnface",  // doc
      -1,       // no per-interpreter state
      nullptr,  // no methods
  };
  return PyModule_Create(&module_def);
}
