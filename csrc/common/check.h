// The one set of argument checks for op entry points. The Python wrappers
// validate first and raise ValueError/TypeError; these checks are the last line
// of defence for callers that use torch.ops.pgnface.* directly, so a bad call
// never reaches a kernel. Every message names the argument and what was expected.
#pragma once

#include <ATen/core/Tensor.h>

#define PGN_CHECK_FLOATING(x)                                                      \
  TORCH_CHECK((x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble, \
              #x " must be float32 or float64, got ", (x).scalar_type())

#define PGN_CHECK_INT32(x) \
  TORCH_CHECK((x).scalar_type() == at::kInt, #x " must be int32, got ", (x).scalar_type())

#define PGN_CHECK_DIM(x, d) \
  TORCH_CHECK((x).dim() == (d), #x " must have ", (d), " dimensions, got shape ", (x).sizes())

#define PGN_CHECK_SIZE(x, dim, n)                                                           \
  TORCH_CHECK((x).size(dim) == (n), #x ".shape[", (dim), "] must be ", (n), ", got shape ", \
              (x).sizes())

// The whole shape at once: PGN_CHECK_SHAPE(V, {B, 3, 3}) or PGN_CHECK_SHAPE(d, other.sizes()).
#define PGN_CHECK_SHAPE(x, ...)                                                    \
  TORCH_CHECK((x).sizes() == at::IntArrayRef(__VA_ARGS__), #x " must have shape ", \
              at::IntArrayRef(__VA_ARGS__), ", got ", (x).sizes())

#define PGN_CHECK_SAME_DTYPE(x, ref)                                            \
  TORCH_CHECK((x).scalar_type() == (ref).scalar_type(), #x " must have dtype ", \
              (ref).scalar_type(), " like " #ref ", got ", (x).scalar_type())

#define PGN_CHECK_SAME_DEVICE(x, ref)                                            \
  TORCH_CHECK((x).device() == (ref).device(), #x " must be on ", (ref).device(), \
              " like " #ref ", got ", (x).device())

// Same dtype and same device as ref.
#define PGN_CHECK_LIKE(x, ref)     \
  do {                             \
    PGN_CHECK_SAME_DTYPE(x, ref);  \
    PGN_CHECK_SAME_DEVICE(x, ref); \
  } while (false)
