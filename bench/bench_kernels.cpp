// Kernel benchmarks. Run in one process, in registration order: the machine references first
// (STREAM-style copy bandwidth, register-only FMA peaks), then the kernels, whose counters report
// their ratio to the references measured in the same run:
//   GEMV:  weight bytes streamed per second, "vs_copy" = that / copy bandwidth (copy counts read +
//          write bytes, as STREAM does). Weights rotate through >= 512 MiB so caches do not help.
//   GEMM:  useful FLOP/s (2·m·n·k), "vs_fma64" / "vs_fma32" = that / the fp64 / fp32 FMA peak.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "kernels/linear.hpp"
#include "kernels/quant.hpp"

namespace {

using namespace dsv4;
using namespace dsv4::kernels;

double g_copy_bps = 0, g_fma32 = 0, g_fma64 = 0;  // bytes/s, FLOP/s

void BM_CopyBandwidth(benchmark::State& st) {
  const size_t n = size_t(512) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  for (auto _ : st) {
#pragma omp parallel
    {
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num()), c = n / nt;
      std::memcpy(b.data() + t * c, a.data() + t * c, c);
    }
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(2 * n));
  st.counters["GB/s"] = benchmark::Counter(double(2 * n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = omp_get_max_threads();
}

// Register-only FMA chains: 16 independent accumulators per thread (covers latency x 2 pipes).
template <bool F64>
void BM_FmaPeak(benchmark::State& st) {
  const int64_t iters = 1 << 22;
  double flops = 0;
  for (auto _ : st) {
#pragma omp parallel
    {
#ifdef __AVX512F__
      if constexpr (F64) {
        __m512d acc[16], x = _mm512_set1_pd(0.999999), y = _mm512_set1_pd(1e-9);
        for (auto& a : acc) a = _mm512_set1_pd(omp_get_thread_num());
        for (int64_t i = 0; i < iters; ++i)
          for (auto& a : acc) a = _mm512_fmadd_pd(a, x, y);
        double s = 0;
        for (auto& a : acc) s += _mm512_reduce_add_pd(a);
        benchmark::DoNotOptimize(s);
      } else {
        __m512 acc[16], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-9f);
        for (auto& a : acc) a = _mm512_set1_ps(float(omp_get_thread_num()));
        for (int64_t i = 0; i < iters; ++i)
          for (auto& a : acc) a = _mm512_fmadd_ps(a, x, y);
        float s = 0;
        for (auto& a : acc) s += _mm512_reduce_add_ps(a);
        benchmark::DoNotOptimize(s);
      }
#endif
    }
  }
  flops = double(omp_get_max_threads()) * double(iters) * 16 * (F64 ? 8 : 16) * 2;
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["flop"] = flops;  // read back below through the rate
}

// Weight pools big enough to defeat the caches; one buffer per iteration in turn.
struct Pool {
  std::vector<std::vector<uint8_t>> w, s;
  size_t next = 0;
};
Pool make_pool(size_t wbytes, size_t sbytes, uint8_t scale_byte) {
  Pool p;
  const size_t copies = std::max<size_t>(2, (size_t(512) << 20) / wbytes);
  std::mt19937 rng(1);
  for (size_t c = 0; c < copies; ++c) {
    std::vector<uint8_t> w(wbytes);
    for (auto& b : w) b = uint8_t(rng() & 0x7e);  // finite e4m3 / any e2m1 pair
    p.w.push_back(std::move(w));
    p.s.emplace_back(sbytes, scale_byte);
  }
  return p;
}

struct Act {
  std::vector<uint8_t> q;
  std::vector<float> s;
};
Act make_act(int64_t m, int64_t k) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<bf16> x(m * k);
  for (auto& v : x) v = f32_to_bf16(nd(rng));
  Act a{std::vector<uint8_t>(m * k), std::vector<float>(m * k / 128)};
  act_quant_fp8(a.q, a.s, x, m, k);
  return a;
}

void report_gemv(benchmark::State& st, double bytes) {
  st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["copy_GB/s"] = g_copy_bps * 1e-9;
}
void report_gemm(benchmark::State& st, double flop) {
  st.counters["GFLOP/s"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Fp8Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  Pool p = make_pool(size_t(n * k), size_t(((n + 127) / 128) * (k / 128)), 120);
  const Act a = make_act(m, k);
  std::vector<bf16> y(m * n);
  for (auto _ : st) {
    const size_t i = p.next++ % p.w.size();
    linear_fp8(y, a.q, a.s, p.w[i], p.s[i], m, n, k);
    benchmark::DoNotOptimize(y.data());
  }
  report_gemv(st, double(n * k));
  report_gemm(st, 2.0 * double(m * n * k));
}

void BM_Fp4Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  Pool p = make_pool(size_t(n * k / 2), size_t(n * k / 32), 120);
  const Act a = make_act(m, k);
  std::vector<bf16> y(m * n);
  for (auto _ : st) {
    const size_t i = p.next++ % p.w.size();
    linear_fp4(y, a.q, a.s, p.w[i], p.s[i], m, n, k);
    benchmark::DoNotOptimize(y.data());
  }
  report_gemv(st, double(n * k / 2 + n * k / 32));
  report_gemm(st, 2.0 * double(m * n * k));
}

