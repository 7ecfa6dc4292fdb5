// kernels/linear.*: GEMV vs GEMM vs scalar twin, bit for bit; batch invariance; no allocation.
#include <gtest/gtest.h>

#include <omp.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "kernels/exact.hpp"
#include "kernels/linear.hpp"
#include "reference/linear_ref.hpp"

// Counting global allocator for the whole test binary: kernels must not allocate.
namespace {
std::atomic<int64_t> g_allocs{0};
}
void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// The replacement pairs malloc with free on purpose; inlined into callers, GCC takes it for a mismatch.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace dsv4::kernels {
namespace {

std::vector<uint8_t> random_e4m3(int64_t n, std::mt19937& rng) {  // all finite codes, incl. subnormals
  std::vector<uint8_t> v(n);
  for (auto& c : v) {
    do c = uint8_t(rng()); while ((c & 0x7f) == 0x7f);
  }
  return v;
}
std::vector<uint8_t> random_e8m0(int64_t n, std::mt19937& rng, int lo, int hi) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(127 + lo + int(rng() % uint32_t(hi - lo + 1)));
  return v;
}
std::vector<float> random_pow2(int64_t n, std::mt19937& rng, int lo, int hi) {
  std::vector<float> v(n);
  for (auto& s : v) s = std::ldexp(1.f, lo + int(rng() % uint32_t(hi - lo + 1)));
  return v;
}
std::vector<bf16> random_bf16(int64_t n, std::mt19937& rng, float scale, int spread) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<bf16> v(n);
  for (auto& x : v) x = f32_to_bf16(std::ldexp(nd(rng) * scale, -int(rng() % uint32_t(spread + 1))));
  return v;
}
int64_t count_diff(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  int64_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += a[i].bits != b[i].bits;
  return d;
}

struct Fp8Case {
  int64_t m, n, k;
};

// FP8: every path equals the scalar twin. n = 200 crosses a 128-row weight-scale boundary and leaves
// ragged GEMV groups and GEMM tiles; m covers every GEMV variant, partial GEMM tiles and a second and third
// 128-row activation tile.
TEST(LinearFp8, PathsMatchScalarTwin) {
  std::mt19937 rng(11);
  for (const Fp8Case c : {Fp8Case{1, 200, 256}, {2, 200, 256}, {3, 136, 384}, {4, 64, 128}, {5, 200, 256},
                          {37, 136, 384}, {70, 33, 256}, {130, 40, 256}, {257, 33, 384}}) {
    const auto xq = random_e4m3(c.m * c.k, rng), w = random_e4m3(c.n * c.k, rng);
    const auto xs = random_pow2(c.m * c.k / 128, rng, -22, 4);
    const auto ws = random_e8m0(((c.n + 127) / 128) * (c.k / 128), rng, -14, -4);
    std::vector<bf16> want, got(c.m * c.n), got2(c.m * c.n);
    ref::linear_fp8(want, xq, xs, w, ws, c.m, c.n, c.k);
    linear_fp8(got, xq, xs, w, ws, c.m, c.n, c.k);
    EXPECT_EQ(count_diff(got, want), 0) << "auto m=" << c.m << " n=" << c.n << " k=" << c.k;
    linear_fp8_gemm(got2, xq, xs, w, ws, c.m, c.n, c.k);
    EXPECT_EQ(count_diff(got2, want), 0) << "gemm m=" << c.m;
    if (c.m <= 8) {  // the GEMV, in passes of 4 rows above 4
      std::fill(got2.begin(), got2.end(), bf16{0});
      linear_fp8_gemv(got2, xq, xs, w, ws, c.m, c.n, c.k);
      EXPECT_EQ(count_diff(got2, want), 0) << "gemv m=" << c.m;
    }
  }
}

