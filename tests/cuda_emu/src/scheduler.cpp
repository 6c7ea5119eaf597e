// Fibers, blocks and schedules: runs a launch thread by thread, and checks
// the launch configuration, barriers and warp collectives.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "state.h"

namespace cuda_emu {
namespace detail {
namespace {

constexpr unsigned kMaxThreads = 1024;

std::string site_text(const Site& s) { return std::string(s.file) + ":" + std::to_string(s.line); }

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::kSync: return "__syncwarp";
    case WarpOp::kShflIdx: return "__shfl_sync";
    case WarpOp::kShflUp: return "__shfl_up_sync";
    case WarpOp::kShflDown: return "__shfl_down_sync";
    case WarpOp::kShflXor: return "__shfl_xor_sync";
    case WarpOp::kBallot: return "__ballot_sync";
    case WarpOp::kAny: return "__any_sync";
    case WarpOp::kAll: return "__all_sync";
  }
  return "?";
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

std::string kernel_text() {
  const State& s = state();
  std::string name = s.spec ? s.spec->name : "?";
  if (s.spec && *s.spec->dtype) name += std::string(" [") + s.spec->dtype + "]";
  return name;
}

void check_configuration(const LaunchSpec& spec) {
  State& s = state();
  const std::string k = kernel_text();
  auto bad = [&](const std::string& why) { fail("invalid launch of " + k + ": " + why); };
  if (!s.pending_check.empty())
    fail("kernel " + s.pending_check + " was launched without C10_CUDA_KERNEL_LAUNCH_CHECK() after it");
  if (s.guard_depth <= 0) bad("no device guard (c10::cuda::CUDAGuard) is active");
  if (spec.stream != current_stream())
    bad("not on the current stream (pass at::cuda::getCurrentCUDAStream())");
  const dim3 g = spec.grid, b = spec.block;
  if (g.x == 0 || g.y == 0 || g.z == 0)
    bad("grid (" + std::to_string(g.x) + ", " + std::to_string(g.y) + ", " + std::to_string(g.z) +
        ") has no blocks");
  if (g.x > 2147483647u) bad("grid.x > 2^31 - 1");
  if (g.y > 65535u || g.z > 65535u) bad("grid.y or grid.z above 65535");
  if (b.x == 0 || b.y == 0 || b.z == 0) bad("empty block");
  if (static_cast<uint64_t>(b.x) * b.y * b.z > kMaxThreads)
    bad(std::to_string(static_cast<uint64_t>(b.x) * b.y * b.z) + " threads per block (max 1024)");
  if (b.x > 1024 || b.y > 1024 || b.z > 64) bad("block dimension above (1024, 1024, 64)");
  const size_t limit = shared_limit();
  if (spec.dynamic_shared > limit)
    bad(std::to_string(spec.dynamic_shared) + " bytes of dynamic shared memory above the " +
        std::to_string(limit) + "-byte limit (cudaFuncSetAttribute opts in)");
}

void fiber_main() {
  State& s = state();
  s.spec->invoke(s.spec->context);
  s.current->state = ThreadState::kExited;
  swapcontext(&s.current->context, &s.scheduler_context);
}

// Switches from the scheduler to t until it reaches a scheduling point.
void run_thread(Thread& t) {
  State& s = state();
  s.current = &t;
  swapcontext(&s.scheduler_context, &t.context);
  s.current = nullptr;
  if (!s.fault.empty()) {
    std::string message = std::move(s.fault);
    s.fault.clear();
    throw EmulationError(message);
  }
}

// Back to the scheduler from the running fiber.
void yield() {
  State& s = state();
  swapcontext(&s.current->context, &s.scheduler_context);
}

bool lane_exists(int warp, int lane) {
  return warp * kWarpSize + lane < state().threads_per_block;
}

Thread& lane_thread(int warp, int lane) { return state().threads[warp * kWarpSize + lane]; }

uint64_t collective_result(const Thread& t) {
  const int seg = t.lane & ~(t.width - 1);
  int src = t.lane;
  switch (t.op) {
    case WarpOp::kSync: return 0;
    case WarpOp::kShflIdx: src = seg + (t.param & (t.width - 1)); break;
    case WarpOp::kShflUp: src = t.lane - t.param >= seg ? t.lane - t.param : t.lane; break;
    case WarpOp::kShflDown: src = t.lane + t.param < seg + t.width ? t.lane + t.param : t.lane; break;
    case WarpOp::kShflXor: src = (t.lane ^ t.param) < seg + t.width ? t.lane ^ t.param : t.lane; break;
    case WarpOp::kBallot:
    case WarpOp::kAny:
    case WarpOp::kAll: {
      uint64_t ballot = 0;
      for (int l = 0; l < kWarpSize; ++l)
        if ((t.mask >> l & 1) && lane_thread(t.warp, l).value) ballot |= 1ull << l;
      if (t.op == WarpOp::kBallot) return ballot;
      if (t.op == WarpOp::kAny) return ballot != 0;
      return ballot == t.mask;
    }
  }
  if (!(t.mask >> src & 1)) {
    throw EmulationError(std::string(op_name(t.op)) + " at " + site_text(t.site) + ": " +
                         describe_thread(t) + " reads lane " + std::to_string(src) +
                         ", which is not in the mask " + hex(t.mask) + " (in " + kernel_text() + ")");
  }
  return lane_thread(t.warp, src).value;
}

// Completes the collective of warp w that lane `first` waits in, when every
// lane its mask names has arrived at the same collective.
bool try_complete(int warp, int first) {
  Thread& t = lane_thread(warp, first);
  for (int l = 0; l < kWarpSize; ++l) {
    if (!(t.mask >> l & 1)) continue;
    const Thread& o = lane_thread(warp, l);
    if (o.state != ThreadState::kAtWarp || o.op != t.op || o.mask != t.mask) return false;
  }
  std::vector<uint64_t> results;
  for (int l = 0; l < kWarpSize; ++l)
    if (t.mask >> l & 1) results.push_back(collective_result(lane_thread(warp, l)));
  size_t i = 0;
  for (int l = 0; l < kWarpSize; ++l) {
    if (!(t.mask >> l & 1)) continue;
    Thread& o = lane_thread(warp, l);
    o.result = results[i++];
    o.state = ThreadState::kReady;
  }
  ++state().warp_epoch[warp];
  return true;
}

// Explains why the collective lane `t` waits in can never complete.
std::string stuck_collective(const Thread& t) {
  std::ostringstream out;
  out << op_name(t.op) << " at " << site_text(t.site) << " with mask " << hex(t.mask) << " in "
      << kernel_text() << ": " << describe_thread(t) << " waits, but ";
  for (int l = 0; l < kWarpSize; ++l) {
    if (!(t.mask >> l & 1)) continue;
    const Thread& o = lane_thread(t.warp, l);
    if (o.state == ThreadState::kExited) {
      out << "lane " << l << " has exited (the mask names an exited lane)";
      return out.str();
    }
    if (o.state == ThreadState::kAtBarrier) {
      out << "lane " << l << " waits at __syncthreads at " << site_text(o.site)
          << " (a warp collective in a divergent branch)";
      return out.str();
    }
    if (o.state == ThreadState::kAtWarp && (o.op != t.op || o.mask != t.mask)) {
      out << "lane " << l << " waits in " << op_name(o.op) << " at " << site_text(o.site)
          << " with mask " << hex(o.mask) << " (mismatched collectives)";
      return out.str();
    }
  }
  out << "the collective cannot complete";
  return out.str();
}

std::vector<int> order_of(int n, std::mt19937_64& rng) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  const Schedule sch = state().schedule;
  if (sch == Schedule::kReversed) std::reverse(order.begin(), order.end());
  if (sch == Schedule::kRandom) std::shuffle(order.begin(), order.end(), rng);
  return order;
}

void run_block() {
  State& s = state();
  const dim3 b = s.spec->block;
  s.block_epoch = 0;
  std::fill(s.warp_epoch.begin(), s.warp_epoch.end(), 0);
  ++s.block_serial;
  reset_arena_for_block();
  for (int i = 0; i < s.threads_per_block; ++i) {
    Thread& t = s.threads[i];
    t.tid = i;
    t.warp = i / kWarpSize;
    t.lane = i % kWarpSize;
    t.idx = uint3{static_cast<unsigned>(i % b.x), static_cast<unsigned>((i / b.x) % b.y),
                  static_cast<unsigned>(i / (b.x * b.y))};
    t.state = ThreadState::kReady;
    t.runtime_depth = 0;
    t.accesses = 0;
    getcontext(&t.context);
    t.context.uc_stack.ss_sp = t.stack;
    t.context.uc_stack.ss_size = kStackBytes;
    t.context.uc_link = nullptr;
    makecontext(&t.context, fiber_main, 0);
  }
  for (;;) {
    bool ran = false;
    for (int i : order_of(s.threads_per_block, s.rng)) {
      Thread& t = s.threads[i];
      if (t.state != ThreadState::kReady) continue;
      run_thread(t);
      ran = true;
    }
    if (ran) continue;
    // Nobody can run: a barrier completes, or the block is done, or stuck.
    int exited = 0, at_barrier = 0;
    const Thread* waiting = nullptr;
    const Thread* gone = nullptr;
    for (int i = 0; i < s.threads_per_block; ++i) {
      const Thread& t = s.threads[i];
      if (t.state == ThreadState::kExited) {
        ++exited;
        if (!gone) gone = &t;
      } else if (t.state == ThreadState::kAtBarrier) {
        ++at_barrier;
        if (!waiting) waiting = &t;
      } else if (t.state == ThreadState::kAtWarp) {
        fail(stuck_collective(t));
      }
    }
    if (exited == s.threads_per_block) break;
    if (exited > 0)
      fail("barrier divergence in " + kernel_text() + ": " + describe_thread(*gone) +
           " has exited while " + describe_thread(*waiting) + " waits at __syncthreads at " +
           site_text(waiting->site));
    for (int i = 0; i < s.threads_per_block; ++i) {
      const Thread& t = s.threads[i];
      if (t.site.line != waiting->site.line || std::string(t.site.file) != waiting->site.file)
        fail("barrier divergence in " + kernel_text() + ": " + describe_thread(*waiting) +
             " waits at __syncthreads at " + site_text(waiting->site) + ", " + describe_thread(t) +
             " at " + site_text(t.site));
    }
    ++s.block_epoch;
    for (int i = 0; i < s.threads_per_block; ++i) s.threads[i].state = ThreadState::kReady;
  }
  for (int i = 0; i < s.threads_per_block; ++i)
    s.launch_max_accesses = std::max(s.launch_max_accesses, s.threads[i].accesses);
  if (s.counters_on) counters_end_block();
}

}  // namespace

