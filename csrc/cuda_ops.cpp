// Registers the CUDA implementations of the ops (csrc/<op>/<op>_cuda.cu).
// The registration is compiled by the host compiler: nvcc parses every header
// of a .cu file in its host and device passes, and torch/library.h is the
// costliest of them, so the .cu files include only the tensor headers they use.
#ifdef WITH_CUDA
#include <torch/library.h>

#include "rasterize/rasterize.h"
#include "similarity_align/similarity_align.h"
#include "svd3x3/svd3x3.h"
#include "synthesize/synthesize.h"

namespace pgnface {

TORCH_LIBRARY_IMPL(pgnface, CUDA, m) {
  m.impl("rasterize", &rasterize_cuda);
  m.impl("rasterize_backward", &rasterize_backward_cuda);
  m.impl("interpolate", &interpolate_cuda);
  m.impl("interpolate_backward", &interpolate_backward_cuda);
  m.impl("similarity_align", &similarity_align_cuda);
  m.impl("similarity_align_backward", &similarity_align_backward_cuda);
  m.impl("svd3x3", &svd3x3_cuda);
  m.impl("svd3x3_backward", &svd3x3_backward_cuda);
  m.impl("synthesize", &synthesize_cuda);
  m.impl("synthesize_backward", &synthesize_backward_cuda);
}

}  // namespace pgnface
#endif
