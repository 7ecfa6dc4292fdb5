// Indexer scoring and top-k vs scalar twins: bf16 rounding steps, causal mask, ties to the lower index.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/exact.hpp"
#include "kernels/indexer.hpp"
#include "reference/ops_ref.hpp"

namespace dsv4 {
namespace {

TEST(Indexer, ScoresRoundEachStepAndMaskCausally) {
  const int T = 7, H = 4, hd = 128, nk = 9, ratio = 4;
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  std::vector<bf16> q(T * H * hd), keys(nk * hd), wp(T * H), w(T * H), sc(T * nk);
  for (auto& v : q) v = f32_to_bf16(nd(g));
  for (auto& v : keys) v = f32_to_bf16(nd(g));
  for (auto& v : wp) v = f32_to_bf16(nd(g));
  const float scale = float(std::pow(128.0, -0.5) * std::pow(4.0, -0.5));
  kernels::indexer_weights(w, wp, scale);
  std::vector<int64_t> pos;
  for (int t = 0; t < T; ++t) pos.push_back(20 + 3 * t);  // visible (pos+1)/4 = 5..9
  kernels::indexer_scores(sc, q, w, keys, pos, H, hd, ratio);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < nk; ++j) {
      const float got = bf16_to_f32(sc[t * nk + j]);
      if (j >= (pos[t] + 1) / ratio) {
        ASSERT_TRUE(std::isinf(got) && got < 0) << t << "," << j;
        continue;
      }
      float acc = 0;
      for (int h = 0; h < H; ++h) {
        double dot = 0;
        for (int c = 0; c < hd; ++c) dot += double(bf16_to_f32(q[(t * H + h) * hd + c])) * bf16_to_f32(keys[j * hd + c]);
        const float qk = std::max(bf16_to_f32(kernels::f64_to_bf16_via_f32(dot)), 0.0f);
        acc += round_bf16(qk * round_bf16(bf16_to_f32(wp[t * H + h]) * scale));
      }
      ASSERT_EQ(sc[t * nk + j].bits, f32_to_bf16(acc).bits) << t << "," << j;
    }
}

TEST(Indexer, TopkTiesGoToTheLowerIndexAndMaskedBecomeMinusOne) {
  const int T = 40, nk = 50, k = 12, ratio = 4;
  std::mt19937 g(9);
  std::vector<bf16> sc(T * nk);
  std::vector<int64_t> pos;
  for (int t = 0; t < T; ++t) pos.push_back(4 * t + int64_t(g() % 4));  // visible = t .. t+1
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < nk; ++j)  // few distinct values: many exact ties
      sc[t * nk + j] = j >= (pos[t] + 1) / ratio ? f32_to_bf16(-INFINITY) : f32_to_bf16(float(int(g() % 5)) * 0.5f);
  std::vector<int32_t> idx(T * k);
  kernels::indexer_topk(idx, sc, pos, nk, k, ratio, 100);
  for (int t = 0; t < T; ++t) {
    std::vector<float> row(nk);
    for (int j = 0; j < nk; ++j) row[j] = bf16_to_f32(sc[t * nk + j]);
    const auto top = ref::topk_stable(row, k);
    for (int i = 0; i < k; ++i) {
      const int32_t want = top[i] >= (pos[t] + 1) / ratio ? -1 : top[i] + 100;
      ASSERT_EQ(idx[t * k + i], want) << "token " << t << " rank " << i;
    }
  }
}

}  // namespace
}  // namespace dsv4
