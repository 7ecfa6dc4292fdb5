// MoE gate, clamped SwiGLU and combine vs scalar twins.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/moe.hpp"
#include "reference/ops_ref.hpp"

namespace dsv4 {
namespace {

float sqrt_softplus(float x) { return std::sqrt(x > 20.0f ? x : float(std::log1p(double(std::exp(x))))); }

TEST(Moe, GateTopkUsesBiasOnlyForSelection) {
  const int E = 16, k = 6, rows = 20;
  std::mt19937 g(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(rows * E), bias(E), w(rows * k), sc(rows * E);
  for (auto& v : logits) v = nd(g);
  for (int r = 0; r < 4; ++r) logits[r * E + 3] = logits[r * E + 9] = 25.0f;  // above the softplus threshold, tie
  for (auto& v : bias) v = 0.1f * nd(g);
  bias[3] = bias[9] = 0.0f;
  std::vector<int32_t> ix(rows * k), ids(rows, 0);
  kernels::moe_gate(w, ix, sc, logits, bias, {}, ids, E, k, 1.5f);
  for (int r = 0; r < rows; ++r) {
    std::vector<float> biased(E);
    for (int e = 0; e < E; ++e) {
      ASSERT_EQ(sc[r * E + e], sqrt_softplus(logits[r * E + e]));
      biased[e] = sc[r * E + e] + bias[e];
    }
    const auto top = ref::topk_stable(biased, k);
    float s = 0;
    for (int i = 0; i < k; ++i) s += sc[r * E + top[i]];
    for (int i = 0; i < k; ++i) {
      ASSERT_EQ(ix[r * k + i], top[i]) << r << "," << i;
      ASSERT_EQ(w[r * k + i], sc[r * E + top[i]] / s * 1.5f) << r << "," << i;
    }
  }
}

TEST(Moe, HashGateTakesTid2eidRowsAndStillNormalises) {
  const int E = 16, k = 6, vocab = 10;
  std::vector<int64_t> tid(vocab * k);
  for (int v = 0; v < vocab; ++v)
    for (int i = 0; i < k; ++i) tid[v * k + i] = (v * 7 + i * 3) % E;
  std::vector<float> logits(2 * E, 0.5f), w(2 * k);
  logits[5] = 2.0f;
  std::vector<int32_t> ix(2 * k), ids = {7, 2};
  kernels::moe_gate(w, ix, {}, logits, {}, tid, ids, E, k, 1.5f);
  for (int r = 0; r < 2; ++r) {
    float s = 0, sum_w = 0;
    for (int i = 0; i < k; ++i) {
      ASSERT_EQ(ix[r * k + i], tid[ids[r] * k + i]);
      s += sqrt_softplus(logits[r * E + ix[r * k + i]]);
    }
    for (int i = 0; i < k; ++i) {
      ASSERT_EQ(w[r * k + i], sqrt_softplus(logits[r * E + ix[r * k + i]]) / s * 1.5f);
      sum_w += w[r * k + i];
    }
    EXPECT_NEAR(sum_w, 1.5f, 1e-5f);
  }
}

TEST(Moe, SwigluClampsGateFromAboveAndUpBothWays) {
  const std::vector<float> gs = {12.0f, -30.0f, 3.0f, 0.5f}, us = {-15.0f, 4.0f, 11.0f, -2.0f};
  std::vector<bf16> g, u, a(4), ar(4);
  for (int i = 0; i < 4; ++i) g.push_back(f32_to_bf16(gs[i])), u.push_back(f32_to_bf16(us[i]));
  const std::vector<float> rw = {0.25f};
  kernels::swiglu(a, g, u, {}, 4, 10.0f);
  kernels::swiglu(ar, g, u, rw, 4, 10.0f);
  for (int i = 0; i < 4; ++i) {
    const float gg = std::min(gs[i], 10.0f), uu = std::clamp(us[i], -10.0f, 10.0f);
    const float x = gg / (1.0f + std::exp(-gg)) * uu;
    ASSERT_EQ(a[i].bits, f32_to_bf16(x).bits) << i;
    ASSERT_EQ(ar[i].bits, f32_to_bf16(0.25f * x).bits) << i;  // routed: weight applied before the bf16 cast
  }
}

TEST(Moe, CombineAddsExpertsInAscendingIdThenShared) {
  const int k = 3, dim = 2;
  // Slots hold experts 9, 2, 5. Column 0: e2 = 2^24, e5 = −2^24, e9 = 1: ascending ids give (2^24 − 2^24) + 1 = 1,
  // slot order would give (1 + 2^24) − 2^24 = 0. Column 1: e2 = 2^24, e5 = −2^24, shared = 1: shared last gives
  // 1, shared first would give (1 + 2^24) − 2^24 = 0.
  const std::vector<int32_t> ix = {9, 2, 5};
  std::vector<bf16> out(k * dim), shared(dim), y(dim);
  out[0] = f32_to_bf16(1.0f), out[1] = f32_to_bf16(0.0f);                // expert 9
  out[2] = f32_to_bf16(16777216.0f), out[3] = f32_to_bf16(16777216.0f);  // expert 2
  out[4] = f32_to_bf16(-16777216.0f), out[5] = f32_to_bf16(-16777216.0f);  // expert 5
  shared[0] = f32_to_bf16(0.0f), shared[1] = f32_to_bf16(1.0f);
  kernels::moe_combine(y, out, ix, shared, k, dim);
  EXPECT_EQ(bf16_to_f32(y[0]), 1.0f);
  EXPECT_EQ(bf16_to_f32(y[1]), 1.0f);
}

}  // namespace
}  // namespace dsv4