// A row's bits do not depend on the batch: every row alone (GEMV, m = 1), in a batch of 3 (GEMV)
// and inside a 70-row GEMM equals the same row of the full batch.
TEST(LinearFp8, BatchInvariance) {
  std::mt19937 rng(12);
  const int64_t m = 70, n = 96, k = 512;
  const auto xq = random_e4m3(m * k, rng), w = random_e4m3(n * k, rng);
  const auto xs = random_pow2(m * k / 128, rng, -22, 4);
  const auto ws = random_e8m0(k / 128, rng, -14, -4);
  std::vector<bf16> full(m * n);
  linear_fp8(full, xq, xs, w, ws, m, n, k);
  for (int64_t r = 0; r + 3 <= m; r += 3) {
    std::vector<bf16> part(3 * n);
    const int64_t kb = k / 128;
    linear_fp8(part, std::span(xq).subspan(r * k, 3 * k), std::span(xs).subspan(r * kb, 3 * kb), w, ws, 3, n, k);
    for (int64_t i = 0; i < 3 * n; ++i) ASSERT_EQ(part[i].bits, full[r * n + i].bits) << "row " << r + i / n;
    std::vector<bf16> one(n);
    linear_fp8(one, std::span(xq).subspan(r * k, k), std::span(xs).subspan(r * kb, kb), w, ws, 1, n, k);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(one[i].bits, full[r * n + i].bits) << "row " << r;
  }
}

// Hand-computed rounding points (sa = sb = 1). Row 0: one block holding 16·16 + 1·1 + 2^-9·2^-9 =
// 257 + 2^-18, which rounds to fp32 257 (ulp 2^-15), a bf16 tie that goes to even: 256. Row 1: 257 in
// block 0 and 2^-18 in block 1; the fp32 accumulator drops 2^-18, again 256. Without the fp32 block
// rounding or with an fp64 accumulator both rows would give 258.
TEST(LinearFp8, RoundingPoints) {
  const int64_t n = 2, k = 256;
  std::vector<uint8_t> xq(k, 0), w(n * k, 0);
  const uint8_t c16 = f32_to_e4m3(16.f), c1 = f32_to_e4m3(1.f), ctiny = f32_to_e4m3(0x1p-9f);
  xq[0] = c16, xq[1] = c1, xq[2] = ctiny, xq[128] = ctiny;
  w[0] = c16, w[1] = c1, w[2] = ctiny;                // row 0: all in block 0
  w[k + 0] = c16, w[k + 1] = c1, w[k + 128] = ctiny;  // row 1: the tiny product in block 1
  const std::vector<float> xs(k / 128, 1.f);
  const std::vector<uint8_t> ws(k / 128, 127);
  std::vector<bf16> y(n), y1(n);
  linear_fp8(y, xq, xs, w, ws, 1, n, k);
  EXPECT_EQ(bf16_to_f32(y[0]), 256.f);
  EXPECT_EQ(bf16_to_f32(y[1]), 256.f);
  std::vector<bf16> want;
  ref::linear_fp8(want, xq, xs, w, ws, 1, n, k);
  EXPECT_EQ(want[0].bits, y[0].bits);
  EXPECT_EQ(want[1].bits, y[1].bits);
}

// The same for FP4 (sub-blocks of 32): 24·(448·6) + 320·4 = 65792 = 2^16 + 2^8, a bf16 midpoint; plus
// 2^-9·0.5 = 2^-10 below half an fp32 ulp (2^-8). Row 0 has it in the same sub-block, row 1 in the
// next one; both round to fp32 65792, then to even: 65536 (an fp64 path would give 66048).
TEST(LinearFp4, RoundingPoints) {
  const int64_t n = 2, k = 128;
  std::vector<uint8_t> xq(k, 0), wl(n * k, 0);  // wl: unpacked e2m1 codes
  for (int t = 0; t < 24; ++t) xq[t] = f32_to_e4m3(448.f), wl[t] = wl[k + t] = f32_to_e2m1(6.f);
  xq[24] = f32_to_e4m3(320.f), wl[24] = wl[k + 24] = f32_to_e2m1(4.f);
  xq[25] = xq[32] = f32_to_e4m3(0x1p-9f);
  wl[25] = f32_to_e2m1(0.5f), wl[k + 32] = f32_to_e2m1(0.5f);
  std::vector<uint8_t> w(n * k / 2);
  for (int64_t j = 0; j < n * k / 2; ++j) w[j] = uint8_t(wl[2 * j] | wl[2 * j + 1] << 4);
  const std::vector<float> xs(1, 1.f);
  const std::vector<uint8_t> ws(n * k / 32, 127);
  std::vector<bf16> y(n), want;
  linear_fp4(y, xq, xs, w, ws, 1, n, k);
  EXPECT_EQ(bf16_to_f32(y[0]), 65536.f);
  EXPECT_EQ(bf16_to_f32(y[1]), 65536.f);
  ref::linear_fp4(want, xq, xs, w, ws, 1, n, k);
  EXPECT_EQ(want[0].bits, y[0].bits);
  EXPECT_EQ(want[1].bits, y[1].bits);
}

