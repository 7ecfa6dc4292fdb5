// Hyper-connection kernels vs scalar twins and Sinkhorn properties.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/hc.hpp"
#include "reference/ops_ref.hpp"

namespace dsv4 {
namespace {

TEST(Hc, PostSumsOverTheFirstCombIndex) {
  const int hc = 4, dim = 64, rows = 3;
  std::mt19937 g(7);
  std::normal_distribution<float> nd;
  std::vector<bf16> x(rows * dim), res(rows * hc * dim), out(res.size());
  std::vector<float> post(rows * hc), comb(rows * hc * hc);
  for (auto& v : x) v = f32_to_bf16(nd(g));
  for (auto& v : res) v = f32_to_bf16(nd(g));
  for (auto& v : post) v = nd(g);
  for (auto& v : comb) v = nd(g);  // not symmetric
  kernels::hc_post(out, x, res, post, comb, {hc, dim, 20, 1e-6f, 1e-6f});
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < hc; ++k)
      for (int i = 0; i < dim; ++i) {
        float s = 0;
        for (int j = 0; j < hc; ++j) s += ref::opaque(comb[(r * hc + j) * hc + k] * bf16_to_f32(res[(r * hc + j) * dim + i]));
        const float y = ref::opaque(post[r * hc + k] * bf16_to_f32(x[r * dim + i])) + s;
        ASSERT_EQ(out[(r * hc + k) * dim + i].bits, f32_to_bf16(y).bits) << r << "," << k << "," << i;
      }
}

TEST(Hc, SinkhornIsDoublyStochasticAndSplitsAreInRange) {
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);  // moderate logits: 20 rounds converge rows to ~1e-2
  for (int trial = 0; trial < 50; ++trial) {
    float mixes[24], base[24], scale[3] = {nd(g), nd(g), nd(g)}, pre[4], post[4], comb[16];
    for (int i = 0; i < 24; ++i) mixes[i] = nd(g), base[i] = nd(g);
    kernels::hc_split_sinkhorn(pre, post, comb, mixes, scale, base, 4, 20, 1e-6f);
    for (int j = 0; j < 4; ++j) {
      EXPECT_GT(pre[j], 0.0f);
      EXPECT_LE(pre[j], 1.0f + 1e-6f);
      EXPECT_GE(post[j], 0.0f);
      EXPECT_LE(post[j], 2.0f);
      float rs = 0, cs = 0;
      for (int k = 0; k < 4; ++k) rs += comb[j * 4 + k], cs += comb[k * 4 + j];
      EXPECT_NEAR(cs, 1.0f, 1e-4f) << "column " << j;  // the last step normalises columns
      EXPECT_NEAR(rs, 1.0f, 0.1f) << "row " << j;  // rows only approach 1 in 20 rounds
    }
    float c[4][4];
    for (int j = 0; j < 16; ++j) c[j / 4][j % 4] = ref::opaque(mixes[8 + j] * scale[2]) + base[8 + j];
    ref::sinkhorn(c, 20, 1e-6f);
    for (int j = 0; j < 16; ++j) ASSERT_EQ(comb[j], c[j / 4][j % 4]) << "trial " << trial << " comb " << j;
  }
}

TEST(Hc, PreAndHeadMatchTwin) {
  const int hc = 4, dim = 128, rows = 2, nmix = 24;
  std::mt19937 g(11);
  std::normal_distribution<float> nd;
  std::vector<bf16> h(rows * hc * dim), y(rows * dim), yh(rows * dim);
  std::vector<float> fn(nmix * hc * dim), base(nmix), scale = {0.5f, 0.7f, 0.9f}, post(rows * hc), comb(rows * 16);
  for (auto& v : h) v = f32_to_bf16(nd(g));
  for (auto& v : fn) v = nd(g) * 0.05f;
  for (auto& v : base) v = nd(g);
  const kernels::HcDims d{hc, dim, 20, 1e-6f, 1e-6f};
  kernels::hc_pre(y, post, comb, h, fn, scale, base, d);
  kernels::hc_head(yh, h, std::span<const float>(fn).first(4 * hc * dim), std::span<const float>(scale).first(1),
                   std::span<const float>(base).first(4), d);
  for (int r = 0; r < rows; ++r) {
    const bf16* x = h.data() + r * hc * dim;
    double ss = 0;
    for (int i = 0; i < hc * dim; ++i) ss += double(bf16_to_f32(x[i])) * bf16_to_f32(x[i]);
    const float rs = 1.0f / std::sqrt(float(ss) / float(hc * dim) + 1e-6f);
    float mixes[24];
    for (int m = 0; m < nmix; ++m) {
      double a = 0;
      for (int i = 0; i < hc * dim; ++i) a += double(bf16_to_f32(x[i])) * fn[m * hc * dim + i];
      mixes[m] = float(a) * rs;
    }
    float pre[4], po[4], cb[16];
    kernels::hc_split_sinkhorn(pre, po, cb, mixes, scale.data(), base.data(), hc, 20, 1e-6f);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(post[r * 4 + j], po[j]);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(comb[r * 16 + j], cb[j]);
    float ph[4];
    for (int j = 0; j < 4; ++j) ph[j] = 1.0f / (1.0f + std::exp(-(mixes[j] * scale[0] + base[j]))) + 1e-6f;
    for (int i = 0; i < dim; ++i) {
      float a = 0, b = 0;
      for (int j = 0; j < hc; ++j) {
        a += ref::opaque(pre[j] * bf16_to_f32(x[j * dim + i]));
        b += ref::opaque(ph[j] * bf16_to_f32(x[j * dim + i]));
      }
      ASSERT_EQ(y[r * dim + i].bits, f32_to_bf16(a).bits) << r << "," << i;
      ASSERT_EQ(yh[r * dim + i].bits, f32_to_bf16(b).bits) << r << "," << i;
    }
  }
}

}  // namespace
}  // namespace dsv4
