// Kernel benchmarks. Run in one process, in registration order: the machine references first
// (STREAM-style copy bandwidth, read bandwidth, register-only FMA peaks), then the kernels. Every
// benchmark takes the OpenMP thread count as its last argument (omp_set_num_threads, as the runtime does
// per rank), and each kernel reports its efficiency with the same thread count:
//   GEMV:  "GB/s" = weight (+ scale) bytes streamed per second; "vs_copy" = that / the copy bandwidth
//          measured call by call alongside it ("copy_GB/s", Paired; copy counts read + write bytes, as
//          STREAM does); "vs_read" = that / this run's read-only streaming bandwidth (the roof of a weight
//          stream: one core's reads alone stay below its copy rate). Weights rotate through >= 512 MiB so
//          the caches do not help.
//   GEMM:  "GFLOP/s" = useful FLOP/s (2·m·n·k); "vs_fma32" / "vs_fma64" = that / the fp32 / fp64 FMA peak
//          (register-only FMA chains on every thread) measured call by call alongside it ("fma32_GFLOP/s",
//          "fma64_GFLOP/s", Paired). The GEMVs' vs_fma* are against this run's BM_FmaPeak.
// Run with --benchmark_filter to pick; the references run first (filter them in for vs_read and vs_fma*).
// --benchmark_repetitions=N --benchmark_report_aggregates_only=true gives the median of every ratio.
// GCC 12 reports its own _mm512_undefined_* placeholders inside intrinsics as uninitialized once
// OpenMP outlines the loop (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <random>
#include <string>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/linear.hpp"
#include "kernels/roofline.hpp"
#include "kernels/quant.hpp"

namespace {

using namespace dsv4;
using namespace dsv4::kernels;
using Clock = std::chrono::steady_clock;

// Byte buffers that start on a cache line (64 bytes).
template <class T>
struct LineAligned {
  using value_type = T;
  LineAligned() = default;
  template <class U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  friend bool operator==(LineAligned, LineAligned) { return true; }
};
using LineBytes = std::vector<uint8_t, LineAligned<uint8_t>>;

// Reference rates measured in this run, per thread count: bytes/s and FLOP/s.
std::map<int, double> g_copy_bps, g_read_bps, g_fma32, g_fma64;

// Batches up to this many rows are decode batches (one rank's share of a decode step): the benchmarks below
// treat them as weight streams, larger ones as GEMMs.
constexpr int64_t kDecodeRows = 4;

int set_threads(benchmark::State& st, int arg) {
  const int t = int(st.range(arg));
  omp_set_num_threads(t);
  st.counters["threads"] = t;
  return t;
}

// Bytes per second of `pass` (one OpenMP pass over the buffers, moving `bytes`), timed with the wall clock.
template <class Pass>
double stream_rate(benchmark::State& st, double bytes, Pass pass) {
  double secs = 0;
  int64_t iters = 0;
  for (auto _ : st) {
    const auto t0 = Clock::now();
    pass();
    secs += std::chrono::duration<double>(Clock::now() - t0).count();
    ++iters;
  }
  st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  return bytes * double(iters) / secs;
}

// The copy of the copy references (kernels/roofline.hpp, shared with `dsv4 bench`).
using roofline::parallel_copy;

void BM_CopyBandwidth(benchmark::State& st) {
  const int threads = set_threads(st, 0);
  const size_t n = size_t(512) << 20;
  std::vector<uint8_t> a(n, 1), b(n, 2);
  g_copy_bps[threads] = stream_rate(st, double(2 * n), [&] { parallel_copy(b.data(), a.data(), n); });
}

// Read-only streaming: what a weight stream can reach at best ("vs_read" of the GEMVs). Cache-line aligned
// loads and a software prefetch 4 lines ahead: without them (line-split loads, the hardware prefetcher
// alone) this loop understated the roof by a sixth to a fifth on the Zen 5 VM (one A/B, 4 runs each:
// 1 thread 27.6-27.9 -> 32.2-33.9 GB/s, 2 threads 47-56 -> 63-67 GB/s).
void BM_ReadBandwidth(benchmark::State& st) {
  const int threads = set_threads(st, 0);
  const size_t n = size_t(512) << 20;
  const LineBytes buf(n, 1);
  const char* a = reinterpret_cast<const char*>(buf.data());
  g_read_bps[threads] = stream_rate(st, double(n), [&] {
#pragma omp parallel
    {
      // c: whole 128-byte steps
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num()), c = n / nt / 128 * 128;
#ifdef __AVX512F__
      __m512i s0 = _mm512_setzero_si512(), s1 = s0;
      for (size_t i = t * c; i < t * c + c; i += 128) {
        _mm_prefetch(a + i + 256, _MM_HINT_T0);  // past the end of the slice: harmless (prefetches never fault)
        _mm_prefetch(a + i + 320, _MM_HINT_T0);
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(a + i));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(a + i + 64));
      }
      benchmark::DoNotOptimize(s0);
      benchmark::DoNotOptimize(s1);
#elif defined(__AVX2__)
      __m256i s0 = _mm256_setzero_si256(), s1 = s0;
      for (size_t i = t * c; i < t * c + c; i += 128) {
        _mm_prefetch(a + i + 256, _MM_HINT_T0);
        _mm_prefetch(a + i + 320, _MM_HINT_T0);
        s0 = _mm256_add_epi64(s0, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(a + i)),
                                                   _mm256_load_si256(reinterpret_cast<const __m256i*>(a + i + 32))));
        s1 = _mm256_add_epi64(s1, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(a + i + 64)),
                                                   _mm256_load_si256(reinterpret_cast<const __m256i*>(a + i + 96))));
      }
      benchmark::DoNotOptimize(s0);
      benchmark::DoNotOptimize(s1);
