// Entry points of the rasterizer (pgnface::rasterize) and attribute
// interpolation (pgnface::interpolate). Schemas are declared in csrc/ext.cpp;
// CPU implementations live in rasterize_cpu.cpp, CUDA ones in rasterize_cuda.cu.
//
// Shapes: pos [B,N,4] clip space, tris [T,3] int32, tri_id [B,H,W] int32,
// bary [B,H,W,3], depth [B,H,W], attr [Ba,N,C] with Ba = 1 or B.
#pragma once

#include <torch/types.h>

#include <tuple>

namespace pgnface {

// Validates rasterize arguments (shared by the CPU and CUDA entry points).
void check_rasterize_args(const at::Tensor& pos, const at::Tensor& tris, int64_t height,
                          int64_t width, int64_t cull);

// Validates the fragments of a rasterize call against pos/tris-derived sizes.
void check_fragments(const at::Tensor& tri_id, const at::Tensor& bary, int64_t B);

// Validates interpolate arguments (shared by the CPU and CUDA entry points).
void check_interpolate_args(const at::Tensor& attr, const at::Tensor& tri_id,
                            const at::Tensor& bary, const at::Tensor& tris);

// Validates the arguments of the two backward ops (shared by CPU and CUDA).
void check_rasterize_backward_args(const at::Tensor& grad_bary, const at::Tensor& grad_depth,
                                   const at::Tensor& pos, const at::Tensor& tris,
                                   const at::Tensor& tri_id);
void check_interpolate_backward_args(const at::Tensor& grad_out, const at::Tensor& attr,
                                     const at::Tensor& tri_id, const at::Tensor& bary,
                                     const at::Tensor& tris);

// Returns (bary, depth, tri_id): the integer output last, so tools that sum
// every output (opcheck) never add floats into an integer.
std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_cpu(const at::Tensor& pos,
                                                             const at::Tensor& tris,
                                                             int64_t height, int64_t width,
                                                             int64_t cull);

// Returns grad_pos [B,N,4].
at::Tensor rasterize_backward_cpu(const at::Tensor& grad_bary, const at::Tensor& grad_depth,
                                  const at::Tensor& pos, const at::Tensor& tris,
                                  const at::Tensor& tri_id);

// Returns [B,H,W,C].
at::Tensor interpolate_cpu(const at::Tensor& attr, const at::Tensor& tri_id,
                           const at::Tensor& bary, const at::Tensor& tris);

// Returns (grad_attr shaped like attr, grad_bary [B,H,W,3]).
std::tuple<at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& attr,
                                                            const at::Tensor& tri_id,
                                                            const at::Tensor& bary,
                                                            const at::Tensor& tris);

}  // namespace pgnface