TEST(LinearFp4, MatchesScalarTwinAndBatchInvariant) {
  std::mt19937 rng(13);
  // m = 70 and 130: a second and third 64-row activation tile.
  for (const Fp8Case c : {Fp8Case{1, 40, 256}, {3, 17, 128}, {6, 64, 384}, {37, 33, 256}, {70, 40, 256}, {130, 33, 384}}) {
    const auto xq = random_e4m3(c.m * c.k, rng);
    std::vector<uint8_t> w(c.n * c.k / 2);
    for (auto& b : w) b = uint8_t(rng());
    const auto xs = random_pow2(c.m * c.k / 128, rng, -22, 4);
    const auto ws = random_e8m0(c.n * c.k / 32, rng, -14, 2);
    std::vector<bf16> want, got(c.m * c.n);
    ref::linear_fp4(want, xq, xs, w, ws, c.m, c.n, c.k);
    linear_fp4(got, xq, xs, w, ws, c.m, c.n, c.k);
    EXPECT_EQ(count_diff(got, want), 0) << "m=" << c.m << " n=" << c.n << " k=" << c.k;
    const int64_t kb = c.k / 128;
    for (int64_t r = 0; r < c.m; ++r) {
      std::vector<bf16> one(c.n);
      linear_fp4(one, std::span(xq).subspan(r * c.k, c.k), std::span(xs).subspan(r * kb, kb), w, ws, 1, c.n, c.k);
      for (int64_t j = 0; j < c.n; ++j) ASSERT_EQ(one[j].bits, got[r * c.n + j].bits) << "row " << r;
    }
  }
}

// The exact sum via a 113-bit quad accumulator (exact for these ranges), rounded to fp32 and then to bf16
// as the reference's bf16 GEMMs do.
bf16 exact_bf16_dot(const bf16* x, const bf16* w, int64_t k) {
  __float128 s = 0;
  for (int64_t i = 0; i < k; ++i) s += __float128(bf16_to_f32(x[i])) * __float128(bf16_to_f32(w[i]));
  return f32_to_bf16(float(s));
}

TEST(LinearBf16, PathsMatchCanonicalAndExact) {
  std::mt19937 rng(14);
  // k = 8320 exceeds the GEMV's activation scratch: m <= 4 takes the GEMM engine there.
  for (const Fp8Case c : {Fp8Case{1, 50, 256}, {2, 9, 128}, {4, 40, 512}, {19, 45, 256}, {2, 9, 8320}}) {
    const auto x = random_bf16(c.m * c.k, rng, 1.f, 12), w = random_bf16(c.n * c.k, rng, 0.05f, 12);
    std::vector<bf16> a(c.m * c.n), b(c.m * c.n);
    linear_bf16(a, x, w, c.m, c.n, c.k);
    linear_bf16_gemm(b, x, w, c.m, c.n, c.k);
    EXPECT_EQ(count_diff(a, b), 0);
    if (c.m <= 4) {
      linear_bf16_gemv(b, x, w, c.m, c.n, c.k);
      EXPECT_EQ(count_diff(a, b), 0);
    }
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        std::vector<double> xd(c.k), wd(c.k);
        for (int64_t t = 0; t < c.k; ++t) xd[t] = bf16_to_f32(x[i * c.k + t]), wd[t] = bf16_to_f32(w[j * c.k + t]);
        ASSERT_EQ(a[i * c.n + j].bits, f64_to_bf16_via_f32(ref::dense_dot_canonical(xd.data(), wd.data(), c.k)).bits);
        // With 12 binades of spread the fp64 sums are exact: the result is bf16(fp32(exact sum)).
        ASSERT_EQ(a[i * c.n + j].bits, exact_bf16_dot(&x[i * c.k], &w[j * c.k], c.k).bits) << i << "," << j;
      }
  }
}

