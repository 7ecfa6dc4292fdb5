// norm_rope kernels vs scalar twins (tests/kernels/reference/ops_ref.hpp) and spec properties.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/norm_rope.hpp"
#include "reference/ops_ref.hpp"

namespace dsv4 {
namespace {

std::vector<bf16> random_bf16(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<bf16> v(n);
  for (auto& x : v) x = f32_to_bf16(nd(g));
  return v;
}

TEST(NormRope, Hadamard128MatchesExactMatmul) {
  auto x = random_bf16(128 * 37, 1, 3.0f);
  std::vector<bf16> y(x.size());
  kernels::hadamard128(y, x);
  const auto want = ref::hadamard(x, 128);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i].bits, want[i].bits) << "element " << i;
}

TEST(NormRope, RmsNormMatchesTwin) {
  const int dim = 256;
  auto x = random_bf16(dim * 9, 2, 2.0f), w = random_bf16(dim, 3, 0.3f);
  std::vector<bf16> y(x.size());
  kernels::rms_norm(y, x, w, dim, 1e-6f);
  for (int r = 0; r < 9; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double(bf16_to_f32(x[r * dim + i])) * bf16_to_f32(x[r * dim + i]);
    const float rs = 1.0f / std::sqrt(float(ss) / float(dim) + 1e-6f);
    for (int i = 0; i < dim; ++i) {
      const float v = bf16_to_f32(w[i]) * ref::opaque(bf16_to_f32(x[r * dim + i]) * rs);
      ASSERT_EQ(y[r * dim + i].bits, f32_to_bf16(v).bits) << "row " << r << " col " << i;
    }
  }
}

TEST(NormRope, QHeadRmsRoundsEveryStepToBf16) {
  const int hd = 128;
  auto q = random_bf16(hd * 16, 4, 0.7f);
  for (int i = 0; i < hd; ++i) q[15 * hd + i] = bf16{0};  // an all-zero head: only eps survives
  auto got = q;
  kernels::q_head_rms(got, hd, 1e-6f);
  for (int r = 0; r < 16; ++r) {
    float sum = 0;  // squares are bf16; their sum of 128 terms is exact in fp32 here only if tiny, so use double
    double dsum = 0;
    for (int i = 0; i < hd; ++i) dsum += round_bf16(bf16_to_f32(q[r * hd + i]) * bf16_to_f32(q[r * hd + i]));
    sum = float(dsum);
    const float m = round_bf16(sum / hd), a = round_bf16(m + 1e-6f);
    const float rs = round_bf16(float(1.0 / std::sqrt(double(a))));
    for (int i = 0; i < hd; ++i)
      ASSERT_EQ(got[r * hd + i].bits, f32_to_bf16(bf16_to_f32(q[r * hd + i]) * rs).bits) << r << "," << i;
  }
}

TEST(NormRope, YarnFrequenciesFollowTheRamp) {
  std::vector<float> plain(32), yarn(32);
  kernels::rope_inv_freqs(plain, 64, 160000.0, 0, 16, 32, 1);
  kernels::rope_inv_freqs(yarn, 64, 160000.0, 65536, 16, 32, 1);
  // spec §4.4: low 15, high 25: f_0..15 unchanged, f_25..31 divided by 16, between blended.
  for (int i = 0; i <= 15; ++i) EXPECT_EQ(yarn[i], plain[i]) << i;
  for (int i = 25; i < 32; ++i) EXPECT_EQ(yarn[i], plain[i] / 16.0f) << i;
  for (int i = 16; i <= 24; ++i) {
    EXPECT_LT(yarn[i], plain[i]) << i;
    EXPECT_GT(yarn[i], plain[i] / 16.0f) << i;
  }
  std::vector<float> b10k(32);
  kernels::rope_inv_freqs(b10k, 64, 10000.0, 0, 16, 32, 1);
  EXPECT_EQ(b10k[0], 1.0f);
  EXPECT_EQ(b10k[16], 0.01f);  // 10000^-0.5, correctly rounded
}

TEST(NormRope, RopeMatchesTwinAndInverseUndoesIt) {
  const int heads = 3, dim = 128, rd = 64, T = 5;
  auto x = random_bf16(size_t(T) * heads * dim, 5);
  std::vector<float> f(rd / 2), tab(size_t(T) * rd);
  kernels::rope_inv_freqs(f, rd, 10000.0, 0, 16, 32, 1);
  kernels::rope_table(tab, f, 1000, T);
  auto got = x;
  kernels::apply_rope(got, tab, T, heads, dim, rd, false);
  auto want = x;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h) ref::rope_row(want.data() + (t * heads + h) * dim, tab.data() + t * rd, dim, rd, false);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i].bits, want[i].bits) << i;
  for (int t = 0; t < T; ++t)  // nope dims untouched
    for (int h = 0; h < heads; ++h)
      for (int c = 0; c < dim - rd; ++c) ASSERT_EQ(got[(t * heads + h) * dim + c].bits, x[(t * heads + h) * dim + c].bits);
  kernels::apply_rope(got, tab, T, heads, dim, rd, true);
  for (size_t i = 0; i < x.size(); ++i)  // a rotation and its conjugate: back to x up to the two bf16 roundings
    ASSERT_NEAR(bf16_to_f32(got[i]), bf16_to_f32(x[i]), 0.02f * std::fabs(bf16_to_f32(x[i])) + 0.02f) << i;
}

}  // namespace
}  // namespace dsv4
