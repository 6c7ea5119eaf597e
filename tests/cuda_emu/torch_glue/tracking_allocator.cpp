// Makes every CPU tensor allocated after the emulated extension loads a
// tracked global allocation of the emulator, so kernels' global accesses are
// bounds- and race-checked against the tensors' storage.
//
// The data pointer is also the context (as the default CPU allocator does):
// raw_allocate / raw_deleter users (oneDNN scratchpads) require it. The
// underlying allocation is kept in a table keyed by it.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <mutex>
#include <unordered_map>

#include "cuda_emu/runtime.h"

namespace {

struct Table {
  std::mutex mutex;
  std::unordered_map<void*, c10::DataPtr> inner;
};

Table& table() {
  static Table* t = new Table();  // outlives every tensor, even at exit
  return *t;
}

void delete_tracked(void* data) {
  cuda_emu::untrack_allocation(data);
  c10::DataPtr inner;
  {
    Table& t = table();
    const std::lock_guard<std::mutex> lock(t.mutex);
    auto it = t.inner.find(data);
    if (it == t.inner.end()) return;
    inner = std::move(it->second);
    t.inner.erase(it);
  }
  // inner frees the memory as it goes out of scope, outside the lock.
}

class TrackingAllocator final : public c10::Allocator {
 public:
  explicit TrackingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    if (!data) return inner;
    {
      Table& t = table();
      const std::lock_guard<std::mutex> lock(t.mutex);
      t.inner.emplace(data, std::move(inner));
    }
    cuda_emu::track_allocation(data, n);
    return c10::DataPtr(data, data, &delete_tracked, device);
  }

  c10::DeleterFnPtr raw_deleter() const override { return &delete_tracked; }

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
