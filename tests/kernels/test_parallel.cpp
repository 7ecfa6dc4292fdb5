// The kernels' worker pool (kernels/parallel.hpp): every index runs exactly once whatever the thread
// count, with regions opened back to back, from several callers at once, and nested.
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <thread>
#include <vector>

#include "kernels/parallel.hpp"

namespace dsv4::kernels {
namespace {

// Runs `regions` parallel_for calls over n indices; returns how often each index ran (summed).
std::vector<int> count_runs(int64_t n, int regions) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (int r = 0; r < regions; ++r) detail::parallel_for(n, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
  std::vector<int> out;
  for (auto& h : hits) out.push_back(h.load());
  return out;
}

TEST(Parallel, EveryIndexOnceAtAnyThreadCount) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3, 8})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000)}) {
      omp_set_num_threads(threads);
      EXPECT_EQ(count_runs(n, 200), std::vector<int>(size_t(n), 200)) << threads << " threads, n = " << n;
    }
  omp_set_num_threads(saved);
}

TEST(Parallel, ConcurrentCallersAndNestedRegions) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);
  constexpr int64_t kOuter = 40, kInner = 50;
  std::vector<std::vector<int>> per_caller(4);
  std::vector<std::thread> callers;
  for (auto& got : per_caller)
    callers.emplace_back([&got] {
      omp_set_num_threads(3);  // the thread count is per thread (OpenMP's ICV)
      std::vector<std::atomic<int>> hits(kOuter * kInner);
      for (int rep = 0; rep < 50; ++rep)
        detail::parallel_for(kOuter, [&](int64_t i) {  // a region inside a region runs inline
          detail::parallel_for(kInner, [&](int64_t j) { hits[size_t(i * kInner + j)].fetch_add(1); });
        });
      for (auto& h : hits) got.push_back(h.load());
    });
  for (auto& t : callers) t.join();
  for (const auto& got : per_caller) EXPECT_EQ(got, std::vector<int>(kOuter * kInner, 50));
  omp_set_num_threads(saved);
}

// Per-thread setup then shared indices: each thread that joins sets up once and claims only what is left.
TEST(Parallel, RegionSetupRunsOnlyOnParticipants) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(4);
  std::atomic<int> setups{0};
  std::vector<std::atomic<int>> hits(10000);
  for (int rep = 0; rep < 100; ++rep)
    detail::parallel_region(10000, [&](detail::WorkShare& ws) {
      setups.fetch_add(1);
      ws.for_each([&](int64_t i) { hits[size_t(i)].fetch_add(1); });
    });
  for (auto& h : hits) ASSERT_EQ(h.load(), 100);
  EXPECT_GE(setups.load(), 100);  // the caller every time
  EXPECT_LE(setups.load(), 400);  // and at most 3 workers
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace dsv4::kernels
