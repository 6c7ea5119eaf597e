// A cache of the CPU memory behind the ops' large outputs.
//
// A batch's outputs are tens of megabytes. The system allocator maps such
// blocks fresh on every call and unmaps them when the tensor dies, so every
// call pays for the kernel zeroing each page on first touch, about as much
// as the op writing it again. Training and benchmark loops ask for the same
// sizes call after call, so the blocks of outputs that died are kept (up to a
// cap) and handed out again, the way torch's CUDA allocator does on the GPU.
//
// Cap: PGN_CPU_CACHE_MB in the environment (read once; default 256, 0 turns
// the cache off). torch.ops.pgnface.release_cpu_cache() frees the cached
// blocks and returns how many bytes it freed.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>

namespace pgnface {

// Outputs of at least this many bytes come from the cache.
constexpr size_t kPooledOutputBytes = size_t{2} << 20;

// An uninitialised contiguous CPU tensor whose memory comes from the cache
// (2 MiB aligned, advised to transparent huge pages). For nbytes of at least
// kPooledOutputBytes; the caller writes every element.
at::Tensor pooled_cpu_empty(at::IntArrayRef sizes, at::ScalarType dtype);

}  // namespace pgnface
