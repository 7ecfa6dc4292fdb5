// The machine's roofs, measured the same way by the kernel benchmarks (bench/bench_kernels.cpp) and by
// `dsv4 bench`: a parallel memcpy (the copy bandwidth a weight stream is compared with) and register-only
// FMA chains (the fp32 and fp64 peaks a GEMM is compared with). The caller owns the buffers and the
// timing. Compiled into the kernels library with its ISA flags (-march): a portable build has no FMA
// loops, and fma_region returns 0 FLOP.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4::roofline {

// n bytes from src to dst, each OpenMP thread memcpy-ing its contiguous share. Moves 2n bytes
// (read + write, as STREAM counts a copy).
void parallel_copy(uint8_t* dst, const uint8_t* src, size_t n);

// Register-only FMA chains (independent accumulators per thread, to cover latency x 2 pipes, in the
// widest vectors the build targets) on every thread of an OpenMP region, `iters` steps each; returns the
// FLOP done (an FMA counts 2).
double fma_region_f64(int64_t iters);
double fma_region_f32(int64_t iters);
template <bool F64>
double fma_region(int64_t iters) {
  return F64 ? fma_region_f64(iters) : fma_region_f32(iters);
}

}  // namespace dsv4::roofline
