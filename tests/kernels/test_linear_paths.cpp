// kernels/linear_fp4 / linear_fp8: the GEMV paths (m <= 8) against the tiled paths and the scalar twins at
// FLASH-like K (every e4m3 code, every e2m1 nibble, wide scale ranges), and NaN propagation; the BF16 linears'
// canonical lane tree.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/linear.hpp"
#include "reference/linear_ref.hpp"

namespace dsv4::kernels {
namespace {

std::vector<uint8_t> all_finite_e4m3(int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  for (auto& c : v) {
    do c = uint8_t(rng()); while ((c & 0x7f) == 0x7f);
  }
  return v;
}

TEST(LinearPaths, Fp4GemvMatchesTilesAndTwin) {
  std::mt19937 rng(101);
  // k = 8320 exceeds the GEMV's activation scratch (k <= 8192) and takes the tiles for every m.
  for (const int64_t k : {int64_t(2048), int64_t(4096), int64_t(8320)}) {
    const int64_t m = 12, n = 23;
    const auto xq = all_finite_e4m3(m * k, rng);
    std::vector<uint8_t> w(n * k / 2);
    for (auto& b : w) b = uint8_t(rng());
    std::vector<float> xs(m * k / 128);
    for (auto& s : xs) s = std::ldexp(1.f, -24 + int(rng() % 30));
    std::vector<uint8_t> ws(n * k / 32);
    for (auto& b : ws) b = uint8_t(127 - 20 + int(rng() % 24));
    std::vector<bf16> want, tiles(m * n);
    ref::linear_fp4(want, xq, xs, w, ws, m, n, k);
    linear_fp4(tiles, xq, xs, w, ws, m, n, k);  // m = 12: tiles
    for (int64_t i = 0; i < m * n; ++i) ASSERT_EQ(tiles[i].bits, want[i].bits) << "k=" << k << " i=" << i;
    for (int64_t rows = 1; rows <= 8; ++rows)  // GEMV with 1..8 rows (two passes above 4)
      for (int64_t r0 = 0; r0 + rows <= m; r0 += rows) {
        std::vector<bf16> got(rows * n);
        linear_fp4(got, std::span(xq).subspan(r0 * k, rows * k), std::span(xs).subspan(r0 * k / 128, rows * k / 128),
                   w, ws, rows, n, k);
        for (int64_t i = 0; i < rows * n; ++i)
          ASSERT_EQ(got[i].bits, tiles[r0 * n + i].bits) << "k=" << k << " rows=" << rows << " r0=" << r0;
      }
  }
}

TEST(LinearPaths, Fp8GemvGemmMatchTwinAtFlashK) {
  std::mt19937 rng(102);
  // k = 8320 exceeds the GEMV's activation scratch (k <= 8192): every m takes the GEMM there.
  for (const int64_t k : {int64_t(4096), int64_t(8320)}) {
    const int64_t m = 8, n = 136;  // the GEMV in two passes of 4 rows
    const auto xq = all_finite_e4m3(m * k, rng), w = all_finite_e4m3(n * k, rng);
    std::vector<float> xs(m * k / 128);
    for (auto& s : xs) s = std::ldexp(1.f, -24 + int(rng() % 30));
    std::vector<uint8_t> ws(((n + 127) / 128) * (k / 128));
    for (auto& b : ws) b = uint8_t(127 - 20 + int(rng() % 24));
    std::vector<bf16> want, gemv(m * n), gemm(m * n);
    ref::linear_fp8(want, xq, xs, w, ws, m, n, k);
    linear_fp8_gemv(gemv, xq, xs, w, ws, m, n, k);
    linear_fp8_gemm(gemm, xq, xs, w, ws, m, n, k);
    for (int64_t i = 0; i < m * n; ++i) {
      ASSERT_EQ(gemv[i].bits, want[i].bits) << "k=" << k << " i=" << i;
      ASSERT_EQ(gemm[i].bits, want[i].bits) << "k=" << k << " i=" << i;
    }
    for (int64_t rows = 1; rows <= 7; ++rows) {  // GEMV with 1..7 rows against the same rows of the GEMM
      std::vector<bf16> got(rows * n);
      linear_fp8(got, std::span(xq).first(rows * k), std::span(xs).first(rows * k / 128), w, ws, rows, n, k);
      for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(got[i].bits, want[i].bits) << "k=" << k << " rows=" << rows;
    }
  }
}

TEST(LinearPaths, Fp8NanCodesPropagate) {
  std::mt19937 rng(103);
  const int64_t m = 12, n = 16, k = 256;
  auto xq = all_finite_e4m3(m * k, rng), w = all_finite_e4m3(n * k, rng);
  const std::vector<float> xs(m * k / 128, 1.f);
  const std::vector<uint8_t> ws(k / 128, 127);
  // NaN weights in rows 3 and 12 (different K blocks, halves and lanes of the decode), NaN activation
  // in row 2: GEMV (1..8 rows) and GEMM (12 rows).
  w[3 * k + 77] = 0xff, w[12 * k + 128 + 42] = 0x7f;
  xq[2 * k + 200] = 0x7f;
  for (const int64_t rows : {1, 3, 4, 5, 8, 12}) {
    std::vector<bf16> y(rows * n);
    linear_fp8(y, std::span(xq).first(rows * k), std::span(xs).first(rows * k / 128), w, ws, rows, n, k);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < n; ++j)
        EXPECT_EQ(std::isnan(bf16_to_f32(y[i * n + j])), i == 2 || j == 3 || j == 12)
            << "rows=" << rows << " " << i << "," << j;
  }
}

// The wo_a kernel on FP8 weights: a NaN weight code or a NaN block scale (0xFF) makes its outputs NaN on every
// path, as the dequantised bf16 weight would.
TEST(LinearPaths, Bf16Fp8wNanCodesAndScalesPropagate) {
  std::mt19937 rng(104);
  const int64_t m = 6, g = 2, n = 80, k = 256;  // scale blocks: rows 0..127 and 128..159
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<bf16> x(m * g * k);
  for (auto& v : x) v = f32_to_bf16(nd(rng));
  auto w = all_finite_e4m3(g * n * k, rng);
  std::vector<uint8_t> ws(2 * k / 128, 120);
  w[3 * k + 77] = 0xff, w[90 * k + 128 + 42] = 0x7f;  // rows 3 and 90 (group 1, row 10)
  ws[1 * 2 + 1] = 0xff;                               // rows 128..159 (group 1, rows 48..79), K block 1
  for (const int64_t rows : {1, 3, 4, 6})
    for (const LinearPath path : {LinearPath::kAuto, LinearPath::kGemm}) {
      std::vector<bf16> y(rows * g * n);
      linear_bf16_fp8w_grouped(y, std::span(x).first(rows * g * k), w, ws, rows, g, n, k, path);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t r = 0; r < g * n; ++r)
          EXPECT_EQ(std::isnan(bf16_to_f32(y[i * g * n + r])), r == 3 || r == 90 || r >= 128)
              << "rows=" << rows << " path=" << int(path) << " " << i << "," << r;
    }
}

