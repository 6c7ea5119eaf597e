// The CPU twins' thread pool: pieces of a parallel loop go only to threads
// that are running.
//
// An OpenMP parallel region (at::parallel_for) ends at a barrier that waits
// for every thread of its team. When another process holds a core, the
// system may not run one of the team's threads for a whole time slice (several
// milliseconds), and a call that takes one millisecond on one thread then
// takes ten on two. Here the calling thread posts the job and starts on its
// pieces at once; pool threads join as they wake, each taking pieces from a
// shared counter. The call returns when every piece is done and every thread
// that took one has finished: a thread that has not started by then takes
// none, and the call does not wait for it.
//
// One job runs at a time; a call made while another thread's job runs, from
// inside a job, or from inside an OpenMP region runs its pieces on the
// calling thread. Which thread runs a piece never changes what it computes.
//
// Off by default (cpu_pool_enabled): after any torch op, torch's own OpenMP
// threads keep spinning for milliseconds, and a pool thread sharing a core
// with one runs at half speed, so where torch ops run between the ops (most
// programs) torch's threads serve better. On a machine that other processes
// load, for a loop of these ops alone, the pool keeps two threads faster than
// one where OpenMP's end of region can stall a call for a time slice.
#pragma once

#include <atomic>
#include <cstdint>

namespace pgnface {

// Hands out the pieces of one job, each exactly once, to the threads taking
// part in it.
class PieceClaims {
 public:
  // Claims on a job's shared state word (cpu_pool.cpp packs a job tag, the
  // piece count and the next piece into it), or, with state == nullptr, on
  // pieces [0, pieces) of this thread alone.
  PieceClaims(std::atomic<uint64_t>* state, uint64_t tag_and_pieces, int64_t pieces)
      : state_(state), tag_and_pieces_(tag_and_pieces), pieces_(pieces) {}

  // Sets *piece to the next unclaimed piece and returns true, or returns
  // false when every piece of the job has been claimed.
  bool next(int64_t* piece) {
    if (state_ == nullptr) {
      if (local_ >= pieces_) return false;
      *piece = local_++;
      return true;
    }
    uint64_t word = state_->load(std::memory_order_relaxed);
    for (;;) {
      const int64_t index = static_cast<int64_t>(word & kIndexMask);
      if ((word & ~kIndexMask) != tag_and_pieces_ || index >= pieces_) return false;
      if (state_->compare_exchange_weak(word, word + 1, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
        *piece = index;
        return true;
      }
    }
  }

  // The state word's low bits hold the next piece.
  static constexpr int kIndexBits = 22;
  static constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

 private:
  std::atomic<uint64_t>* state_;
  uint64_t tag_and_pieces_;
  int64_t pieces_;
  int64_t local_ = 0;
};

// Most pieces one job can have (callers group more into larger pieces).
constexpr int64_t kMaxPoolPieces = (int64_t{1} << PieceClaims::kIndexBits) - 1;

// What each thread taking part in a job runs: called with the first piece it
// claimed, it runs that piece and claims the rest through `claims` until none
// are left. `context` is the caller's.
using PoolParticipant = void (*)(void* context, int64_t first_piece, PieceClaims& claims);

// Runs a job of `pieces` pieces (1 <= pieces <= kMaxPoolPieces) on the
// calling thread and up to threads - 1 pool threads, and returns when every
// thread that took part has returned from `participant`. An exception thrown
// by a participant is rethrown here.
void run_on_pool(int64_t pieces, int threads, PoolParticipant participant, void* context);

// Whether the CPU twins' parallel loops (cpu_parallel.h) run on this pool
// rather than on torch's OpenMP threads: PGN_CPU_POOL=1 in the environment
// turns it on at load, set_cpu_pool_enabled (torch.ops.pgnface.set_cpu_pool)
// at any time between calls.
bool cpu_pool_enabled();

// Sets cpu_pool_enabled(); returns the previous setting.
bool set_cpu_pool_enabled(bool enabled);

}  // namespace pgnface
