// Dynamic work sharing for the CPU twins' parallel loops.
//
// at::parallel_for splits a range statically, one equal share per thread, so
// when another process holds a core one thread's share waits for it and the
// whole call waits at the end (on a 2-core machine two threads then run slower
// than one). Here the range is cut into pieces of `grain` that the threads
// take one at a time from a shared counter, on the pool of cpu_pool.h: a
// descheduled thread delays only the piece it holds, and a thread that has not
// started when the pieces run out is not waited for. Which thread runs a piece
// never changes what the piece computes, so results stay independent of the
// thread count and the timing.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu_pool.h"

namespace pgnface {

namespace parallel_detail {

// The grain that cuts [0, n) into at most kMaxPoolPieces pieces.
inline int64_t pool_grain(int64_t n, int64_t grain) {
  grain = std::max<int64_t>(grain, 1);
  return std::max(grain, (n + kMaxPoolPieces - 1) / kMaxPoolPieces);
}

}  // namespace parallel_detail

// Calls f(begin, end) for consecutive pieces [begin, end) of [0, n), each
// `grain` long (the last one shorter), spread over at::get_num_threads()
// threads; on one thread, f(0, n) once.
template <typename F>
void parallel_for_dynamic(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  grain = parallel_detail::pool_grain(n, grain);
  const int64_t pieces = (n + grain - 1) / grain;
  const int threads = at::get_num_threads();
  if (threads <= 1 || pieces == 1) return f(0, n);
  struct Job {
    const F* f;
    int64_t n, grain;
  } job{&f, n, grain};
  run_on_pool(
      pieces, threads,
      [](void* context, int64_t piece, PieceClaims& claims) {
        const Job& j = *static_cast<const Job*>(context);
        do {
          (*j.f)(piece* j.grain, std::min(j.n, (piece + 1) * j.grain));
        } while (claims.next(&piece));
      },
      &job);
}

// parallel_for_dynamic for loops that keep per-thread state, or leave work
// behind for the thread's next piece to overlap (streaming out a staged
// output, say): each thread that takes part default-constructs a State, calls
// f(state, begin, end) for every piece it takes, in order, and then
// done(state).
template <typename State, typename F, typename Done>
void parallel_for_dynamic_with_state(int64_t n, int64_t grain, const F& f, const Done& done) {
  if (n <= 0) return;
  grain = parallel_detail::pool_grain(n, grain);
  struct Job {
    const F* f;
    const Done* done;
    int64_t n, grain;
  } job{&f, &done, n, grain};
  run_on_pool((n + grain - 1) / grain, at::get_num_threads(),
              [](void* context, int64_t piece, PieceClaims& claims) {
                const Job& j = *static_cast<const Job*>(context);
                State state;
                do {
                  (*j.f)(state, piece* j.grain, std::min(j.n, (piece + 1) * j.grain));
                } while (claims.next(&piece));
                (*j.done)(state);
              },
              &job);
}

}  // namespace pgnface
