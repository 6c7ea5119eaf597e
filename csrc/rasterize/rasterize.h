// Entry points of the rasterizer (pgnface::rasterize) and attribute
// interpolation (pgnface::interpolate). Schemas are declared in csrc/ext.cpp;
// the device-neutral prologues (argument checks, contiguous inputs, output
// allocation) live in rasterize.cpp, the CPU implementations in
// rasterize_cpu.cpp and the CUDA ones in rasterize_cuda.cu.
//
// Shapes: pos [B,N,4] clip space, tris [T,3] int32, tri_id [B,H,W] int32,
// bary [B,H,W,3], depth [B,H,W], attr [Ba,N,C] with Ba = 1 or B.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace pgnface {

// Checked, contiguous rasterize inputs and the uninitialised outputs.
struct RasterizeCall {
  at::Tensor pos, tris;
  int64_t B, N, T_count;
  int H, W;
  // Returned as (bary, depth, tri_id): the integer output last, so tools that
  // sum every output (opcheck) never add floats into an integer.
  at::Tensor bary, depth, tri_id;
};
RasterizeCall rasterize_prologue(const at::Tensor& pos, const at::Tensor& tris, int64_t height,
                                 int64_t width, int64_t cull);

// Checked, contiguous rasterize_backward inputs; H x W is tri_id's resolution.
struct RasterizeBackwardCall {
  at::Tensor grad_bary, grad_depth, pos, tris, tri_id;
  int64_t B, N, T_count;
  int H, W;
};
RasterizeBackwardCall rasterize_backward_prologue(const at::Tensor& grad_bary,
                                                  const at::Tensor& grad_depth,
                                                  const at::Tensor& pos, const at::Tensor& tris,
                                                  const at::Tensor& tri_id);

// Checked, contiguous interpolate (and interpolate_backward) inputs; grad_out
// is undefined for the forward op.
struct InterpolateCall {
  at::Tensor attr, tri_id, bary, tris, grad_out;
  int64_t B, H, W, Ba, N, C, T_count;
};
InterpolateCall interpolate_prologue(const at::Tensor& attr, const at::Tensor& tri_id,
                                     const at::Tensor& bary, const at::Tensor& tris);
InterpolateCall interpolate_backward_prologue(const at::Tensor& grad_out, const at::Tensor& attr,
                                              const at::Tensor& tri_id, const at::Tensor& bary,
                                              const at::Tensor& tris);

// Returns (bary, depth, tri_id, status); status bits (common/status.h):
// 1 pos non-finite, 2 tris outside [0, N - 1].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_cpu(
    const at::Tensor& pos, const at::Tensor& tris, int64_t height, int64_t width, int64_t cull,
    int64_t check);

// Act on the status words of rasterize and interpolate (common/status_host.h).
void rasterize_act_on_status(const at::Tensor& status, int64_t check, const RasterizeCall& call);
void interpolate_act_on_status(const at::Tensor& status, int64_t check,
                               const InterpolateCall& call);

// Returns grad_pos [B,N,4].
at::Tensor rasterize_backward_cpu(const at::Tensor& grad_bary, const at::Tensor& grad_depth,
                                  const at::Tensor& pos, const at::Tensor& tris,
                                  const at::Tensor& tri_id);

// Returns ([B,H,W,C], status); status bit 1: tris outside [0, N - 1].
std::tuple<at::Tensor, at::Tensor> interpolate_cpu(const at::Tensor& attr, const at::Tensor& tri_id,
                                                   const at::Tensor& bary, const at::Tensor& tris,
                                                   int64_t check);

// Returns (grad_attr shaped like attr, grad_bary [B,H,W,3]).
std::tuple<at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& attr,
                                                            const at::Tensor& tri_id,
                                                            const at::Tensor& bary,
                                                            const at::Tensor& tris);

#ifdef WITH_CUDA
// The CUDA entry points (rasterize_cuda.cu), registered in csrc/cuda_ops.cpp.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_cuda(
    const at::Tensor& pos, const at::Tensor& tris, int64_t height, int64_t width, int64_t cull,
    int64_t check);
at::Tensor rasterize_backward_cuda(const at::Tensor& grad_bary, const at::Tensor& grad_depth,
                                   const at::Tensor& pos, const at::Tensor& tris,
                                   const at::Tensor& tri_id);
std::tuple<at::Tensor, at::Tensor> interpolate_cuda(const at::Tensor& attr,
                                                    const at::Tensor& tri_id,
                                                    const at::Tensor& bary, const at::Tensor& tris,
                                                    int64_t check);
std::tuple<at::Tensor, at::Tensor> interpolate_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& attr,
                                                             const at::Tensor& tri_id,
                                                             const at::Tensor& bary,
                                                             const at::Tensor& tris);
#endif

}  // namespace pgnface