void BM_Bf16Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  Pool p = make_pool(size_t(n * k * 2), 1, 0);
  std::vector<bf16> x(m * k, f32_to_bf16(0.5f)), y(m * n);
  for (auto _ : st) {
    const size_t i = p.next++ % p.w.size();
    linear_bf16(y, x, std::span(reinterpret_cast<const bf16*>(p.w[i].data()), size_t(n * k)), m, n, k);
    benchmark::DoNotOptimize(y.data());
  }
  report_gemv(st, double(n * k * 2));
  report_gemm(st, 2.0 * double(m * n * k));
}

void BM_F32Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  Pool p = make_pool(size_t(n * k * 2), 1, 0);
  std::vector<float> x(m * k, 0.5f), y(m * n);
  for (auto _ : st) {
    const size_t i = p.next++ % p.w.size();
    linear_f32(y, x, std::span(reinterpret_cast<const bf16*>(p.w[i].data()), size_t(n * k)), m, n, k);
    benchmark::DoNotOptimize(y.data());
  }
  report_gemv(st, double(n * k * 2));
  report_gemm(st, 2.0 * double(m * n * k));
}

void BM_ActQuant(benchmark::State& st) {
  const int64_t m = st.range(0), k = st.range(1);
  std::vector<bf16> x(m * k, f32_to_bf16(0.3f));
  std::vector<uint8_t> q(m * k);
  std::vector<float> s(m * k / 128);
  for (auto _ : st) {
    act_quant_fp8(q, s, x, m, k);
    benchmark::DoNotOptimize(q.data());
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * m * k);
}

// Capture the reference numbers right after they run (Google Benchmark keeps registration order).
class RefReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (auto& r : runs) {
      auto get = [&](const char* c) { return r.counters.count(c) ? double(r.counters.at(c)) : 0.0; };
      const std::string name = r.benchmark_name();
      if (name.rfind("BM_CopyBandwidth", 0) == 0) g_copy_bps = get("GB/s");
      if (name.rfind("BM_FmaPeak<true>", 0) == 0) g_fma64 = get("GFLOP/s");
      if (name.rfind("BM_FmaPeak<false>", 0) == 0) g_fma32 = get("GFLOP/s");
      // Ratios for kernel runs (counters are already rates here).
      if (name.rfind("BM_Fp", 0) == 0 || name.rfind("BM_Bf16", 0) == 0 || name.rfind("BM_F32", 0) == 0) {
        auto& rr = const_cast<Run&>(r);
        if (g_copy_bps > 0) rr.counters["vs_copy"] = get("GB/s") / g_copy_bps;
        if (g_fma64 > 0) rr.counters["vs_fma64"] = get("GFLOP/s") / g_fma64;
        if (g_fma32 > 0) rr.counters["vs_fma32"] = get("GFLOP/s") / g_fma32;
        rr.counters["copy_GB/s"] = g_copy_bps;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

BENCHMARK(BM_CopyBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FmaPeak<true>)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FmaPeak<false>)->Unit(benchmark::kMillisecond)->UseRealTime();
// FP8 GEMV at FLASH shapes {m, out, in}: wq_b-like, wq_a, shared w1/w3, shared w2 / wo_b-like.
BENCHMARK(BM_Fp8Linear)->Args({1, 4096, 1024})->Args({1, 32768, 1024})->Args({1, 1024, 4096})
    ->Args({1, 2048, 4096})->Args({1, 4096, 2048})->Args({4, 2048, 4096})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
// Prefill GEMM, 256 rows.
BENCHMARK(BM_Fp8Linear)->Args({256, 2048, 4096})->Args({256, 4096, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();
// FP4 experts: w1/w3 [2048, 4096], w2 [4096, 2048]; decode (1 row) and a prefill expert slab.
BENCHMARK(BM_Fp4Linear)->Args({1, 2048, 4096})->Args({1, 4096, 2048})->Args({4, 2048, 4096})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Fp4Linear)->Args({256, 2048, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
// BF16: wo_a one group [1024, 4096]; FP32: compressor wkv [1024, 4096], head slice [16384, 4096].
BENCHMARK(BM_Bf16Linear)->Args({1, 1024, 4096})->Args({256, 1024, 4096})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_F32Linear)->Args({1, 1024, 4096})->Args({1, 16384, 4096})->Args({256, 1024, 4096})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ActQuant)->Args({1, 4096})->Args({256, 4096})->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  RefReporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  benchmark::Shutdown();
}
