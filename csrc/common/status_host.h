// Value checks fused into the kernels (check_values), host part: the status
// word's allocation and what happens once the kernels have filled it. See
// status.h for the design.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>

namespace pgnface {

// What one status bit stands for.
struct StatusBit {
  int32_t bit;
  const char* name;  // the argument, as the Python wrapper names it
  enum Kind { kFinite, kIndex, kNonNegative } kind;
  at::Tensor value;     // the argument (read again only to word the CPU error)
  int64_t size = 0;     // kIndex: values must lie in [0, size - 1]
  const char* of = "";  // kIndex: what is indexed ("vertices")
};

// Checks `check` and returns the zeroed status word [1] int32 on like's device.
at::Tensor new_status(const at::Tensor& like, int64_t check);

// Acts on a filled status word when check is kCheckRaise: on CPU raises a
// ValueError naming the first failing argument (worded as the Python wrappers
// always have); on CUDA enqueues an asynchronous device-side assertion that
// the word is 0 (no host synchronisation: a failure surfaces at the next
// synchronising call as "device-side assert triggered", with `op`'s bit list).
void act_on_status(const at::Tensor& status, int64_t check, const char* op,
                   std::initializer_list<StatusBit> bits);

}  // namespace pgnface
