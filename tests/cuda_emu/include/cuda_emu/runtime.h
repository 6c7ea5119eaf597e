// The CUDA execution model on the CPU: the dialect's keywords, built-in
// variables, warp collectives, atomics and kernel launches, for g++.
//
// Every CUDA thread of a block is a fiber; blocks run one after another.
// __syncthreads and the warp collectives are the scheduling points: between
// them the threads run in the order the schedule picks (forward, reversed or
// seeded random). Kernel code is compiled with -fsanitize=thread, whose
// memory-access callbacks the emulator implements itself (src/tsan_abi.cpp),
// so every load and store of a kernel is checked: races, uninitialised shared
// memory, out-of-bounds accesses. See docs/cuda_emulation.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// --- the dialect ---------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// `__shared__` declarations are rewritten by the emulator's build
// (tests/cuda_emu/build.py) into per-block arena variables; one left over
// is a compile error naming it.
#define __shared__ pgn_emu_error_shared_declaration_not_rewritten
#define __CUDA_EMULATION__ 1
#define PGN_EMU_NO_TSAN __attribute__((no_sanitize_thread, noinline))

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

typedef struct CUstream_emu* cudaStream_t;
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;

// Device properties the host code of the kernels reads (an H100-like device).
struct cudaDeviceProp {
  char name[64];
  int multiProcessorCount;
  int maxThreadsPerBlock;
  int warpSize;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
};

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace cuda_emu {

constexpr int kWarpSize = 32;

enum class Schedule : int { kForward = 0, kReversed = 1, kRandom = 2 };
enum class WarpOp : int { kSync, kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll };
enum class Access : int { kRead = 0, kWrite = 1, kAtomic = 2 };

// Built-in variables of the running CUDA thread.
uint3 thread_idx();
uint3 block_idx();
dim3 block_dim();
dim3 grid_dim();

void syncthreads(const char* file, int line);
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int param, int width,
                         const char* file, int line);
unsigned active_mask();

// Checks and records one access of the running thread (the tsan callbacks and
// the atomics call it). pc identifies the instruction for the counters.
void on_access(const void* addr, size_t size, Access kind, const void* pc);

// Shared memory: one arena per block, a slot per declaration.
struct SharedSite {
  uint64_t launch;  // launch serial the offset belongs to
  size_t offset;
};
void* shared_slot(SharedSite& site, size_t size, size_t align, const char* name);
void* dynamic_shared_base();

template <typename T>
T& shared_var(SharedSite& site, const char* name) {
  return *static_cast<T*>(shared_slot(site, sizeof(T), alignof(T), name));
}
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_base());
}

// Host side: streams, device guards, launch checks, allocations.
cudaStream_t current_stream();
const cudaDeviceProp* device_properties();
cudaDeviceProp& mutable_device_properties();  // for the control surface (src/c_api.cpp)
void guard_enter();
void guard_exit();
void launch_check();
void set_max_dynamic_shared(const void* kernel, size_t bytes);
void track_allocation(const void* ptr, size_t bytes);
void untrack_allocation(const void* ptr);

struct LaunchSpec {
  const char* name;
  const char* dtype;
  dim3 grid, block;
  size_t dynamic_shared;
  cudaStream_t stream;
  const void* kernel;
  void (*invoke)(void*);
  void* context;
  const void* params;
  size_t params_size;
};
void launch(const LaunchSpec& spec);

// The element type a kernel works on, from its first floating-point pointer
// parameter (labels launches in reports and counters).
template <typename... P>
constexpr const char* dtype_label() {
  const char* label = "";
  auto pick = [&](auto tag) {
    using Q = std::remove_cv_t<std::remove_pointer_t<typename decltype(tag)::type>>;
    if (*label == '\0' && std::is_pointer_v<typename decltype(tag)::type>) {
      if (std::is_same_v<Q, float>) label = "float";
      if (std::is_same_v<Q, double>) label = "double";
    }
  };
  (pick(std::type_identity<P>{}), ...);
  return label;
}

template <typename... P>
class Launcher {
 public:
  Launcher(const char* name, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
           void (*kernel)(P...))
      : spec_{name, dtype_label<P...>(), grid, block, shmem, stream,
              reinterpret_cast<const void*>(kernel), nullptr, nullptr, nullptr, 0},
        kernel_(kernel) {}