#else
      uint64_t s = 0;
      for (size_t i = t * c; i < t * c + c; i += 8) {
        uint64_t v;
        std::memcpy(&v, a + i, 8);
        s += v;
      }
      benchmark::DoNotOptimize(s);
#endif
    }
  });
  if (g_copy_bps.count(threads))
    st.counters["vs_copy"] = benchmark::Counter(double(n) / g_copy_bps[threads], benchmark::Counter::kIsIterationInvariantRate);
}

// Register-only FMA chains on every thread (kernels/roofline.hpp, shared with `dsv4 bench`).
using roofline::fma_region;

template <bool F64>
void BM_FmaPeak(benchmark::State& st) {
  const int threads = set_threads(st, 0);
  double secs = 0, flop = 0;
  for (auto _ : st) {
    const auto t0 = Clock::now();
    flop += fma_region<F64>(int64_t(1) << 22);
    secs += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  (F64 ? g_fma64 : g_fma32)[threads] = flop / secs;
  st.counters["GFLOP/s"] = flop * 1e-9 / secs;
}

// Weight pools big enough to defeat the caches; one buffer per iteration in turn. Weight buffers start on a
// cache line, as every tensor does in the converted weight files (plangen's assign_weight_offsets):
// malloc's 16-byte alignment would split every 64-byte load over two lines.
struct Pool {
  std::vector<LineBytes> w;
  std::vector<std::vector<uint8_t>> s;
  size_t next = 0;
};
// What the weight bytes hold. Real checkpoints' weights are roughly normal with almost no subnormal
// values; uniformly random bytes would make 1 in 16 e4m3 codes (and 1 in 64 bf16 values) subnormal, a
// slow path of the FP units on some cores, so the pools draw from a normal distribution instead.
enum class Data { E4m3, Bf16, Nibbles };

// 65536 draws of N(0, σ) in the format (σ = 100 for e4m3: block scales put the amax near 448).
const std::vector<uint16_t>& normal_table(Data d) {
  static const auto make = [](Data kind) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, kind == Data::E4m3 ? 100.f : 0.02f);
    std::vector<uint16_t> t(65536);
    for (auto& v : t)
      v = kind == Data::E4m3 ? uint16_t(f32_to_e4m3(std::clamp(nd(rng), -448.f, 448.f))) : f32_to_bf16(nd(rng)).bits;
    return t;
  };
  static const std::vector<uint16_t> e4m3 = make(Data::E4m3), bf16v = make(Data::Bf16);
  return d == Data::E4m3 ? e4m3 : bf16v;
}

void fill(LineBytes& w, Data d, std::mt19937& rng) {
  if (d == Data::Nibbles) {  // every e2m1 pair is a plain small integer: any byte will do
    for (auto& b : w) b = uint8_t(rng());
    return;
  }
  const auto& t = normal_table(d);
  if (d == Data::E4m3)
    for (auto& b : w) b = uint8_t(t[rng() & 0xffff]);
  else
    for (size_t i = 0; i + 1 < w.size(); i += 2) std::memcpy(&w[i], &t[rng() & 0xffff], 2);
}

