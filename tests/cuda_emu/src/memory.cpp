// Memory checks of the running CUDA thread: which space an address is in,
// bounds (tracked allocations, shared-memory redzones), uninitialised shared
// memory, and data races between barriers.
#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "state.h"

namespace cuda_emu {
namespace detail {
namespace {

constexpr size_t kRedzone = 64;
constexpr size_t kArenaCapacity = 256 * 1024;
constexpr size_t kGranule = 4;
// Allocations above this many bytes are bounds-checked but not race-checked
// (the race shadow costs 18x the data).
constexpr size_t kMaxShadowedBytes = 16u << 20;

std::string hex_address(uintptr_t a) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%zx", static_cast<size_t>(a));
  return buf;
}

const char* kind_name(Access kind) {
  return kind == Access::kRead ? "read" : (kind == Access::kWrite ? "write" : "atomic");
}

std::string kernel_name() {
  const State& s = state();
  std::string name = s.spec ? s.spec->name : "?";
  if (s.spec && *s.spec->dtype) name += std::string(" [") + s.spec->dtype + "]";
  return name;
}

Touch touch_of(const Thread& t) {
  const State& s = state();
  return Touch{s.block_linear, s.block_epoch, t.tid, t.warp, s.warp_epoch[t.warp]};
}

// Whether a happens before the access `now` of thread t: same thread, or the
// same block separated by a barrier, or the same warp separated by a warp
// collective.
bool ordered(const Touch& a, const Thread& t) {
  const State& s = state();
  if (a.block < 0) return true;
  if (a.block != s.block_linear) return false;
  if (a.tid == t.tid) return true;
  if (a.epoch != s.block_epoch) return true;
  return a.warp == t.warp && a.warp_epoch != s.warp_epoch[t.warp];
}

// Merges the access of t into a record of possibly several threads.
void merge(Touch& a, const Thread& t) {
  const State& s = state();
  if (a.block < 0 || (a.block == s.block_linear && a.epoch != s.block_epoch) || a.tid == t.tid) {
    a = touch_of(t);
    return;
  }
  if (a.block != s.block_linear) a.block = s.block_linear;  // the later block's view suffices
  a.tid = kMany;
  if (a.warp != t.warp) a.warp = -1;
  a.warp_epoch = std::max(a.warp_epoch, s.warp_epoch[t.warp]);
}

std::string who(const Touch& a) {
  if (a.tid == kMany) return "several threads";
  const State& s = state();
  const dim3 b = s.spec->block;
  char buf[96];
  std::snprintf(buf, sizeof(buf), "thread (%d,%d,%d) of block #%d", a.tid % static_cast<int>(b.x),
                (a.tid / static_cast<int>(b.x)) % static_cast<int>(b.y),
                a.tid / static_cast<int>(b.x * b.y), a.block);
  return buf;
}

[[noreturn]] void race(const char* space, uintptr_t addr, const Thread& t, Access kind,
                       const char* other_kind, const Touch& other, const std::string& what) {
  // (what describes the address; it is built only here, on failure)
  fail(std::string("data race on ") + space + " memory " + what + " (" + hex_address(addr) + ") in " +
       kernel_name() + ": " + describe_thread(t) + " " + kind_name(kind) + "s it, " + who(other) +
       " " + other_kind + " it with no barrier between (and not both atomic)");
}

// describe() names the address for a report; it runs only when one is made.
template <typename Describe>
void check_cell(Cell& c, uint64_t stamp, const char* space, uintptr_t addr, const Thread& t,
                Access kind, const Describe& describe) {
  if (c.stamp != stamp) {
    c = Cell{};
    c.stamp = stamp;
  }
  if (!ordered(c.write, t)) race(space, addr, t, kind, "wrote", c.write, describe());
  if (kind == Access::kAtomic) {
    if (!ordered(c.read, t)) race(space, addr, t, kind, "read", c.read, describe());
    merge(c.atomic, t);
    return;
  }
  if (!ordered(c.atomic, t)) race(space, addr, t, kind, "updated atomically", c.atomic, describe());
  if (kind == Access::kWrite) {
    if (!ordered(c.read, t)) race(space, addr, t, kind, "read", c.read, describe());
    c.write = touch_of(t);
  } else {
    merge(c.read, t);
  }
}

const SharedVar* shared_var_at(size_t offset) {
  // The variable at or before offset (an overrun names the one it ran off),
  // else the first one (an underrun).
  const SharedVar* best = nullptr;
  for (const SharedVar& v : state().shared_vars) {
    if (v.offset <= offset && (!best || v.offset > best->offset)) best = &v;
  }
  if (!best && !state().shared_vars.empty()) best = &state().shared_vars.front();
  return best;
}

std::string shared_what(size_t offset) {
  const SharedVar* v = shared_var_at(offset);
  if (!v) return "(no variable)";
  const long rel = static_cast<long>(offset) - static_cast<long>(v->offset);
  return std::string("`") + v->name + "` byte " + std::to_string(rel) + " of " + std::to_string(v->size);
}

void shared_access(uintptr_t addr, size_t size, Access kind, const Thread& t) {
  State& s = state();
  const size_t offset = addr - reinterpret_cast<uintptr_t>(s.arena.data());
  for (size_t i = 0; i < size; ++i) {
    const size_t o = offset + i;
    if (o >= s.arena_used || s.arena_region[o] != Region::kVariable)
      fail("out-of-bounds shared-memory " + std::string(kind_name(kind)) + " of " +
           std::to_string(size) + " bytes at " + shared_what(o) + " in " + kernel_name() + " by " +
           describe_thread(t));
    Cell& c = s.arena_cells[o];
    if (kind != Access::kWrite && c.stamp != s.block_serial)
      fail("read of uninitialised shared memory " + shared_what(o) + " in " + kernel_name() +
           " by " + describe_thread(t) + " (nothing wrote it in this block)");
    check_cell(c, s.block_serial, "shared", addr + i, t, kind, [o] { return shared_what(o); });
  }
}

Allocation* find_allocation(uintptr_t addr) {
  State& s = state();
  Allocation* last = s.last_allocation;
  if (last && addr >= last->begin && addr < last->begin + last->size) return last;
  auto it = s.allocations.upper_bound(addr);
  if (it == s.allocations.begin()) return nullptr;
  --it;
  Allocation* a = it->second.get();
  if (addr >= a->begin && addr < a->begin + a->size) {
    s.last_allocation = a;
    return a;
  }
  return nullptr;
}

bool in_image(uintptr_t addr) {
  for (const auto& r : state().image)
    if (addr >= r.first && addr < r.second) return true;
  return false;
}

void global_access(Allocation& a, uintptr_t addr, size_t size, Access kind, const Thread& t) {
  if (addr + size > a.begin + a.size)
    fail("out-of-bounds global " + std::string(kind_name(kind)) + " of " + std::to_string(size) +
         " bytes at offset " + std::to_string(addr - a.begin) + " of a " + std::to_string(a.size) +
         "-byte allocation in " + kernel_name() + " by " + describe_thread(t));
  if (a.size > kMaxShadowedBytes) return;
  if (a.cells.empty()) a.cells.resize((a.size + kGranule - 1) / kGranule);
  State& s = state();
  const size_t first = (addr - a.begin) / kGranule, last = (addr + size - 1 - a.begin) / kGranule;
  for (size_t g = first; g <= last; ++g) {
    if (kind == Access::kRead && a.cells[g].stamp != s.launch_serial) {
      // Fast path: first touch in this launch by a read.
      Cell& c = a.cells[g];
      c = Cell{};
      c.stamp = s.launch_serial;
      c.read = touch_of(t);
      continue;
    }
    check_cell(a.cells[g], s.launch_serial, "global", addr, t, kind, [&a, g] {
      return "at offset " + std::to_string(g * kGranule) + " of a " + std::to_string(a.size) +
             "-byte allocation";
    });
  }
}

int collect_segments(dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::vector<std::pair<uintptr_t, uintptr_t>>*>(data);
  Dl_info self;
  if (!dladdr(reinterpret_cast<void*>(&collect_segments), &self)) return 0;
  if (reinterpret_cast<uintptr_t>(self.dli_fbase) != info->dlpi_addr) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
    out->emplace_back(begin, begin + ph.p_memsz);
  }
  return 1;
}

}  // namespace

