// linear_f32: the reference's sequential fp32 order, bit-exact against a plain loop, any shape.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/linear.hpp"

namespace {

using namespace dsv4;

TEST(LinearF32, SequentialOrderBitExactAnyShape) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto [m, n, k] : {std::tuple{1, 16, 256}, {3, 37, 128}, {9, 33, 384}, {20, 100, 256}}) {
    std::vector<float> x(size_t(m * k)), y(size_t(m * n)), ref(size_t(m * n));
    std::vector<bf16> w(size_t(n * k));
    for (auto& v : x) v = round_bf16(nd(rng));  // bf16-valued activations, as in the model
    for (auto& v : w) v = f32_to_bf16(nd(rng) * 0.05f);
    kernels::linear_f32(y, x, w, m, n, k);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        float acc = 0.0f;
        for (int t = 0; t < k; ++t) acc += x[i * k + t] * bf16_to_f32(w[j * k + t]);
        ref[i * n + j] = acc;
      }
    EXPECT_EQ(y, ref) << m << "x" << n << "x" << k;
    // Not the exactly rounded sum: the order is the reference's, so a pairwise/fp64 sum must differ somewhere.
    int differ = 0;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double e = 0;
        for (int t = 0; t < k; ++t) e += double(x[i * k + t]) * bf16_to_f32(w[j * k + t]);
        differ += float(e) != y[i * n + j];
      }
    if (m * n >= 100) EXPECT_GT(differ, 0) << "sequential order indistinguishable from the exact sum";
  }
}

}  // namespace
