// Thread parallelism for the kernels. Not a public header.
//
// An OpenMP parallel region costs about a microsecond even with one thread (libgomp builds a team and
// signals it through futexes), and with 16 ranks sharing 2 cores every rank runs one thread while a
// decode step makes thousands of kernel calls. So a region is only opened when it has threads to use;
// otherwise the body runs inline, where its worksharing loops are orphaned constructs that OpenMP runs
// serially (outside any region, they bind to a team of one). Inside a caller's region a worksharing
// body still opens its own (nested, one-thread) region, or its loops would bind to the caller's team.
// Results never depend on the thread count: each output element has one fixed order.
#pragma once
#include <cstdint>

#include <omp.h>

namespace dsv4::kernels::detail {

// body() on every thread of a region (per-thread setup, then `#pragma omp for` loops inside). A loop that
// ends the body takes `nowait`: the region's end is a barrier already, and each barrier costs about 1.5 us
// with 2 threads on the Zen 5 VM (an empty region 3.1 us, with a waiting loop inside 4.7 us).
template <class Body>
void parallel_region(Body&& body) {
  if (omp_get_max_threads() == 1 && !omp_in_parallel()) return body();
#pragma omp parallel
  body();
}

// body(i) for i in [0, n), statically scheduled; worth_it = false keeps a small call inline.
template <class Body>
void parallel_for(int64_t n, Body&& body, bool worth_it = true) {
  if (!worth_it || n <= 1 || omp_get_max_threads() == 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

}  // namespace dsv4::kernels::detail
