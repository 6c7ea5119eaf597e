// Dynamic work sharing for the CPU twins' parallel loops.
//
// at::parallel_for splits a range statically, one equal share per thread, so
// when another process holds a core one thread's share waits for it and the
// whole call waits at the end (on a 2-core machine two threads then run slower
// than one). Here the range is cut into pieces of `grain` that the threads
// take one at a time from a shared counter: a descheduled thread delays only
// the piece it holds. Which thread runs a piece never changes what the piece
// computes, so results stay independent of the thread count and the timing.
//
// The threads are torch's own (OpenMP, through at::parallel_for), or, where
// cpu_pool_enabled(), the pool of cpu_pool.h, which does not wait at the end
// for a thread that has not started. Torch's are the default: after any torch
// op they keep spinning for milliseconds, and a pool thread sharing a core
// with one of them runs at half speed (svd3x3 right after a torch.sum on two
// threads: 2.65 ms on the pool, 2.13 ms on torch's threads).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cpu_pool.h"

namespace pgnface {

// Cuts [0, n) into pieces of `grain` (the last one shorter) that threads
// take one at a time, for loops that keep per-thread state or leave work
// behind for the thread's next piece to overlap (streaming out a staged
// output, say): each thread that takes part default-constructs a State, calls
// f(state, begin, end) for every piece it takes, in order, and then
// done(state). On one thread: one State, every piece in order.
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
  if (cpu_pool_enabled() && pieces <= kMaxPoolPieces) {
    struct Job {
      const F* f;
      const Done* done;
      int64_t n, grain;
    } job{&f, &done, n, grain};
    run_on_pool(
        pieces, static_cast<int>(workers),
        [](void* context, int64_t piece, PieceClaims& claims) {
          const Job& j = *static_cast<const Job*>(context);
          State state;
          do {
            (*j.f)(state, piece* j.grain, std::min(j.n, (piece + 1) * j.grain));
          } while (claims.next(&piece));
          (*j.done)(state);
        },
        &job);
    return;
  }
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) { work(); });
}

// Calls f(begin, end) for consecutive pieces [begin, end) of [0, n), each
// `grain` long (the last one shorter), spread over at::parallel_for's threads;
// on one thread, f(0, n) once.
template <typename F>
void parallel_for_dynamic(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t pieces = (n + grain - 1) / grain;
  if (std::min<int64_t>(pieces, at::get_num_threads()) <= 1) {
    f(0, n);
    return;
  }
  struct NoState {};
  parallel_for_dynamic_with_state<NoState>(
      n, grain, [&](NoState&, int64_t begin, int64_t end) { f(begin, end); }, [](NoState&) {});
}

}  // namespace pgnface