// The BF16 block sum's canonical lane tree (linear_core.hpp) decides where fp64 rounds: lanes 0..7 hold
// 2^53, 2, 1, 2, -2^53, -2, 2, 2. ((l0+l1)+(l2+l3)) = 2^53 + 5 rounds to 2^53 + 4 (ties to even), the other
// half is exact, so the canonical sum is 6 where the exact sum is 7; pairing the lanes otherwise (e.g. the
// halves' pairs swapped) gives 7. Every path must give 6.
TEST(LinearPaths, Bf16BlockSumFollowsTheCanonicalTree) {
  const int64_t m = 6, n = 8, k = 256;
  const float lanes[8] = {0x1p53f, 2.f, 1.f, 2.f, -0x1p53f, -2.f, 2.f, 2.f};
  std::vector<bf16> x(m * k, f32_to_bf16(0.f)), w(n * k, f32_to_bf16(1.f));
  for (int64_t i = 0; i < m; ++i)
    for (int l = 0; l < 8; ++l) x[i * k + 128 + l] = f32_to_bf16(lanes[l]);  // the second K block
  // The FP8-weight twin (wo_a): weights 1.0 (e4m3 0x38) with block scale 4 (e8m0 129), so every sum is 4x.
  const std::vector<uint8_t> w8(n * k, 0x38), ws8(k / 128, 129);
  for (const int64_t rows : {1, 2, 3, 4, 6}) {
    std::vector<bf16> y(rows * n, f32_to_bf16(0.f)), yg(rows * n, f32_to_bf16(0.f));
    linear_bf16(y, std::span(x).first(rows * k), w, rows, n, k);
    linear_bf16_gemm(yg, std::span(x).first(rows * k), w, rows, n, k);
    for (int64_t e = 0; e < rows * n; ++e) {
      EXPECT_EQ(bf16_to_f32(y[e]), 6.f) << "rows=" << rows << " element " << e;
      EXPECT_EQ(bf16_to_f32(yg[e]), 6.f) << "gemm rows=" << rows << " element " << e;
    }
    for (const LinearPath path : {LinearPath::kAuto, LinearPath::kGemm}) {
      linear_bf16_fp8w_grouped(y, std::span(x).first(rows * k), w8, ws8, rows, 1, n, k, path);
      for (int64_t e = 0; e < rows * n; ++e)
        EXPECT_EQ(bf16_to_f32(y[e]), 24.f) << "fp8w rows=" << rows << " path=" << int(path) << " element " << e;
    }
  }
}

}  // namespace
}  // namespace dsv4::kernels