Pool make_pool(Data d, size_t wbytes, size_t sbytes, uint8_t scale_byte, bool hot = false) {
  Pool p;
  const size_t copies = hot ? 1 : std::max<size_t>(2, (size_t(512) << 20) / wbytes);
  std::mt19937 rng(1);
  for (size_t c = 0; c < copies; ++c) {
    LineBytes w(wbytes);
    fill(w, d, rng);
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

// The references again, paired with a kernel call by call and timed apart from it. This shared VM's
// bandwidth drifts by a fifth or more within seconds, and its compute speed by up to a quarter (other
// guests on the host); a kernel and a reference that alternate call by call see the same phases, so
// their ratio holds still where the rates do not.
// - GEMVs (weights from memory): after every call the same number of bytes is copied (parallel_copy, as
//   BM_CopyBandwidth, rotating through 2 x 256 MiB so that it comes from memory).
// - GEMMs: after every call both FMA peaks run for a short while (fma_region, as BM_FmaPeak).
enum class Pair { None, Copy, Fma };
class Paired {
 public:
  void run(Pair what, size_t bytes) {
    if (what == Pair::Copy) {
      static LineBytes src(kSpan, 1), dst(kSpan, 2);
      if (off_ + bytes > kSpan) off_ = 0;
      timed(copy_, [&] {
        parallel_copy(dst.data() + off_, src.data() + off_, bytes);
        copy_.amount += 2.0 * double(bytes);  // read + write, as BM_CopyBandwidth counts
      });
      off_ += bytes;
    } else if (what == Pair::Fma) {
      // About 0.6 ms of each here (a GEMM call takes 4-140 ms): a region's fork and join (~4 us) stay below 1%.
      constexpr int64_t kIters = int64_t(1) << 18;
      timed(fma64_, [&] { fma64_.amount += fma_region<true>(kIters); });
      timed(fma32_, [&] { fma32_.amount += fma_region<false>(kIters); });
    }
  }
  // Rates per second; 0 when nothing of the kind ran.
  double copy_bps() const { return copy_.rate(); }
  double fma64() const { return fma64_.rate(); }
  double fma32() const { return fma32_.rate(); }

 private:
  struct Tally {
    double secs = 0, amount = 0;
    double rate() const { return secs > 0 ? amount / secs : 0; }
  };
  template <class F>
  static void timed(Tally& t, F f) {
    const auto t0 = Clock::now();
    f();
    t.secs += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  static constexpr size_t kSpan = size_t(256) << 20;
  size_t off_ = 0;
  Tally copy_, fma64_, fma32_;
};

// The timing loop of a kernel benchmark: call(buffer) on the pool's buffers in turn, each call timed on its
// own (manual time) and followed by its paired reference. Batches up to kDecodeRows rows stream their weights
// (a copy is their reference), more rows are GEMMs (the FMA peaks are); cache-resident runs take none.
template <class Call>
Paired time_calls(benchmark::State& st, Pool& p, int64_t m, bool hot, size_t bytes, Call call) {
  const Pair what = hot ? Pair::None : m <= kDecodeRows ? Pair::Copy : Pair::Fma;
  Paired ref;
  for (auto _ : st) {
    const size_t i = p.next++ % p.w.size();
    const auto t0 = Clock::now();
    call(i);
    st.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
    ref.run(what, bytes);
  }
  return ref;
}

// Rates and their ratios: to the paired references where the call had them, else to this run's references
// at the same thread count (rate counters: the per-iteration amount divided by the reference rate becomes a
// dimensionless ratio).
void report(benchmark::State& st, int threads, double bytes, double flop, const Paired& ref) {
  using C = benchmark::Counter;
  st.counters["GB/s"] = C(bytes * 1e-9, C::kIsIterationInvariantRate);
  st.counters["GFLOP/s"] = C(flop * 1e-9, C::kIsIterationInvariantRate);
  if (ref.copy_bps() > 0) {
    st.counters["copy_GB/s"] = ref.copy_bps() * 1e-9;
    st.counters["vs_copy"] = C(bytes / ref.copy_bps(), C::kIsIterationInvariantRate);
  }
  if (g_read_bps.count(threads)) st.counters["vs_read"] = C(bytes / g_read_bps[threads], C::kIsIterationInvariantRate);
  const auto vs_fma = [&](const char* name, double paired, std::map<int, double>& run_ref) {
    if (paired > 0) st.counters[std::string(name) + "_GFLOP/s"] = paired * 1e-9;
    const double peak = paired > 0 ? paired : run_ref.count(threads) ? run_ref[threads] : 0;
    if (peak > 0) st.counters[std::string("vs_") + name] = C(flop / peak, C::kIsIterationInvariantRate);
  };
  vs_fma("fma32", ref.fma32(), g_fma32);
  vs_fma("fma64", ref.fma64(), g_fma64);
}

// Args {m, n (out), k (in), threads}.
// Hot: one weight buffer, cache resident when small (the kernel's compute-bound rate).
template <bool Hot = false>
void BM_Fp8Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const int threads = set_threads(st, 3);
  const size_t sbytes = size_t(((n + 127) / 128) * (k / 128));
  Pool p = make_pool(Data::E4m3, size_t(n * k), sbytes, 120, Hot);
  const Act a = make_act(m, k);
  std::vector<bf16> y(m * n);
  const double bytes = double(n * k + int64_t(sbytes));
  const Paired ref = time_calls(st, p, m, Hot, size_t(bytes), [&](size_t i) {
    linear_fp8(y, a.q, a.s, p.w[i], p.s[i], m, n, k);
    benchmark::DoNotOptimize(y.data());
  });
  report(st, threads, bytes, 2.0 * double(m * n * k), ref);
}

template <bool Hot = false>
void BM_Fp4Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const int threads = set_threads(st, 3);
  Pool p = make_pool(Data::Nibbles, size_t(n * k / 2), size_t(n * k / 32), 120, Hot);
  const Act a = make_act(m, k);
  std::vector<bf16> y(m * n);
  const double bytes = double(n * k / 2 + n * k / 32);
  const Paired ref = time_calls(st, p, m, Hot, size_t(bytes), [&](size_t i) {
    linear_fp4(y, a.q, a.s, p.w[i], p.s[i], m, n, k);
    benchmark::DoNotOptimize(y.data());
  });
  report(st, threads, bytes, 2.0 * double(m * n * k), ref);
}

void BM_Bf16Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const int threads = set_threads(st, 3);
  Pool p = make_pool(Data::Bf16, size_t(n * k * 2), 1, 0);
  std::vector<bf16> x(m * k, f32_to_bf16(0.5f)), y(m * n);
  const double bytes = double(n * k * 2);
  const Paired ref = time_calls(st, p, m, false, size_t(bytes), [&](size_t i) {
    linear_bf16(y, x, std::span(reinterpret_cast<const bf16*>(p.w[i].data()), size_t(n * k)), m, n, k);
    benchmark::DoNotOptimize(y.data());
  });
  report(st, threads, bytes, 2.0 * double(m * n * k), ref);
}

