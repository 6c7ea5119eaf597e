// The cache of large CPU output blocks (output_pool.h).
#include "output_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pgnface {
namespace {

constexpr size_t kAlign = size_t{2} << 20;  // one transparent huge page

struct Block {
  c10::DataPtr owner;      // the allocation, from torch's CPU allocator
  c10::Allocator* origin;  // that allocator
  void* data;              // owner's memory rounded up to kAlign
  size_t bytes;            // usable from data
};

size_t cap_from_environment() {
  constexpr long long kDefaultMb = 256;
  const char* text = std::getenv("PGN_CPU_CACHE_MB");
  if (text == nullptr || *text == '\0') return size_t(kDefaultMb) << 20;
  char* end = nullptr;
  const long long mb = std::strtoll(text, &end, 10);
  if (*end != '\0' || mb < 0) {
    TORCH_WARN("PGN_CPU_CACHE_MB must be a whole number of MiB (0 turns the cache off), got '",
               text, "'; using ", kDefaultMb);
    return size_t(kDefaultMb) << 20;
  }
  return size_t(std::min(mb, 1LL << 40)) << 20;  // beyond a petabyte means "no cap"
}

// Blocks are kept in the order they were freed and reused by exact size, the
// most recent first; past the cap the oldest are returned to the system. A
// loop has a handful of output sizes, so a linear scan is all it needs.
class OutputPool final : public c10::Allocator {
 public:
  static OutputPool& instance() {
    static OutputPool* pool = new OutputPool();  // never destroyed: outputs may outlive exit
    return *pool;
  }

  // Blocks come from torch's current CPU allocator (so that whatever replaced
  // it, a memory profiler or a tracking allocator, sees them), 2 MiB more than
  // asked so that the block can start on a huge-page boundary; the slack is
  // never touched, so it costs address space only. Cached blocks are reused
  // only while that allocator is still the current one.
  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = (std::max<size_t>(n, 1) + kAlign - 1) / kAlign * kAlign;
    c10::Allocator* base = c10::GetCPUAllocator();
    Block* block = take(bytes, base);
    if (block == nullptr) {
      c10::DataPtr owner = base->allocate(bytes + kAlign);
      TORCH_CHECK_WITH(OutOfMemoryError, owner.get() != nullptr,
                       "pgnface: out of CPU memory allocating ", bytes,
                       " bytes for an op's output");
      const uintptr_t start =
          (reinterpret_cast<uintptr_t>(owner.get()) + kAlign - 1) & ~(kAlign - 1);
      void* data = reinterpret_cast<void*>(start);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      madvise(data, bytes, MADV_HUGEPAGE);  // a hint only; no value changes
#endif
      block = new Block{std::move(owner), base, data, bytes};
    }
    return {block->data, block, &OutputPool::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  size_t release() {
    std::vector<Block*> freed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      freed.swap(free_);
      cached_ = 0;
    }
    size_t bytes = 0;
    for (Block* b : freed) bytes += b->bytes, destroy(b);
    return bytes;
  }

 private:
  OutputPool() : cap_(cap_from_environment()) {}

  Block* take(size_t bytes, c10::Allocator* origin) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = free_.size(); i-- > 0;) {
      if (free_[i]->bytes != bytes || free_[i]->origin != origin) continue;
      Block* b = free_[i];
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      cached_ -= bytes;
      return b;
    }
    return nullptr;
  }

  static void give_back(void* ctx) {
    Block* block = static_cast<Block*>(ctx);
    OutputPool& pool = instance();
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(pool.mutex_);
      if (block->bytes > pool.cap_) {
        evicted.push_back(block);
      } else {
        pool.free_.push_back(block);
        pool.cached_ += block->bytes;
        size_t drop = 0;
        while (pool.cached_ > pool.cap_) pool.cached_ -= pool.free_[drop++]->bytes;
        evicted.assign(pool.free_.begin(), pool.free_.begin() + static_cast<std::ptrdiff_t>(drop));
        pool.free_.erase(pool.free_.begin(),
                         pool.free_.begin() + static_cast<std::ptrdiff_t>(drop));
      }
    }
    for (Block* b : evicted) destroy(b);  // outside the lock: munmap can take a while
  }

  static void destroy(Block* b) { delete b; }  // owner returns the memory

  const size_t cap_;
  std::mutex mutex_;
  std::vector<Block*> free_;  // oldest first
  size_t cached_ = 0;         // bytes in free_
};

// Frees the cached blocks; returns how many bytes were freed.
int64_t release_cpu_cache() { return static_cast<int64_t>(OutputPool::instance().release()); }

}  // namespace

at::Tensor pooled_cpu_empty(at::IntArrayRef sizes, at::ScalarType dtype) {
  return at::detail::empty_generic(sizes, &OutputPool::instance(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, std::nullopt);
}

}  // namespace pgnface

TORCH_LIBRARY_FRAGMENT(pgnface, m) {
  // Frees the CPU memory cached for the ops' large outputs (csrc/common/output_pool.h); returns
  // the bytes freed.
  m.def("release_cpu_cache() -> int", &pgnface::release_cpu_cache);
}
