// The kernels' worker pool (see parallel.hpp for why it is not OpenMP's).
//
// One region at a time. `state_` packs the region's epoch (32 bits), a closed flag, the number of
// workers it admits and the number that joined and have not finished. A worker joins with one CAS that
// fails if the epoch moved on, the region closed or it is full; the caller closes the region once its
// own for_each returns (every chunk claimed) and then waits only for the workers that joined.
// Workers spin briefly between regions (a decode step opens them microseconds apart), then sleep on a
// futex; workers beyond the current thread count sleep at once. Region bodies must not throw (the
// kernels do not). The futex is called directly: GCC 12's std::atomic::wait lost a wake-up here (a
// worker slept through the pool's shutdown and the process hung at exit). The pool is never destroyed:
// its sleeping workers end with the process.
#include "kernels/parallel.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dsv4::kernels::detail {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

thread_local bool t_in_region = false;
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free, "the futex word");

class Pool {
 public:

  void run(const Region& r, int threads) {
    if (busy_.exchange(true, std::memory_order_acquire)) {  // another caller's region: run this one inline
      t_in_region = true;
      r.run(r.ctx, *r.ws);
      t_in_region = false;
      return;
    }
    const int helpers = grow(std::min(threads - 1, int(kCap >> kCapShift)));
    region_ = &r;
    const uint32_t e = epoch_.load(std::memory_order_relaxed) + 1;
    state_.store(uint64_t(e) << 32 | uint64_t(helpers) << kCapShift, std::memory_order_release);
    epoch_.store(e, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0)  // Dekker with the sleeper's increment
      ::syscall(SYS_futex, &epoch_, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
    t_in_region = true;
    r.run(r.ctx, *r.ws);
    t_in_region = false;
    // Every index is claimed: admit no one else, then wait for the joined workers' last chunks.
    uint64_t s = state_.fetch_or(kClosed, std::memory_order_acq_rel) | kClosed;
    for (int spins = 0; (s & kActive) != 0; ++spins) {
      if (spins < 4096) cpu_relax();
      else std::this_thread::yield();  // the worker may need this core to finish
      s = state_.load(std::memory_order_acquire);
    }
    busy_.store(false, std::memory_order_release);
  }

 private:
  static constexpr uint64_t kClosed = uint64_t(1) << 31;
  static constexpr int kCapShift = 16;
  static constexpr uint64_t kActive = 0xffff, kCap = uint64_t(0x7fff) << kCapShift;

  // Starts workers up to n; returns how many there are (fewer if the system refuses a thread: the
  // regions then use those, and the caller does the rest).
  int grow(int n) {
    const int have = started_.load(std::memory_order_acquire);
    if (have >= n) return n;
    std::lock_guard lk(m_);
    try {
      while (int(workers_.size()) < n) {
        const int index = int(workers_.size());
        workers_.emplace_back([this, index] { work(index); });
      }
    } catch (const std::system_error&) {
    }
    started_.store(int(workers_.size()), std::memory_order_release);
    return std::min(n, int(workers_.size()));
  }

  void work(int index) {
    using clock = std::chrono::steady_clock;
    uint32_t seen = epoch_.load(std::memory_order_acquire);
    bool used = false;  // the last region admitted this worker (index < its cap): spin for the next one
    for (;;) {
      // Wait for the next region: spin for up to 200 us if regions use this worker, else sleep.
      const auto t0 = clock::now();
      for (int i = 0; epoch_.load(std::memory_order_acquire) == seen; ++i) {
        cpu_relax();
        if (!used || ((i & 255) == 255 && clock::now() - t0 > std::chrono::microseconds(200))) {
          sleep_while(seen);
          break;
        }
      }
      seen = epoch_.load(std::memory_order_acquire);
      const uint64_t s = state_.load(std::memory_order_acquire);
      used = uint32_t(s >> 32) == seen && uint64_t(index) < (s & kCap) >> kCapShift;
      if (!used || !join(seen)) continue;
      const Region& r = *region_;
      if (!r.ws->exhausted()) {
        t_in_region = true;
        r.run(r.ctx, *r.ws);
        t_in_region = false;
      }
      state_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  // Sleeps until epoch_ differs from `seen` (the kernel checks the value, so no wake-up is lost).
  void sleep_while(uint32_t seen) {
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (epoch_.load(std::memory_order_seq_cst) == seen)
      ::syscall(SYS_futex, &epoch_, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }

  bool join(uint32_t epoch) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (uint32_t(s >> 32) != epoch || (s & kClosed) || (s & kActive) >= (s & kCap) >> kCapShift) return false;
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return true;
    }
  }

  std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> epoch_{0};
  std::atomic<bool> busy_{false};
  std::atomic<int> started_{0}, sleepers_{0};
  const Region* region_ = nullptr;
  std::mutex m_;
  std::vector<std::thread> workers_;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed (see above)
  return *p;
}

}  // namespace

void run_in_pool(const Region& r, int threads) { pool().run(r, threads); }
bool in_region() { return t_in_region; }

}  // namespace dsv4::kernels::detail
