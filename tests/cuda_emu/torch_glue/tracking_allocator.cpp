// Makes every CPU tensor allocated after the emulated extension loads a
// tracked global allocation of the emulator, so kernels' global accesses are
// bounds- and race-checked against the tensors' storage.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include "cuda_emu/runtime.h"

namespace {

struct Tracked {
  c10::DataPtr inner;
};

void delete_tracked(void* ctx) {
  auto* t = static_cast<Tracked*>(ctx);
  cuda_emu::untrack_allocation(t->inner.get());  // (thread-safe)
  delete t;
}

class TrackingAllocator final : public c10::Allocator {
 public:
  explicit TrackingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    if (!data) return inner;
    cuda_emu::track_allocation(data, n);
    return c10::DataPtr(data, new Tracked{std::move(inner)}, &delete_tracked, device);
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  c10::Allocator* base_;
};

const bool installed = [] {
  static TrackingAllocator allocator(c10::GetCPUAllocator());
  c10::SetCPUAllocator(&allocator, /*priority=*/100);
  return true;
}();

}  // namespace
