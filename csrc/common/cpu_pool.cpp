// The CPU twins' thread pool (cpu_pool.h).
//
// A job is published as one 64-bit state word: a tag that changes with every
// job, the piece count and the next piece. A pool thread that wakes reads
// the word, counts itself in `active`, and only then claims: a claim is a
// compare-and-swap on the whole word, so a thread holding a stale word claims
// nothing. The caller, once its own claims fail, waits for `active` to reach
// zero; a thread that counted itself in before its claim succeeded is waited
// for, one that had not yet claims nothing. The job's participant and context
// are read only after a successful claim, when the caller is still waiting.
#include "cpu_pool.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__unix__)
#include <pthread.h>
#endif

namespace pgnface {
namespace {

constexpr int kPiecesShift = PieceClaims::kIndexBits;
constexpr int kTagShift = 2 * PieceClaims::kIndexBits;

// How long an idle pool thread keeps polling for the next job before it
// sleeps: back-to-back calls find it awake, while between bursts of calls it
// leaves the core to torch's own threads.
constexpr auto kIdleSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

thread_local bool in_pool_thread = false;

class Pool {
 public:
  void run(int64_t pieces, int threads, PoolParticipant participant, void* context) {
    std::unique_lock<std::mutex> lock(job_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return run_alone(pieces, participant, context);
    start_threads(threads - 1);
    participant_.store(participant, std::memory_order_relaxed);
    context_.store(context, std::memory_order_relaxed);
    helpers_.store(threads - 1, std::memory_order_relaxed);
    error_ = nullptr;
    tag_ = (tag_ + 1) & ((uint64_t{1} << (64 - kTagShift)) - 1);
    const uint64_t tag_and_pieces =
        (tag_ << kTagShift) | (static_cast<uint64_t>(pieces) << kPiecesShift);
    state_.store(tag_and_pieces, std::memory_order_seq_cst);
    posted_.fetch_add(1, std::memory_order_release);
    posted_.notify_all();
    PieceClaims claims(&state_, tag_and_pieces, pieces);
    take_part(claims);
    // Every piece is claimed: wait for the threads still running theirs.
    for (int spins = 0; active_.load(std::memory_order_seq_cst) != 0; ++spins) {
      if (spins < 4096) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

  static void run_alone(int64_t pieces, PoolParticipant participant, void* context) {
    PieceClaims claims(nullptr, 0, pieces);
    int64_t first;
    if (claims.next(&first)) participant(context, first, claims);
  }

 private:
  // Runs the job's participant if a first piece can be claimed.
  void take_part(PieceClaims& claims) {
    int64_t first;
    if (!claims.next(&first)) return;
    try {
      participant_.load(std::memory_order_relaxed)(context_.load(std::memory_order_relaxed), first,
                                                   claims);
    } catch (...) {
      std::lock_guard<std::mutex> guard(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void start_threads(int wanted) {
    while (static_cast<int>(threads_started_) < wanted) {
      std::thread(&Pool::serve, this, static_cast<int>(threads_started_)).detach();
      ++threads_started_;
    }
  }

  // A pool thread: waits for jobs and takes part in those that want it.
  void serve(int index) {
    in_pool_thread = true;
    uint32_t seen = posted_.load(std::memory_order_acquire);
    for (;;) {
      seen = wait_for_job(seen);
      if (index >= helpers_.load(std::memory_order_relaxed)) continue;
      const uint64_t word = state_.load(std::memory_order_seq_cst);
      active_.fetch_add(1, std::memory_order_seq_cst);
      const uint64_t tag_and_pieces = word & ~PieceClaims::kIndexMask;
      const int64_t pieces = static_cast<int64_t>((word >> kPiecesShift) & PieceClaims::kIndexMask);
      PieceClaims claims(&state_, tag_and_pieces, pieces);
      take_part(claims);
      active_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  // Returns the new value of posted_ once it differs from `seen`: polling for
  // kIdleSpin, then asleep.
  uint32_t wait_for_job(uint32_t seen) {
    const auto until = std::chrono::steady_clock::now() + kIdleSpin;
    for (int spins = 0;; ++spins) {
      const uint32_t now = posted_.load(std::memory_order_acquire);
      if (now != seen) return now;
      if ((spins & 63) == 63 && std::chrono::steady_clock::now() > until) break;
      cpu_relax();
    }
    for (;;) {
      posted_.wait(seen, std::memory_order_acquire);
      const uint32_t now = posted_.load(std::memory_order_acquire);
      if (now != seen) return now;
    }
  }

  std::mutex job_mutex_;  // one job at a time
  uint64_t tag_ = 0;      // the current job's tag (under job_mutex_)
  unsigned threads_started_ = 0;
  std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> posted_{0};  // counts jobs; pool threads wait on it
  std::atomic<int> active_{0};       // pool threads inside the current job
  std::atomic<int> helpers_{0};      // pool threads the current job wants
  std::atomic<PoolParticipant> participant_{nullptr};
  std::atomic<void*> context_{nullptr};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Never destroyed: its threads live until the process ends. A forked child
// has none of them and starts a pool of its own.
Pool* pool = new Pool;

#if defined(__unix__)
[[maybe_unused]] const int fork_handler_installed =
    pthread_atfork(nullptr, nullptr, [] { pool = new Pool; });
#endif

std::atomic<bool> pool_enabled{[] {
  const char* text = std::getenv("PGN_CPU_POOL");
  return text != nullptr && std::string(text) == "1";
}()};

}  // namespace

bool cpu_pool_enabled() { return pool_enabled.load(std::memory_order_relaxed); }

bool set_cpu_pool_enabled(bool enabled) { return pool_enabled.exchange(enabled); }

void run_on_pool(int64_t pieces, int threads, PoolParticipant participant, void* context) {
  if (pieces <= 0) return;
  if (threads <= 1 || pieces == 1 || in_pool_thread || at::in_parallel_region())
    return Pool::run_alone(pieces, participant, context);
  pool->run(pieces, threads, participant, context);
}

}  // namespace pgnface
