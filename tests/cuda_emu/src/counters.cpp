// Performance counters from emulation, per kernel: global-memory sectors per
// warp request (coalescing), shared-memory bank conflicts per request, active
// lanes per request (divergence), atomics per target address. Global loads
// are also counted apart (global_load_*), so that the coalescing of what a
// kernel reads is not averaged with its stores and atomics.
//
// A warp request is what one instruction issues for the warp: the k-th
// execution of an instruction by each lane of a warp forms one request (lanes
// run the same instruction stream in SIMT order).
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "state.h"

namespace cuda_emu {
namespace detail {

struct LaneAccess {
  uintptr_t addr;
  uint32_t size;
  int lane;
};

struct Request {
  bool shared;
  bool load;
  std::vector<LaneAccess> lanes;
};

struct KernelTotals {
  uint64_t launches = 0;
  uint64_t global_requests = 0, global_sectors = 0, global_ideal_sectors = 0;
  uint64_t global_load_requests = 0, global_load_sectors = 0, global_load_ideal_sectors = 0;
  uint64_t shared_requests = 0, shared_wavefronts = 0, shared_ideal_wavefronts = 0;
  uint64_t lanes_active = 0, lane_slots = 0;
  uint64_t atomics = 0, atomic_addresses = 0;
};

struct Counters {
  // (warp, pc, occurrence) -> request, for the running block.
  std::map<std::tuple<int, uintptr_t, uint32_t>, Request> requests;
  std::unordered_map<uint64_t, uint32_t> occurrence;  // (tid, pc) -> executions so far
  std::unordered_set<uintptr_t> atomic_targets;
  KernelTotals launch;
  std::map<std::string, KernelTotals> kernels;
};

namespace {

Counters& counters() {
  State& s = state();
  if (!s.counters) s.counters = new Counters();
  return *s.counters;
}

uint64_t distinct_sectors(const Request& r) {
  std::set<uintptr_t> sectors;
  for (const LaneAccess& a : r.lanes)
    for (uintptr_t x = a.addr / 32; x <= (a.addr + a.size - 1) / 32; ++x) sectors.insert(x);
  return sectors.size();
}

// Bytes the request moves when every lane's bytes are distinct and packed.
uint64_t ideal_sectors(const Request& r) {
  std::set<uintptr_t> bytes_words;
  for (const LaneAccess& a : r.lanes)
    for (uintptr_t x = a.addr / 4; x <= (a.addr + a.size - 1) / 4; ++x) bytes_words.insert(x);
  return (bytes_words.size() * 4 + 31) / 32;
}

// (wavefronts, ideal wavefronts): 32 banks of 4-byte words; lanes reading the
// same word share it.
std::pair<uint64_t, uint64_t> wavefronts(const Request& r) {
  std::set<uintptr_t> words;
  for (const LaneAccess& a : r.lanes)
    for (uintptr_t x = a.addr / 4; x <= (a.addr + a.size - 1) / 4; ++x) words.insert(x);
  std::map<int, int> per_bank;
  int worst = 0;
  for (uintptr_t w : words) worst = std::max(worst, ++per_bank[static_cast<int>(w % 32)]);
  return {static_cast<uint64_t>(worst), (words.size() + 31) / 32};
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

void counters_begin_launch() {
  Counters& c = counters();
  c.launch = KernelTotals{};
  c.launch.launches = 1;
  c.atomic_targets.clear();
  c.requests.clear();
  c.occurrence.clear();
}

void counters_record(const Thread& t, uintptr_t addr, size_t size, bool shared, Access kind,
                     const void* pc) {
  Counters& c = counters();
  const uintptr_t site = reinterpret_cast<uintptr_t>(pc);
  const uint32_t k = c.occurrence[(static_cast<uint64_t>(t.tid) << 48) ^ site]++;
  Request& r = c.requests[{t.warp, site, k}];
  r.shared = shared;
  r.load = kind == Access::kRead;
  r.lanes.push_back(LaneAccess{addr, static_cast<uint32_t>(size), t.lane});
  if (kind == Access::kAtomic) {
    ++c.launch.atomics;
    c.atomic_targets.insert(addr);
  }
}

void counters_end_block() {
  Counters& c = counters();
  KernelTotals& k = c.launch;
  for (const auto& [key, r] : c.requests) {
    std::set<int> lanes;
    for (const LaneAccess& a : r.lanes) lanes.insert(a.lane);
    k.lanes_active += lanes.size();
    k.lane_slots += kWarpSize;
    if (r.shared) {
      const auto [w, ideal] = wavefronts(r);
      ++k.shared_requests;
      k.shared_wavefronts += w;
      k.shared_ideal_wavefronts += ideal;
    } else {
      const uint64_t sectors = distinct_sectors(r), ideal = ideal_sectors(r);
      ++k.global_requests;
      k.global_sectors += sectors;
      k.global_ideal_sectors += ideal;
      if (r.load) {
        ++k.global_load_requests;
        k.global_load_sectors += sectors;
        k.global_load_ideal_sectors += ideal;
      }
    }
  }
  c.requests.clear();
  c.occurrence.clear();
}

void counters_end_launch() {
  Counters& c = counters();
  State& s = state();
  std::string name = s.spec->name;
  if (*s.spec->dtype) name += std::string(" [") + s.spec->dtype + "]";
  c.launch.atomic_addresses = c.atomic_targets.size();
  KernelTotals& t = c.kernels[name];
  const KernelTotals& l = c.launch;
  t.launches += l.launches;
  t.global_requests += l.global_requests;
  t.global_sectors += l.global_sectors;
  t.global_ideal_sectors += l.global_ideal_sectors;
  t.global_load_requests += l.global_load_requests;
  t.global_load_sectors += l.global_load_sectors;
  t.global_load_ideal_sectors += l.global_load_ideal_sectors;
  t.shared_requests += l.shared_requests;
  t.shared_wavefronts += l.shared_wavefronts;
  t.shared_ideal_wavefronts += l.shared_ideal_wavefronts;
  t.lanes_active += l.lanes_active;
  t.lane_slots += l.lane_slots;
  t.atomics += l.atomics;
  t.atomic_addresses += l.atomic_addresses;
}

std::string counters_json() {
  std::ostringstream out;
  out << "{";
  bool first = true;
  for (const auto& [name, t] : counters().kernels) {
    out << (first ? "" : ",") << "\"" << json_escape(name) << "\":{"
        << "\"launches\":" << t.launches << ",\"global_requests\":" << t.global_requests
        << ",\"global_sectors\":" << t.global_sectors
        << ",\"global_ideal_sectors\":" << t.global_ideal_sectors
        << ",\"global_load_requests\":" << t.global_load_requests
        << ",\"global_load_sectors\":" << t.global_load_sectors
        << ",\"global_load_ideal_sectors\":" << t.global_load_ideal_sectors
        << ",\"shared_requests\":" << t.shared_requests
        << ",\"shared_wavefronts\":" << t.shared_wavefronts
        << ",\"shared_ideal_wavefronts\":" << t.shared_ideal_wavefronts
        << ",\"lanes_active\":" << t.lanes_active << ",\"lane_slots\":" << t.lane_slots
        << ",\"atomics\":" << t.atomics << ",\"atomic_addresses\":" << t.atomic_addresses << "}";
    first = false;
  }
  out << "}";
  return out.str();
}

void counters_clear() { counters().kernels.clear(); }

}  // namespace detail
}  // namespace cuda_emu