void BM_F32Linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const int threads = set_threads(st, 3);
  Pool p = make_pool(Data::Bf16, size_t(n * k * 2), 1, 0);
  std::vector<float> x(m * k, 0.5f), y(m * n);
  const double bytes = double(n * k * 2);
  const Paired ref = time_calls(st, p, m, false, size_t(bytes), [&](size_t i) {
    linear_f32(y, x, std::span(reinterpret_cast<const bf16*>(p.w[i].data()), size_t(n * k)), m, n, k);
    benchmark::DoNotOptimize(y.data());
  });
  report(st, threads, bytes, 2.0 * double(m * n * k), ref);
}

void BM_ActQuant(benchmark::State& st) {
  const int64_t m = st.range(0), k = st.range(1);
  set_threads(st, 2);
  std::vector<bf16> x(m * k, f32_to_bf16(0.3f));
  std::vector<uint8_t> q(m * k);
  std::vector<float> s(m * k / 128);
  for (auto _ : st) {
    act_quant_fp8(q, s, x, m, k);
    benchmark::DoNotOptimize(q.data());
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * m * k);
}

// wo_a: the grouped bf16 einsum on FP8-stored weights, all 8 groups of n rows (one weight of 8n rows).
void BM_WoALinear(benchmark::State& st) {
  constexpr int64_t groups = 8;
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2), rows = groups * n;
  const int threads = set_threads(st, 3);
  const size_t sbytes = size_t((rows + 127) / 128 * (k / 128));
  Pool p = make_pool(Data::E4m3, size_t(rows * k), sbytes, 120);
  std::vector<bf16> x(m * groups * k, f32_to_bf16(0.5f)), y(m * rows);
  const double bytes = double(rows * k + int64_t(sbytes));
  const Paired ref = time_calls(st, p, m, false, size_t(bytes), [&](size_t i) {
    linear_bf16_fp8w_grouped(y, x, p.w[i], p.s[i], m, groups, n, k);
    benchmark::DoNotOptimize(y.data());
  });
  report(st, threads, bytes, 2.0 * double(m * rows * k), ref);
}