State& state() {
  static State s;
  return s;
}

size_t shared_limit() {
  const State& s = state();
  const auto optin = s.dynamic_shared_optin.find(s.spec->kernel);
  return optin == s.dynamic_shared_optin.end() ? kStaticSharedLimit : std::max(kStaticSharedLimit, optin->second);
}

std::string describe_thread(const Thread& t) {
  const State& s = state();
  std::ostringstream out;
  out << "thread (" << t.idx.x << "," << t.idx.y << "," << t.idx.z << ") of block (" << s.block.x
      << "," << s.block.y << "," << s.block.z << ")";
  return out.str();
}

void fail(const std::string& message) {
  State& s = state();
  if (s.allocations_held) {
    s.allocations_held = false;
    s.allocations_mutex.unlock();
  }
  if (s.current) {
    ++s.current->runtime_depth;  // the fiber never resumes
    s.fault = message;
    swapcontext(&s.current->context, &s.scheduler_context);
    __builtin_unreachable();
  }
  throw EmulationError(message);
}

}  // namespace detail

using namespace detail;

uint3 thread_idx() { return state().current->idx; }
uint3 block_idx() { return state().block; }
dim3 block_dim() { return state().spec->block; }
dim3 grid_dim() { return state().spec->grid; }

void syncthreads(const char* file, int line) {
  State& s = state();
  s.current->state = ThreadState::kAtBarrier;
  s.current->site = Site{file, line};
  yield();
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int param, int width,
                         const char* file, int line) {
  State& s = state();
  Thread& t = *s.current;
  {
    const RuntimeCode runtime(&t);
    t.site = Site{file, line};
    auto where = [&] {
      return std::string(op_name(op)) + " at " + site_text(t.site) + " in " + kernel_text() + ": " +
             describe_thread(t);
    };
    if (width <= 0 || width > kWarpSize || (width & (width - 1)))
      fail(where() + " uses width " + std::to_string(width) + " (a power of two up to 32 expected)");
    if (!(mask >> t.lane & 1))
      fail(where() + " (lane " + std::to_string(t.lane) + ") is not in its own mask " + hex(mask));
    for (int l = 0; l < kWarpSize; ++l)
      if ((mask >> l & 1) && !lane_exists(t.warp, l))
        fail(where() + " names lane " + std::to_string(l) + " in mask " + hex(mask) +
             ", which does not exist in a block of " + std::to_string(s.threads_per_block) + " threads");
    t.op = op;
    t.mask = mask;
    t.value = value;
    t.param = param;
    t.width = width;
    t.state = ThreadState::kAtWarp;
    try {
      try_complete(t.warp, t.lane);
    } catch (const EmulationError& e) {
      fail(e.what());
    }
  }
  yield();
  return t.result;
}

