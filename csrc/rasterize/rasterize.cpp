// Device-neutral prologues of rasterize, interpolate and their backward ops:
// argument checks, contiguous inputs and the output allocation both the CPU
// (rasterize_cpu.cpp) and the CUDA (rasterize_cuda.cu) entry points share.
#include "rasterize.h"

#include <ATen/ops/empty.h>

#include <limits>

#include "../common/check.h"
#include "../common/output_memory.h"
#include "../common/status_host.h"
#include "rasterize_kernel.h"

namespace pgnface {
namespace {

void check_rasterize_args(const at::Tensor& pos, const at::Tensor& tris, int64_t height,
                          int64_t width, int64_t cull) {
  PGN_CHECK_FLOATING(pos);
  PGN_CHECK_DIM(pos, 3);
  PGN_CHECK_SIZE(pos, 2, 4);
  PGN_CHECK_INT32(tris);
  PGN_CHECK_DIM(tris, 2);
  PGN_CHECK_SIZE(tris, 1, 3);
  PGN_CHECK_SAME_DEVICE(tris, pos);
  TORCH_CHECK(height > 0 && width > 0, "resolution must be positive, got ", height, " x ", width);
  TORCH_CHECK(height <= (1 << 15) && width <= (1 << 15), "resolution ", height, " x ", width,
              " is above the supported 32768 x 32768");
  TORCH_CHECK(tris.size(0) < std::numeric_limits<int32_t>::max(), "too many triangles");
  TORCH_CHECK(cull >= raster::kCullNone && cull <= raster::kCullFront,
              "cull must be 0 (none), 1 (back) or 2 (front), got ", cull);
}

// The fragments of a rasterize call (bary may be its gradient) for B images.
void check_fragments(const at::Tensor& tri_id, const at::Tensor& bary, int64_t B) {
  PGN_CHECK_INT32(tri_id);
  PGN_CHECK_DIM(tri_id, 3);
  PGN_CHECK_SIZE(tri_id, 0, B);
  PGN_CHECK_SHAPE(bary, {B, tri_id.size(1), tri_id.size(2), 3});
  PGN_CHECK_SAME_DEVICE(tri_id, bary);
}

void check_interpolate_args(const at::Tensor& attr, const at::Tensor& tri_id,
                            const at::Tensor& bary, const at::Tensor& tris) {
  PGN_CHECK_FLOATING(attr);
  PGN_CHECK_DIM(attr, 3);
  PGN_CHECK_DIM(tri_id, 3);
  const int64_t B = tri_id.size(0);
  TORCH_CHECK(attr.size(0) == 1 || attr.size(0) == B, "attr must have batch size 1 or ", B,
              ", got shape ", attr.sizes());
  check_fragments(tri_id, bary, B);
  PGN_CHECK_LIKE(bary, attr);
  PGN_CHECK_INT32(tris);
  PGN_CHECK_DIM(tris, 2);
  PGN_CHECK_SIZE(tris, 1, 3);
  PGN_CHECK_SAME_DEVICE(tris, attr);
}

}  // namespace

RasterizeCall rasterize_prologue(const at::Tensor& pos, const at::Tensor& tris, int64_t height,
                                 int64_t width, int64_t cull) {
  check_rasterize_args(pos, tris, height, width, cull);
  const int64_t B = pos.size(0);
  const auto opts = pos.options();
  return {.pos = pos.contiguous(),
          .tris = tris.contiguous(),
          .B = B,
          .N = pos.size(1),
          .T_count = tris.size(0),
          .H = static_cast<int>(height),
          .W = static_cast<int>(width),
          .bary = empty_output({B, height, width, 3}, opts),
          .depth = empty_output({B, height, width}, opts),
          .tri_id = empty_output({B, height, width}, opts.dtype(at::kInt))};
}

RasterizeBackwardCall rasterize_backward_prologue(const at::Tensor& grad_bary,
                                                  const at::Tensor& grad_depth,
                                                  const at::Tensor& pos, const at::Tensor& tris,
                                                  const at::Tensor& tri_id) {
  PGN_CHECK_DIM(tri_id, 3);
  check_rasterize_args(pos, tris, tri_id.size(1), tri_id.size(2), raster::kCullNone);
  check_fragments(tri_id, grad_bary, pos.size(0));
  PGN_CHECK_LIKE(grad_bary, pos);
  PGN_CHECK_LIKE(grad_depth, pos);
  PGN_CHECK_SHAPE(grad_depth, tri_id.sizes());
  return {.grad_bary = contiguous_copy(grad_bary),
          .grad_depth = contiguous_copy(grad_depth),
          .pos = pos.contiguous(),
          .tris = tris.contiguous(),
          .tri_id = tri_id.contiguous(),
          .B = pos.size(0),
          .N = pos.size(1),
          .T_count = tris.size(0),
          .H = static_cast<int>(tri_id.size(1)),
          .W = static_cast<int>(tri_id.size(2))};
}

InterpolateCall interpolate_prologue(const at::Tensor& attr, const at::Tensor& tri_id,
                                     const at::Tensor& bary, const at::Tensor& tris) {
  check_interpolate_args(attr, tri_id, bary, tris);
  return {.attr = attr.contiguous(),
          .tri_id = tri_id.contiguous(),
          .bary = bary.contiguous(),
          .tris = tris.contiguous(),
          .grad_out = at::Tensor(),
          .B = tri_id.size(0),
          .H = tri_id.size(1),
          .W = tri_id.size(2),
          .Ba = attr.size(0),
          .N = attr.size(1),
          .C = attr.size(2),
          .T_count = tris.size(0)};
}

InterpolateCall interpolate_backward_prologue(const at::Tensor& grad_out, const at::Tensor& attr,
                                              const at::Tensor& tri_id, const at::Tensor& bary,
                                              const at::Tensor& tris) {
  InterpolateCall call = interpolate_prologue(attr, tri_id, bary, tris);
  PGN_CHECK_SHAPE(grad_out, {call.B, call.H, call.W, call.C});
  PGN_CHECK_LIKE(grad_out, attr);
  call.grad_out = contiguous_copy(grad_out);
  return call;
}

namespace {

// The status bit that tris indexes outside the N vertices (both ops check it).
StatusBit tris_bit(int32_t bit, const at::Tensor& tris, int64_t N) {
  return {.bit = bit,
          .name = "tris",
          .kind = StatusBit::kIndex,
          .value = tris,
          .size = N,
          .of = "vertices"};
}

}  // namespace

void rasterize_act_on_status(const at::Tensor& status, int64_t check, const RasterizeCall& call) {
  act_on_status(status, check, "rasterize",
                {tris_bit(2, call.tris, call.N),
                 {.bit = 1, .name = "pos", .kind = StatusBit::kFinite, .value = call.pos}});
}

void interpolate_act_on_status(const at::Tensor& status, int64_t check,
                               const InterpolateCall& call) {
  act_on_status(status, check, "interpolate", {tris_bit(1, call.tris, call.N)});
}

}  // namespace pgnface
