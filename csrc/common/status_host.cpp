// Host part of the fused value checks: see status.h and status_host.h.
#include "status_host.h"

#include <ATen/ops/_assert_async.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/zeros.h>

#include <sstream>
#include <string>

#include "status.h"

namespace pgnface {

at::Tensor new_status(const at::Tensor& like, int64_t check) {
  TORCH_CHECK(check == kCheckOff || check == kCheckRecord || check == kCheckRaise,
              "check must be 0 (off), 1 (record) or 2 (raise), got ", check);
  if (like.is_cpu()) {  // a store instead of a fill_ call: small batches feel every call
    at::Tensor status = at::empty({1}, like.options().dtype(at::kInt));
    *status.data_ptr<int32_t>() = 0;
    return status;
  }
  return at::zeros({1}, like.options().dtype(at::kInt));
}

namespace {

// The error a CPU call raises for one failing argument; computing it reads the
// argument again, which only happens once the check has already failed.
std::string cpu_message(const StatusBit& b) {
  std::ostringstream msg;
  switch (b.kind) {
    case StatusBit::kFinite: {
      const int64_t bad = (~at::isfinite(b.value)).sum().item<int64_t>();
      msg << b.name << " contains " << bad
          << " non-finite value(s) (NaN or Inf); fix the input, or pass check_values=False to "
             "let them propagate to the affected outputs";
      break;
    }
    case StatusBit::kIndex: {
      const int64_t lo = b.value.min().item<int64_t>(), hi = b.value.max().item<int64_t>();
      if (*b.of) {
        msg << b.name << " must index " << b.of << " in [0, " << b.size - 1 << "], got indices in ["
            << lo << ", " << hi << "]";
      } else {
        msg << b.name << " must lie in [0, " << b.size - 1 << "], got values in [" << lo << ", "
            << hi << "]";
      }
      break;
    }
    case StatusBit::kNonNegative:
      msg << b.name << " must be non-negative, got minimum " << b.value.min().item<double>();
      break;
  }
  return msg.str();
}

}  // namespace

void act_on_status(const at::Tensor& status, int64_t check, const char* op,
                   std::initializer_list<StatusBit> bits) {
  if (check != kCheckRaise) return;
  if (status.is_cpu()) {
    const int32_t word = *status.const_data_ptr<int32_t>();  // host memory: read it in place
    for (const StatusBit& b : bits) {
      TORCH_CHECK_VALUE(!(word & b.bit), cpu_message(b));
    }
    return;
  }
  std::ostringstream msg;
  msg << op << ": check_values found bad input (status bits:";
  const char* kinds[] = {"non-finite", "index out of range", "negative"};
  for (const StatusBit& b : bits)
    msg << " " << b.bit << " " << b.name << " " << kinds[b.kind] << ";";
  msg << " pass check_values=False to skip the checks)";
  at::_assert_async(status.eq(0), msg.str());
}

}  // namespace pgnface
