// Allocation of the ops' large outputs.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <c10/util/accumulate.h>

#include <cstddef>

#include "output_pool.h"

namespace pgnface {

// at::empty for an output the op writes whole. Large CPU outputs come from the
// cache of output blocks (output_pool.h), so a loop's calls do not fault in
// fresh pages each time.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (options.device().is_cpu()) {
    const size_t bytes =
        c10::multiply_integers(sizes) * c10::elementSize(options.dtype().toScalarType());
    if (bytes >= kPooledOutputBytes) return pooled_cpu_empty(sizes, options.dtype().toScalarType());
  }
  return at::empty(sizes, options);
}

// at::zeros for an output the op accumulates into (empty_output, then zeroed).
inline at::Tensor zeros_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = empty_output(sizes, options);
  t.zero_();
  return t;
}

// t.contiguous(), the copy (of an expanded gradient, say) made in empty_output memory.
inline at::Tensor contiguous_copy(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  at::Tensor c = empty_output(t.sizes(), t.options());
  c.copy_(t);
  return c;
}

}  // namespace pgnface