void image_ranges(std::vector<std::pair<uintptr_t, uintptr_t>>& out) {
  dl_iterate_phdr(collect_segments, &out);
}

void reset_arena_for_launch() {
  State& s = state();
  if (s.arena.size() != kArenaCapacity) {
    s.arena.assign(kArenaCapacity, 0xFF);
    s.arena_region.assign(kArenaCapacity, Region::kUnused);
    s.arena_cells.assign(kArenaCapacity, Cell{});
  }
  std::fill(s.arena_region.begin(), s.arena_region.begin() + s.arena_used, Region::kUnused);
  s.shared_vars.clear();
  s.static_shared = 0;
  // Layout: [redzone][dynamic shared][redzone][static variables, each followed by a redzone].
  s.dynamic_offset = kRedzone;
  size_t end = s.dynamic_offset + s.spec->dynamic_shared;
  std::fill(s.arena_region.begin(), s.arena_region.begin() + kRedzone, Region::kRedzone);
  std::fill(s.arena_region.begin() + s.dynamic_offset, s.arena_region.begin() + end, Region::kVariable);
  if (s.spec->dynamic_shared) s.shared_vars.push_back(SharedVar{"extern __shared__", s.dynamic_offset, s.spec->dynamic_shared});
  std::fill(s.arena_region.begin() + end, s.arena_region.begin() + end + kRedzone, Region::kRedzone);
  s.arena_used = end + kRedzone;
}