// The wo_a einsum on FP8-stored weights equals linear_bf16 on the dequantised weight (what convert.py stores),
// per group, on every path. Groups of n = 100 rows put GEMV row groups across a 128-row scale block; k = 8320
// exceeds the GEMV's activation scratch.
TEST(LinearBf16Fp8w, MatchesBf16OnTheDequantisedWeight) {
  std::mt19937 rng(15);
  struct Case {
    int64_t m, g, n, k;
  };
  for (const Case c : {Case{1, 3, 100, 384}, {2, 3, 20, 256}, {3, 2, 64, 512}, {4, 3, 100, 384}, {5, 3, 100, 384},
                       {19, 2, 50, 256}, {2, 1, 9, 8320}}) {
    const int64_t rows = c.g * c.n, kb = c.k / 128;
    const auto x = random_bf16(c.m * c.g * c.k, rng, 1.f, 12);
    const auto w = random_e4m3(rows * c.k, rng);
    const auto ws = random_e8m0((rows + 127) / 128 * kb, rng, -14, 4);
    std::vector<bf16> deq(rows * c.k);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < c.k; ++i) {
        const float v = e4m3_to_f32(w[r * c.k + i]) * e8m0_to_f32(ws[r / 128 * kb + i / 128]);
        deq[r * c.k + i] = f32_to_bf16(v);
        ASSERT_EQ(bf16_to_f32(deq[r * c.k + i]), v);  // the dequantisation is exact
      }
    std::vector<bf16> want(c.m * c.g * c.n);
    for (int64_t gi = 0; gi < c.g; ++gi) {
      std::vector<bf16> xg(c.m * c.k), yg(c.m * c.n);
      for (int64_t i = 0; i < c.m; ++i) std::copy_n(&x[(i * c.g + gi) * c.k], c.k, &xg[i * c.k]);
      linear_bf16(yg, xg, std::span(deq).subspan(gi * c.n * c.k, c.n * c.k), c.m, c.n, c.k);
      for (int64_t i = 0; i < c.m; ++i) std::copy_n(&yg[i * c.n], c.n, &want[(i * c.g + gi) * c.n]);
    }
    for (const LinearPath path : {LinearPath::kAuto, LinearPath::kGemv, LinearPath::kGemm}) {
      if (path == LinearPath::kGemv && (c.m > 4 || c.k > 8192)) continue;
      std::vector<bf16> y(want.size());
      linear_bf16_fp8w_grouped(y, x, w, ws, c.m, c.g, c.n, c.k, path);
      EXPECT_EQ(count_diff(y, want), 0) << "m=" << c.m << " n=" << c.n << " k=" << c.k << " path=" << int(path);
    }
  }
}

// The bits do not depend on the thread count: one thread runs inline (no parallel region), two and three
// split the rows and tiles differently.
TEST(Linear, ThreadCountInvariance) {
  std::mt19937 rng(18);
  const int64_t n = 200, k = 384, mmax = 70;
  const auto xq = random_e4m3(mmax * k, rng), w8 = random_e4m3(n * k, rng);
  const auto xs = random_pow2(mmax * k / 128, rng, -22, 4);
  const auto ws8 = random_e8m0(((n + 127) / 128) * (k / 128), rng, -14, -4);
  std::vector<uint8_t> w4(n * k / 2);
  for (auto& b : w4) b = uint8_t(rng());
  const auto ws4 = random_e8m0(n * k / 32, rng, -14, 2);
  const auto xb = random_bf16(mmax * k, rng, 1.f, 8), wb = random_bf16(n * k, rng, 0.05f, 8);
  std::vector<float> xf(mmax * k);
  for (auto& v : xf) v = bf16_to_f32(random_bf16(1, rng, 1.f, 8)[0]);
  auto run_all = [&](int threads) {
    omp_set_num_threads(threads);
    std::vector<uint32_t> bits;
    for (int64_t m : {int64_t(1), int64_t(3), int64_t(5), int64_t(8), mmax}) {
      std::vector<bf16> y(m * n);
      std::vector<float> yf(m * n);
      auto keep = [&] { for (const bf16 v : y) bits.push_back(v.bits); };
      linear_fp8(y, xq, xs, w8, ws8, m, n, k), keep();
      linear_fp4(y, xq, xs, w4, ws4, m, n, k), keep();
      linear_bf16(y, xb, wb, m, n, k), keep();
      linear_bf16_fp8w_grouped(y, xb, w8, ws8, m, 1, n, k), keep();
      linear_f32(yf, xf, wb, m, n, k);
      for (const float v : yf) bits.push_back(std::bit_cast<uint32_t>(v));
    }
    return bits;
  };
  const int saved = omp_get_max_threads();
  const auto one = run_all(1), two = run_all(2), three = run_all(3);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
  EXPECT_EQ(one, three);
}

