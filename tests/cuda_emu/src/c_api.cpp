// The emulator's control surface for Python (ctypes): schedule, counters,
// allocation tracking and the end-of-op launch-check test.
#include <string>

#include "state.h"

using namespace cuda_emu::detail;

extern "C" {

// schedule: 0 forward, 1 reversed, 2 seeded random.
void cuda_emu_configure(int schedule, unsigned long long seed, int counters) {
  State& s = state();
  s.schedule = static_cast<cuda_emu::Schedule>(schedule);
  s.seed = seed;
  s.counters_on = counters != 0;
}

void cuda_emu_track(const void* ptr, unsigned long long bytes) { cuda_emu::track_allocation(ptr, bytes); }
void cuda_emu_untrack(const void* ptr) { cuda_emu::untrack_allocation(ptr); }

// Called after every emulated op: an error message when the op's last launch
// had no launch check after it, else nullptr.
const char* cuda_emu_end_op() {
  static std::string message;
  State& s = state();
  if (s.pending_check.empty()) return nullptr;
  message = "kernel " + s.pending_check + " was launched without C10_CUDA_KERNEL_LAUNCH_CHECK() after it";
  s.pending_check.clear();
  return message.c_str();
}

// Forgets the state a failed op left behind (pending launch check).
void cuda_emu_reset_op() { state().pending_check.clear(); }

unsigned long long cuda_emu_launches() { return state().launch_serial; }

const char* cuda_emu_counters_json() {
  static std::string json;
  json = counters_json();
  return json.c_str();
}

void cuda_emu_counters_clear() { counters_clear(); }

// The SM count the emulated device reports (132 by default), so tests can
// show that results do not depend on it.
void cuda_emu_set_multiprocessors(int count) { cuda_emu::mutable_device_properties().multiProcessorCount = count; }

// Per kernel, the most global and shared accesses (atomics included) one
// thread made in any launch since the last clear: {"kernel [dtype]": n, ...}.
const char* cuda_emu_thread_work_json() {
  static std::string json;
  json = "{";
  for (const auto& [name, n] : state().max_thread_accesses) {
    if (json.size() > 1) json += ",";
    json += "\"" + name + "\":" + std::to_string(n);
  }
  json += "}";
  return json.c_str();
}

void cuda_emu_thread_work_clear() { state().max_thread_accesses.clear(); }

}  // extern "C"
