// linear_f32: the reference's sequential fp32 order, bit-exact against a plain loop, any shape.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/linear.hpp"

namespace {

using namespace dsv4;

// y[i][j] = ((x[i][0]*w[j][0] + x[i][1]*w[j][1]) + ...): fp32, one rounding per product and per addition.
std::vector<float> sequential(const std::vector<float>& x, const std::vector<bf16>& w, int m, int n, int k) {
  std::vector<float> ref(size_t(m * n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int t = 0; t < k; ++t) acc += x[size_t(i * k + t)] * bf16_to_f32(w[size_t(j * k + t)]);
      ref[size_t(i * n + j)] = acc;
    }
  return ref;
}

TEST(LinearF32, SequentialOrderBitExactAnyShape) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // Every path: decode (m <= 8, every row count) and batch (m > 8: row groups of 8 with remainders, two
  // 16-output panels per task and a lone one, k chunks of 256, row blocks of 256); n % 16 != 0 (scalar
  // outputs); k % 32 != 0, odd, below 32, and 0.
  for (auto [m, n, k] : {std::tuple{1, 16, 256}, {3, 37, 128}, {9, 33, 384}, {20, 100, 256}, {1, 1027, 4096},
                         {2, 48, 4097}, {4, 64, 96}, {5, 35, 333}, {6, 40, 4064}, {7, 17, 31}, {8, 80, 4096},
                         {9, 64, 17}, {13, 81, 610}, {16, 96, 512}, {128, 50, 1000}, {128, 32, 4096},
                         {1, 16, 1}, {300, 48, 70}, {2, 20, 0}, {12, 20, 0}}) {
    std::vector<float> x(size_t(m * k)), y(size_t(m * n));
    std::vector<bf16> w(size_t(n * k));
    for (auto& v : x) v = round_bf16(nd(rng));  // bf16-valued activations, as in the model
    for (auto& v : w) v = f32_to_bf16(nd(rng) * 0.05f);
    kernels::linear_f32(y, x, w, m, n, k);
    EXPECT_EQ(y, sequential(x, w, m, n, k)) << m << "x" << n << "x" << k;
    // Not the exactly rounded sum: the order is the reference's, so a pairwise/fp64 sum must differ somewhere.
    int differ = 0;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double e = 0;
        for (int t = 0; t < k; ++t) e += double(x[i * k + t]) * bf16_to_f32(w[j * k + t]);
        differ += float(e) != y[i * n + j];
      }
    if (m * n >= 100 && k >= 128) {
      EXPECT_GT(differ, 0) << "sequential order indistinguishable from the exact sum";
    }
  }
}

// Arbitrary fp32 activations (inexact products, so a fused multiply-add would show) and signed zeros:
// (+0) + (-0) = +0 must come out as the plain loop's.
TEST(LinearF32, InexactProductsAndSignedZerosBitExact) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto [m, n, k] : {std::tuple{1, 40, 70}, {4, 33, 64}, {12, 48, 99}}) {
    std::vector<float> x(size_t(m * k)), y(size_t(m * n));
    std::vector<bf16> w(size_t(n * k));
    for (auto& v : x) v = nd(rng) * 3.0f;
    for (auto& v : w) v = f32_to_bf16(nd(rng));
    for (int t = 0; t < k; ++t) x[size_t(t)] = -0.0f;  // row 0: all products are signed zeros
    kernels::linear_f32(y, x, w, m, n, k);
    const auto ref = sequential(x, w, m, n, k);
    for (size_t e = 0; e < y.size(); ++e)
      EXPECT_EQ(std::bit_cast<uint32_t>(y[e]), std::bit_cast<uint32_t>(ref[e]))
          << m << "x" << n << "x" << k << " @" << e;
  }
}

}  // namespace