void reset_arena_for_block() {
  State& s = state();
  std::fill(s.arena.begin(), s.arena.begin() + s.arena_used, 0xFF);  // poison
}

}  // namespace detail

using namespace detail;

void* shared_slot(SharedSite& site, size_t size, size_t align, const char* name) {
  State& s = state();
  const RuntimeCode runtime(s.current);
  if (site.launch != s.launch_serial) {
    const size_t offset = (s.arena_used + align - 1) / align * align;
    const size_t limit = shared_limit();
    s.static_shared += size;
    if (s.static_shared + s.spec->dynamic_shared > limit)
      fail("invalid launch of " + kernel_name() + ": " + std::to_string(s.static_shared) +
           " bytes of static shared memory (+" + std::to_string(s.spec->dynamic_shared) +
           " dynamic) above the " + std::to_string(limit) + "-byte limit");
    if (offset + size + kRedzone > kArenaCapacity) fail("shared-memory arena of the emulator is full");
    std::fill(s.arena_region.begin() + s.arena_used, s.arena_region.begin() + offset, Region::kRedzone);
    std::fill(s.arena_region.begin() + offset, s.arena_region.begin() + offset + size, Region::kVariable);
    std::fill(s.arena_region.begin() + offset + size, s.arena_region.begin() + offset + size + kRedzone,
              Region::kRedzone);
    std::fill(s.arena.begin() + s.arena_used, s.arena.begin() + offset + size + kRedzone, 0xFF);
    s.arena_used = offset + size + kRedzone;
    s.shared_vars.push_back(SharedVar{name, offset, size});
    site.launch = s.launch_serial;
    site.offset = offset;
  }
  return s.arena.data() + site.offset;
}

void* dynamic_shared_base() { return state().arena.data() + state().dynamic_offset; }

void track_allocation(const void* ptr, size_t bytes) {
  if (!ptr || !bytes) return;
  auto a = std::make_unique<Allocation>();
  a->begin = reinterpret_cast<uintptr_t>(ptr);
  a->size = bytes;
  State& s = state();
  const std::lock_guard<std::mutex> lock(s.allocations_mutex);
  s.allocations[a->begin] = std::move(a);
}

void untrack_allocation(const void* ptr) {
  State& s = state();
  const std::lock_guard<std::mutex> lock(s.allocations_mutex);
  auto it = s.allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.allocations.end()) return;
  if (s.last_allocation == it->second.get()) s.last_allocation = nullptr;
  s.allocations.erase(it);
}

void on_access(const void* p, size_t size, Access kind, const void* pc) {
  State& s = state();
  Thread* t = s.current;
  if (!t || t->runtime_depth || !pthread_equal(pthread_self(), s.owner)) return;
  const RuntimeCode runtime(t);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const uintptr_t stack = reinterpret_cast<uintptr_t>(t->stack);
  if (addr >= stack && addr < stack + kStackBytes) return;  // the thread's own locals
  if (addr < s.params_begin || addr >= s.params_end) ++t->accesses;
  const uintptr_t arena = reinterpret_cast<uintptr_t>(s.arena.data());
  if (addr >= arena && addr < arena + s.arena.size()) {
    shared_access(addr, size, kind, *t);
    if (s.counters_on) counters_record(*t, addr, size, true, kind, pc);
    return;
  }
  if (addr >= s.params_begin && addr < s.params_end) {
    if (kind != Access::kRead) fail("write to kernel parameters in " + kernel_name());
    return;
  }
  s.allocations_mutex.lock();
  s.allocations_held = true;  // fail() releases it when a check fails here
  if (Allocation* a = find_allocation(addr)) {
    global_access(*a, addr, size, kind, *t);
    s.allocations_held = false;
    s.allocations_mutex.unlock();
    if (s.counters_on) counters_record(*t, addr, size, false, kind, pc);
    return;
  }
  s.allocations_held = false;
  s.allocations_mutex.unlock();
  if (kind == Access::kRead && in_image(addr)) return;  // constants of the library
  fail("out-of-bounds or untracked global " + std::string(kind_name(kind)) + " of " +
       std::to_string(size) + " bytes at " + hex_address(addr) + " in " + kernel_name() + " by " +
       describe_thread(*t) + " (outside every tracked allocation)");
}

}  // namespace cuda_emu
