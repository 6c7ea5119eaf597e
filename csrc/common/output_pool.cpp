// The cache of large CPU output blocks (output_pool.h).
#include "output_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pgnface {
namespace {

constexpr size_t kAlign = size_t{2} << 20;  // one transparent huge page

struct Block {
  void* data;
  size_t bytes;
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
  return size_t(mb) << 20;
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

  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = (std::max<size_t>(n, 1) + kAlign - 1) / kAlign * kAlign;
    Block* block = take(bytes);
    if (block == nullptr) {
      void* data = std::aligned_alloc(kAlign, bytes);
      TORCH_CHECK_WITH(OutOfMemoryError, data != nullptr, "pgnface: out of CPU memory allocating ",
                       bytes, " bytes for an op's output");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      madvise(data, bytes, MADV_HUGEPAGE);  // a hint only; no value changes
#endif
      block = new Block{data, bytes};
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

  Block* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = free_.size(); i-- > 0;) {
      if (free_[i]->bytes != bytes) continue;
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

  static void destroy(Block* b) {
    std::free(b->data);
    delete b;
  }

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
