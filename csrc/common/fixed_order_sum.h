// One CUDA kernel for the sums that must not depend on the launch: every
// output element is summed by one thread, its terms in a fixed order, so the
// result is bitwise reproducible on any device and schedule. Include from .cu
// files only (it defines a __global__ kernel).
//
// The caller says what is summed through a small struct of device pointers
// (passed by value), with
//   int64_t begin(int64_t j), end(int64_t j): the term range [begin, end) of row j;
//   T operator()(int64_t j, int64_t c, int64_t s): term s of column c of row j.
// Users: the deterministic backward passes of rasterize and interpolate (a
// segment per vertex of entries sorted by vertex) and synthesize's backward
// (a fixed number of partial-sum slices per output).
#pragma once

#include <cstdint>

namespace pgnface {

// out[j * width + c] = sum over s in [terms.begin(j), terms.end(j)) of
// terms(j, c, s), in s order, for j in [0, rows); one thread per element.
template <typename T, typename Terms>
__global__ void fixed_order_sum_kernel(const Terms terms, T* __restrict__ out, int64_t rows,
                                       int64_t width) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * width) return;
  const int64_t j = i / width, c = i % width;
  T sum = T(0);
  for (int64_t s = terms.begin(j), end = terms.end(j); s < end; ++s) sum += terms(j, c, s);
  out[i] = sum;
}

}  // namespace pgnface
