// Thread parallelism for the kernels: a pool of our own, not OpenMP's fork/join. Not a public header.
//
// Why not `#pragma omp parallel for`: a static OpenMP loop gives each thread its share up front and its
// end is a barrier, so a region lasts as long as its slowest thread. When another process holds a core
// (a loaded machine, 16 ranks on 2 cores), a descheduled thread stalls every region for a scheduler time
// slice, and a flash-slice decode step opens ~150 regions: 2 threads ran 3-5x slower than 1 under load.
// Here a region's indices are claimed in chunks from one counter: the caller starts at once, a worker
// helps only if it arrives while chunks are left, and the caller waits only for the workers that joined
// (their per-thread setup and the chunks they claimed). A worker that is not running costs nothing. With 1 thread (the default of 16 ranks on 2 cores) the
// body runs inline; a region inside a region (or from a caller's own OpenMP team) runs inline too.
//
// Results never depend on the thread count or on which thread runs an index: each output element has
// one fixed order, and per-thread scratch is set up identically on every thread.
// The thread count is OpenMP's (omp_set_num_threads / OMP_NUM_THREADS), so callers set it in one place.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

#include <omp.h>

namespace dsv4::kernels::detail {

// The indices [0, n) of one region, claimed in chunks by the threads that take part.
class WorkShare {
 public:
  WorkShare(int64_t n, int64_t chunk) : n_(n), chunk_(std::max<int64_t>(1, chunk)) {}
  // f(i) for every index no other thread of the region claims; returns when none is left.
  template <class F>
  void for_each(F&& f) {
    for (;;) {
      const int64_t b = next_.fetch_add(chunk_, std::memory_order_relaxed);
      if (b >= n_) return;
      const int64_t e = std::min(n_, b + chunk_);
      for (int64_t i = b; i < e; ++i) f(i);
    }
  }
  bool exhausted() const { return next_.load(std::memory_order_relaxed) >= n_; }

 private:
  std::atomic<int64_t> next_{0};
  const int64_t n_, chunk_;
};

// A region handed to the pool: run(ctx, ws) on every participating thread.
struct Region {
  void (*run)(void* ctx, WorkShare& ws);
  void* ctx;
  WorkShare* ws;
};

// Runs `r` on the calling thread and on up to threads - 1 pool workers (parallel.cpp). Returns when every
// index is done. Another caller's region running at the same time makes this one run inline.
void run_in_pool(const Region& r, int threads);
// True on a thread that is inside a region (nested regions run inline).
bool in_region();

// body(ws) on every thread of a region over n indices: per-thread setup, then ws.for_each(...).
template <class Body>
void parallel_region(int64_t n, Body&& body) {
  const int threads = omp_get_max_threads();
  if (threads == 1 || n <= 1 || in_region() || omp_in_parallel()) {
    WorkShare ws(n, n);
    return body(ws);
  }
  // Chunks of about 1/8 of a thread's share: fine enough that one thread can take over most of a
  // missing one's work, coarse enough to keep each thread's weight stream contiguous.
  WorkShare ws(n, (n + 8 * threads - 1) / (8 * threads));
  const Region r{[](void* ctx, WorkShare& w) { (*static_cast<Body*>(ctx))(w); }, &body, &ws};
  run_in_pool(r, threads);
}

// body(i) for i in [0, n); worth_it = false keeps a small call inline.
template <class Body>
void parallel_for(int64_t n, Body&& body, bool worth_it = true) {
  if (!worth_it) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  parallel_region(n, [&](WorkShare& ws) { ws.for_each(body); });
}

}  // namespace dsv4::kernels::detail