// Every case, for one thread count. main registers all one-thread cases before any two-thread case:
// once OpenMP has started its second thread, that idle worker spins on the other core, which slows a
// compute-bound single thread by up to a quarter on this machine (and the runtime never has one: a rank
// runs one thread when ranks share the cores).
void register_all(int t) {
  using benchmark::RegisterBenchmark;
  constexpr auto ms = benchmark::kMillisecond, us = benchmark::kMicrosecond;
  const auto each = [&](auto* b, std::initializer_list<std::array<int64_t, 3>> shapes, benchmark::TimeUnit unit) {
    for (auto& x : shapes) b->Args({x[0], x[1], x[2], t});
    b->Unit(unit)->UseManualTime();
  };
  RegisterBenchmark("BM_CopyBandwidth", BM_CopyBandwidth)->Arg(t)->Unit(ms)->UseRealTime();
  RegisterBenchmark("BM_ReadBandwidth", BM_ReadBandwidth)->Arg(t)->Unit(ms)->UseRealTime();
  RegisterBenchmark("BM_FmaPeak<f64>", BM_FmaPeak<true>)->Arg(t)->Unit(ms)->UseRealTime();
  RegisterBenchmark("BM_FmaPeak<f32>", BM_FmaPeak<false>)->Arg(t)->Unit(ms)->UseRealTime();
  // FP8 GEMV at FLASH shapes {m, out, in}: wq_b-like 4096x1024, wq_a-like / shared w1,w3 2048x4096,
  // shared w2 / wo_b-like 4096x2048, indexer wq_b / attention wq_b 32768x1024; a 4-row decode batch; and
  // the prefill GEMM on a 128-token slab.
  each(RegisterBenchmark("BM_Fp8Linear", BM_Fp8Linear<>),
       {{1, 4096, 1024}, {1, 32768, 1024}, {1, 2048, 4096}, {1, 4096, 2048}, {4, 2048, 4096}}, us);
  each(RegisterBenchmark("BM_Fp8Linear", BM_Fp8Linear<>), {{128, 2048, 4096}, {128, 4096, 2048}, {128, 4096, 1024}}, ms);
  // FP4 experts: w1/w3 [2048, 4096], w2 [4096, 2048]; decode (1 and 4 rows) and a 128-token slab.
  each(RegisterBenchmark("BM_Fp4Linear", BM_Fp4Linear<>), {{1, 2048, 4096}, {1, 4096, 2048}, {4, 2048, 4096}}, us);
  each(RegisterBenchmark("BM_Fp4Linear", BM_Fp4Linear<>), {{128, 2048, 4096}, {128, 4096, 2048}}, ms);
  // BF16 [1024, 4096] (one wo_a group as bf16, as it was stored before); wo_a on its FP8 weight, 8 groups of
  // [1024, 4096]; FP32: compressor wkv [1024, 4096], head slice [16384, 4096].
  each(RegisterBenchmark("BM_Bf16Linear", BM_Bf16Linear), {{1, 1024, 4096}, {128, 1024, 4096}}, us);
  each(RegisterBenchmark("BM_WoALinear", BM_WoALinear), {{1, 1024, 4096}, {128, 1024, 4096}}, us);
  each(RegisterBenchmark("BM_F32Linear", BM_F32Linear), {{1, 1024, 4096}, {1, 16384, 4096}, {128, 1024, 4096}}, us);
  // Cache-resident GEMV (compute-bound rate, for diagnosis): 256 KB in L2 and 1 MB; the gap between the two
  // is the fixed cost of a call (activation preparation; with 2 threads, the region's fork and join).
  each(RegisterBenchmark("BM_Fp8Linear<hot>", BM_Fp8Linear<true>), {{1, 256, 1024}, {1, 1024, 1024}}, us);
  each(RegisterBenchmark("BM_Fp4Linear<hot>", BM_Fp4Linear<true>), {{1, 256, 2048}, {1, 1024, 2048}}, us);
  if (t == 1) RegisterBenchmark("BM_ActQuant", BM_ActQuant)->Args({1, 4096, 1})->Args({128, 4096, 1})->Unit(us)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all(1);
  register_all(2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