unsigned active_mask() {
  State& s = state();
  const Thread& t = *s.current;
  unsigned mask = 0;
  for (int l = 0; l < kWarpSize; ++l)
    if (lane_exists(t.warp, l) && lane_thread(t.warp, l).state != ThreadState::kExited) mask |= 1u << l;
  return mask;
}

cudaStream_t current_stream() {
  static char token;
  return reinterpret_cast<cudaStream_t>(&token);
}

cudaDeviceProp& mutable_device_properties() {
  static cudaDeviceProp props{"cuda_emu (H100-like)", 132, 1024, 32, kStaticSharedLimit, kOptinSharedLimit};
  return props;
}

const cudaDeviceProp* device_properties() { return &mutable_device_properties(); }

void guard_enter() { ++state().guard_depth; }
void guard_exit() { --state().guard_depth; }
void launch_check() { state().pending_check.clear(); }
void set_max_dynamic_shared(const void* kernel, size_t bytes) {
  state().dynamic_shared_optin[kernel] = std::min(bytes, kOptinSharedLimit);
}

void launch(const LaunchSpec& spec) {
  State& s = state();
  s.spec = &spec;
  s.owner = pthread_self();
  struct Reset {
    ~Reset() {
      State& st = state();
      st.spec = nullptr;
      st.current = nullptr;
      st.params_begin = st.params_end = 0;
    }
  } reset;
  check_configuration(spec);
  s.pending_check = kernel_text();
  ++s.launch_serial;
  s.threads_per_block = static_cast<int>(spec.block.x * spec.block.y * spec.block.z);
  s.warps_per_block = (s.threads_per_block + kWarpSize - 1) / kWarpSize;
  s.warp_epoch.assign(s.warps_per_block, 0);
  if (s.threads.size() < static_cast<size_t>(s.threads_per_block)) s.threads.resize(s.threads_per_block);
  for (Thread& t : s.threads) {
    if (!t.stack) {
      void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) throw EmulationError("cannot allocate fiber stacks");
      t.stack = static_cast<char*>(p);
    }
  }
  s.params_begin = reinterpret_cast<uintptr_t>(spec.params);
  s.params_end = s.params_begin + spec.params_size;
  if (s.image.empty()) image_ranges(s.image);
  s.rng.seed(s.seed * 0x9E3779B97F4A7C15ull + s.launch_serial);
  reset_arena_for_launch();
  if (s.counters_on) counters_begin_launch();
  s.launch_max_accesses = 0;

  const dim3 g = spec.grid;
  const int64_t blocks = static_cast<int64_t>(g.x) * g.y * g.z;
  std::vector<int64_t> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  if (s.schedule == Schedule::kReversed) std::reverse(order.begin(), order.end());
  if (s.schedule == Schedule::kRandom) std::shuffle(order.begin(), order.end(), s.rng);
  for (int64_t linear : order) {
    s.block_linear = static_cast<int32_t>(linear);
    s.block = uint3{static_cast<unsigned>(linear % g.x), static_cast<unsigned>((linear / g.x) % g.y),
                    static_cast<unsigned>(linear / (static_cast<int64_t>(g.x) * g.y))};
    run_block();
  }
  std::string name = s.spec->name;
  if (*s.spec->dtype) name += std::string(" [") + s.spec->dtype + "]";
  uint64_t& most = s.max_thread_accesses[name];
  most = std::max(most, s.launch_max_accesses);
  if (s.counters_on) counters_end_launch();
}

const char* run_catching(void (*body)(void*), void* context) {
  static std::string message;
  try {
    body(context);
    if (!state().pending_check.empty()) {
      message = "kernel " + state().pending_check + " was launched without C10_CUDA_KERNEL_LAUNCH_CHECK() after it";
      state().pending_check.clear();
      return message.c_str();
    }
    return nullptr;
  } catch (const std::exception& e) {
    state().pending_check.clear();
    message = e.what();
    return message.c_str();
  }
}

}  // namespace cuda_emu