// A kernel called from inside a caller's parallel region (each thread its own call) still computes all of
// its output: its worksharing loops must not bind to the caller's team.
TEST(Linear, CalledFromInsideAParallelRegion) {
  std::mt19937 rng(19);
  const int64_t n = 200, k = 384;
  const auto xq = random_e4m3(k, rng), w8 = random_e4m3(n * k, rng);
  const auto xs = random_pow2(k / 128, rng, -22, 4);
  const auto ws8 = random_e8m0(((n + 127) / 128) * (k / 128), rng, -14, -4);
  std::vector<uint8_t> w4(n * k / 2);
  for (auto& b : w4) b = uint8_t(rng());
  const auto ws4 = random_e8m0(n * k / 32, rng, -14, 2);
  const auto xb = random_bf16(k, rng, 1.f, 8), wb = random_bf16(n * k, rng, 0.05f, 8);
  auto run_all = [&](std::span<bf16> y) {
    linear_fp8(y.first(n), xq, xs, w8, ws8, 1, n, k);
    linear_fp4(y.subspan(n, n), xq, xs, w4, ws4, 1, n, k);
    linear_bf16(y.subspan(2 * n, n), xb, wb, 1, n, k);
  };
  std::vector<bf16> want(3 * n), got0(3 * n), got1(3 * n);
  run_all(want);
#pragma omp parallel num_threads(2)
  run_all(omp_get_thread_num() == 0 ? std::span(got0) : std::span(got1));
  EXPECT_EQ(count_diff(got0, want), 0);
  EXPECT_EQ(count_diff(got1, want), 0);
}

// By construction the kernels use only stack scratch; this checks that nothing reaches operator new
// (the kernels' worker pool is created by a first call before counting starts).
TEST(Linear, NoAllocation) {
  std::mt19937 rng(17);
  const int64_t m = 40, n = 64, k = 256;
  const auto xq = random_e4m3(m * k, rng), w8 = random_e4m3(n * k, rng);
  const auto xs = random_pow2(m * k / 128, rng, -10, 0);
  const auto ws8 = random_e8m0(k / 128, rng, -10, -4), ws4 = random_e8m0(n * k / 32, rng, -10, -4);
  std::vector<uint8_t> w4(n * k / 2, 0x21);
  const auto xb = random_bf16(m * k, rng, 1.f, 4), wb = random_bf16(n * k, rng, 1.f, 4);
  std::vector<float> xf(m * k, 0.5f), yf(m * n);
  std::vector<bf16> y(m * n);
  auto all = [&] {
    for (int64_t mm : {int64_t(1), int64_t(4), m}) {
      linear_fp8(y, xq, xs, w8, ws8, mm, n, k);
      linear_fp4(y, xq, xs, w4, ws4, mm, n, k);
      linear_bf16(y, xb, wb, mm, n, k);
      linear_bf16_fp8w_grouped(y, xb, w8, ws8, mm, 1, n, k);
      linear_f32(yf, xf, wb, mm, n, k);
    }
  };
  all();
  const int64_t before = g_allocs.load();
  all();
  EXPECT_EQ(g_allocs.load() - before, 0);
}

}  // namespace
}  // namespace dsv4::kernels
