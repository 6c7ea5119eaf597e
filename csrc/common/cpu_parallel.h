// Dynamic work sharing for the CPU twins' parallel loops.
//
// at::parallel_for splits a range statically, one equal share per thread, so
// when another process holds a core one thread's share waits for it and the
// whole call waits at the end (on a 2-core machine two threads then run slower
// than one). Here the range is cut into pieces of `grain` that the threads
// take one at a time from a shared counter: a descheduled thread delays only
// the piece it holds. Which thread runs a piece never changes what the piece
// computes, so results stay independent of the thread count and the timing.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace pgnface {

// Calls f(begin, end) for consecutive pieces [begin, end) of [0, n), each
// `grain` long (the last one shorter), spread over at::parallel_for's threads.
template <typename F>
void parallel_for_dynamic(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t pieces = (n + grain - 1) / grain;
  const int64_t workers = std::min<int64_t>(pieces, at::get_num_threads());
  if (workers <= 1) {
    f(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t p = next.fetch_add(1, std::memory_order_relaxed); p < pieces;
         p = next.fetch_add(1, std::memory_order_relaxed)) {
      f(p * grain, std::min(n, (p + 1) * grain));
    }
  });
}

// parallel_for_dynamic for loops that leave work behind for the thread's next
// piece to overlap (streaming out a staged output, say): each thread that
// takes part default-constructs a State, calls f(state, begin, end) for every
// piece it takes, in order, and then done(state).
template <typename State, typename F, typename Done>
void parallel_for_dynamic_with_state(int64_t n, int64_t grain, const F& f, const Done& done) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t pieces = (n + grain - 1) / grain;
  const int64_t workers = std::min<int64_t>(pieces, at::get_num_threads());
  std::atomic<int64_t> next{0};
  const auto work = [&] {
    State state;
    for (int64_t p = next.fetch_add(1, std::memory_order_relaxed); p < pieces;
         p = next.fetch_add(1, std::memory_order_relaxed)) {
      f(state, p * grain, std::min(n, (p + 1) * grain));
    }
    done(state);
  };
  if (workers <= 1) return work();
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) { work(); });
}

}  // namespace pgnface