  // Converts the arguments to the kernel's parameter types, as a launch does,
  // and runs the grid.
  template <typename... A>
  void operator()(A&&... args) {
    // The kernel pointer and the parameters are the launch's parameter space:
    // threads read them, nothing writes them.
    struct Frame {
      void (*kernel)(P...);
      std::tuple<std::decay_t<P>...> params;
    } frame{kernel_, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
    spec_.invoke = [](void* f) {
      auto* fr = static_cast<Frame*>(f);
      std::apply(fr->kernel, fr->params);
    };
    spec_.context = &frame;
    spec_.params = &frame;
    spec_.params_size = sizeof(frame);
    launch(spec_);
  }

 private:
  LaunchSpec spec_;
  void (*kernel_)(P...);
};

template <typename... P>
Launcher<P...> make_launcher(const char* name, dim3 grid, dim3 block, size_t shmem,
                             cudaStream_t stream, void (*kernel)(P...)) {
  return Launcher<P...>(name, grid, block, shmem, stream, kernel);
}

// Runs host code that may launch kernels; returns nullptr or the error message
// (for entry points called through ctypes).
const char* run_catching(void (*body)(void*), void* context);

template <typename U>
PGN_EMU_NO_TSAN uint64_t to_bits(U v) {
  static_assert(sizeof(U) <= 8, "warp collectives exchange at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(U));
  return bits;
}
template <typename U>
PGN_EMU_NO_TSAN U from_bits(uint64_t bits) {
  U v;
  std::memcpy(&v, &bits, sizeof(U));
  return v;
}

template <typename T, typename Op>
PGN_EMU_NO_TSAN T atomic_update(T* address, const void* pc, Op op) {
  on_access(address, sizeof(T), Access::kAtomic, pc);
  const T old = *address;
  *address = op(old);
  return old;
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::thread_idx())
#define blockIdx (::cuda_emu::block_idx())
#define blockDim (::cuda_emu::block_dim())
#define gridDim (::cuda_emu::grid_dim())
constexpr int warpSize = cuda_emu::kWarpSize;

// The launch syntax (csrc/common/launch.h maps PGN_LAUNCH here in emulation).
#define PGN_EMU_LAUNCH(grid, block, shmem, stream, ...) \
  ::cuda_emu::make_launcher(#__VA_ARGS__, grid, block, shmem, stream, &__VA_ARGS__)

// --- synchronisation and warp collectives -------------------------------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuda_emu::syncthreads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  cuda_emu::warp_collective(cuda_emu::WarpOp::kSync, mask, 0, 0, 32, file, line);
}
inline unsigned __activemask() { return cuda_emu::active_mask(); }

#define PGN_EMU_SHUFFLE(fn, op, ParamT)                                                         \
  template <typename T>                                                                         \
  inline T fn(unsigned mask, T v, ParamT param, int width = 32,                                  \
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {               \
    return cuda_emu::from_bits<T>(cuda_emu::warp_collective(                                    \
        cuda_emu::WarpOp::op, mask, cuda_emu::to_bits(v), static_cast<int>(param), width, file, \
        line));                                                                                  \
  }
PGN_EMU_SHUFFLE(__shfl_sync, kShflIdx, int)
PGN_EMU_SHUFFLE(__shfl_up_sync, kShflUp, unsigned)
PGN_EMU_SHUFFLE(__shfl_down_sync, kShflDown, unsigned)
PGN_EMU_SHUFFLE(__shfl_xor_sync, kShflXor, int)
#undef PGN_EMU_SHUFFLE

inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(
      cuda_emu::warp_collective(cuda_emu::WarpOp::kBallot, mask, pred != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(
      cuda_emu::warp_collective(cuda_emu::WarpOp::kAny, mask, pred != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(
      cuda_emu::warp_collective(cuda_emu::WarpOp::kAll, mask, pred != 0, 0, 32, file, line));
}

// --- atomics (each returns the old value) --------------------------------------
#define PGN_EMU_ATOMIC(fn, T, expr)                                       \
  PGN_EMU_NO_TSAN inline T fn(T* address, T val) {                        \
    return cuda_emu::atomic_update(address, __builtin_return_address(0),  \
                                   [val](T old) -> T { return expr; });   \
  }
#define PGN_EMU_ATOMIC_ALL_INTS(fn, expr)         \
  PGN_EMU_ATOMIC(fn, int, expr)                   \
  PGN_EMU_ATOMIC(fn, unsigned, expr)              \
  PGN_EMU_ATOMIC(fn, long long, expr)             \
  PGN_EMU_ATOMIC(fn, unsigned long long, expr)
PGN_EMU_ATOMIC_ALL_INTS(atomicAdd, old + val)
PGN_EMU_ATOMIC(atomicAdd, float, old + val)
PGN_EMU_ATOMIC(atomicAdd, double, old + val)
PGN_EMU_ATOMIC_ALL_INTS(atomicMin, val < old ? val : old)
PGN_EMU_ATOMIC_ALL_INTS(atomicMax, old < val ? val : old)
PGN_EMU_ATOMIC_ALL_INTS(atomicExch, val)
PGN_EMU_ATOMIC_ALL_INTS(atomicOr, old | val)
PGN_EMU_ATOMIC(atomicExch, float, val)
PGN_EMU_ATOMIC(atomicExch, double, val)
#undef PGN_EMU_ATOMIC_ALL_INTS
#undef PGN_EMU_ATOMIC

#define PGN_EMU_ATOMIC_CAS(T)                                                   \
  PGN_EMU_NO_TSAN inline T atomicCAS(T* address, T compare, T val) {            \
    return cuda_emu::atomic_update(address, __builtin_return_address(0),        \
                                   [=](T old) -> T { return old == compare ? val : old; }); \
  }
PGN_EMU_ATOMIC_CAS(int)
PGN_EMU_ATOMIC_CAS(unsigned)
PGN_EMU_ATOMIC_CAS(unsigned long long)
#undef PGN_EMU_ATOMIC_CAS

// --- host API used by kernel launch code ---------------------------------------
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "no error"; }
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
    cuda_emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
  return cudaSuccess;
}

#include "device_math.h"

namespace cuda_emu {
// What c10::cuda::CUDAGuard does for the checks: marks a device as selected.
struct DeviceGuard {
  DeviceGuard() { guard_enter(); }
  ~DeviceGuard() { guard_exit(); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};
}  // namespace cuda_emu
