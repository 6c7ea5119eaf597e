// Internal state of the emulator, shared by its translation units (which are
// compiled without instrumentation).
#pragma once

#include <pthread.h>
#include <ucontext.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_emu/runtime.h"

namespace cuda_emu {

// What the emulator reports: a check failed (race, divergence, bad launch...).
struct EmulationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

constexpr size_t kStackBytes = 256 * 1024;         // per fiber
constexpr size_t kStaticSharedLimit = 48 * 1024;   // without the opt-in
constexpr size_t kOptinSharedLimit = 227 * 1024;   // the most cudaFuncSetAttribute grants

enum class ThreadState : uint8_t { kReady, kAtBarrier, kAtWarp, kExited };

struct Site {
  const char* file = "";
  int line = 0;
};

struct Thread {
  ucontext_t context;
  char* stack = nullptr;
  int tid = 0, warp = 0, lane = 0;
  uint3 idx{0, 0, 0};
  ThreadState state = ThreadState::kReady;
  Site site;
  // Pending warp collective.
  WarpOp op = WarpOp::kSync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int param = 0, width = 32;
  // >0 while the emulator's own code runs on this fiber: its accesses (e.g.
  // through library templates that the linker took from an instrumented
  // translation unit) are not the kernel's and are not checked.
  int runtime_depth = 0;
  // Global and shared accesses of this thread in the running block (the
  // per-thread work the launch's report holds the maximum of).
  uint64_t accesses = 0;
};

// Marks the emulator's code running on the current fiber (see runtime_depth).
struct RuntimeCode {
  Thread* t;
  explicit RuntimeCode(Thread* thread) : t(thread) {
    if (t) ++t->runtime_depth;
  }
  ~RuntimeCode() {
    if (t) --t->runtime_depth;
  }
  RuntimeCode(const RuntimeCode&) = delete;
  RuntimeCode& operator=(const RuntimeCode&) = delete;
};

// Who touched a memory cell last, and when (for the race detector).
struct Touch {
  int32_t block = -1;  // linear block index, -1 = nobody
  uint32_t epoch = 0;  // block barrier epoch
  int32_t tid = -1;    // thread in block, kMany = several
  int32_t warp = -1;   // warp of the thread(s), -1 = several warps
  uint32_t warp_epoch = 0;
};
constexpr int32_t kMany = -2;

struct Cell {
  uint64_t stamp = 0;  // block serial (shared) or launch serial (global) of the records
  Touch write, read, atomic;
};

// A tracked global allocation (a tensor's storage, a test buffer).
struct Allocation {
  uintptr_t begin = 0;
  size_t size = 0;
  std::vector<Cell> cells;  // one per 4-byte granule, allocated on first use
};

enum class Region : uint8_t { kUnused, kVariable, kRedzone };

struct SharedVar {
  const char* name;
  size_t offset, size;
};

struct Counters;

struct State {
  // Configuration.
  Schedule schedule = Schedule::kForward;
  uint64_t seed = 0;
  bool counters_on = false;

  // Launch.
  const LaunchSpec* spec = nullptr;
  uint64_t launch_serial = 0;
  int threads_per_block = 0;
  int warps_per_block = 0;
  std::string pending_check;  // name of a launch not yet followed by a launch check
  int guard_depth = 0;
  std::map<const void*, size_t> dynamic_shared_optin;

  // Block.
  uint3 block{0, 0, 0};
  int32_t block_linear = 0;
  uint64_t block_serial = 0;
  uint32_t block_epoch = 0;
  std::vector<uint32_t> warp_epoch;
  std::vector<Thread> threads;
  Thread* current = nullptr;
  pthread_t owner{};  // the OS thread running the launch (others' accesses are not the kernel's)
  ucontext_t scheduler_context;
  std::string fault;  // set by a fiber that hit a check; the scheduler throws it
  std::mt19937_64 rng;

  // Shared memory arena of the running block.
  std::vector<unsigned char> arena;
  std::vector<Region> arena_region;
  std::vector<Cell> arena_cells;
  std::vector<SharedVar> shared_vars;
  size_t arena_used = 0, static_shared = 0, dynamic_offset = 0;

  // Global memory. Any OS thread may allocate or free a tensor while a kernel
  // runs, so the allocation table has its own lock.
  std::mutex allocations_mutex;
  bool allocations_held = false;  // the launch's thread holds allocations_mutex
  std::map<uintptr_t, std::unique_ptr<Allocation>> allocations;
  Allocation* last_allocation = nullptr;
  uintptr_t params_begin = 0, params_end = 0;
  std::vector<std::pair<uintptr_t, uintptr_t>> image;  // loaded segments of this library

  Counters* counters = nullptr;  // created on first use, lives as long as the process

  // Per-thread work, always on: the most global and shared accesses one
  // thread made, in the running launch and per kernel name since the last
  // clear.
  uint64_t launch_max_accesses = 0;
  std::map<std::string, uint64_t> max_thread_accesses;
};

State& state();

// The shared-memory limit of the running launch's kernel (static + dynamic).
size_t shared_limit();

// Fails the running launch: inside a fiber it returns to the scheduler (which
// throws), on the host it throws directly.
[[noreturn]] void fail(const std::string& message);
std::string describe_thread(const Thread& t);

// Memory (memory.cpp).
void reset_arena_for_launch();
void reset_arena_for_block();
void image_ranges(std::vector<std::pair<uintptr_t, uintptr_t>>& out);

// Counters (counters.cpp).
void counters_begin_launch();
void counters_record(const Thread& t, uintptr_t addr, size_t size, bool shared, Access kind,
                     const void* pc);
void counters_end_block();
void counters_end_launch();
std::string counters_json();
void counters_clear();

}  // namespace detail
}  // namespace cuda_emu
