// kernels/quant.*: against the scalar twins in reference/linear_ref.hpp, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/quant.hpp"
#include "reference/linear_ref.hpp"

namespace dsv4::kernels {
namespace {

// Rows that stress the quantiser: random normal blocks at many magnitudes, blocks under the amax
// floor, zero blocks, bf16 subnormals, huge values, exact grid midpoints and -0.
std::vector<bf16> tricky_values(int64_t n, uint32_t seed, int block) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> pick(0, 9), expo(-40, 40);
  std::vector<bf16> v(n);
  for (int64_t b = 0; b < n; b += block) {
    const int kind = pick(rng);
    const float mag = std::ldexp(1.0f, expo(rng));
    for (int64_t i = b; i < b + block; ++i) {
      float x = nd(rng) * mag;
      if (kind == 0) x = 0.f;
      if (kind == 1) x = nd(rng) * 1e-6f;                                      // below the 1e-4 floor
      if (kind == 2) x = std::bit_cast<float>(uint32_t(rng() & 0x807f0000u));  // bf16 subnormals
      if (kind == 3) x = nd(rng) * 1e30f;
      if (kind == 4 && i > b) x = std::ldexp(float(2 * (rng() % 64) + 1), -5);  // odd multiples:
                                                                                 // e4m3 / e2m1 midpoints
      if (kind == 4 && i == b) x = 448.f / 8;
      if (kind == 5 && (i & 7) == 0) x = -0.0f;
      v[i] = f32_to_bf16(x);
    }
  }
  return v;
}

TEST(Quant, BlockScales) {
  EXPECT_EQ(fp8_block_scale(448.f), 1.f);
  EXPECT_EQ(fp8_block_scale(0.f), 0x1p-22f);  // 1e-4 floor: 1e-4/448 = 2.2e-7 -> 2^-22
  EXPECT_EQ(fp4_block_scale(0.f), 0x1p-126f);  // 6·2^-126·fp32(1/6) rounds to 2^-126 exactly
  EXPECT_EQ(fp4_block_scale(6.f), 1.f);
  std::mt19937 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const float a = std::ldexp(float(rng() % (1u << 24)) + 1.f, int(rng() % 120) - 100);
    ASSERT_EQ(fp8_block_scale(a), ref::fp8_scale(a)) << a;
    ASSERT_EQ(fp4_block_scale(a), ref::fp4_scale(a)) << a;
  }
}

TEST(Quant, ActQuantFp8MatchesScalar) {
  const int64_t rows = 37, cols = 1024;
  const auto x = tricky_values(rows * cols, 1, 128);
  std::vector<uint8_t> q(rows * cols), rq;
  std::vector<float> s(rows * cols / 128), rs;
  act_quant_fp8(q, s, x, rows, cols);
  ref::act_quant_fp8(rq, rs, x, rows, cols);
  for (size_t i = 0; i < rs.size(); ++i) ASSERT_EQ(s[i], rs[i]) << "block " << i;
  int64_t diff = 0;
  for (size_t i = 0; i < rq.size(); ++i) diff += q[i] != rq[i];
  EXPECT_EQ(diff, 0);
  for (size_t i = 0; i < rq.size() && diff; ++i)
    if (q[i] != rq[i]) {
      ADD_FAILURE() << "first diff at " << i << " x=" << bf16_to_f32(x[i]) << " got " << int(q[i]) << " want "
                    << int(rq[i]);
      break;
    }
  // Every code decodes to a value within the e4m3 range and never to NaN.
  for (uint8_t c : q) ASSERT_NE(c & 0x7f, 0x7f);
}

TEST(Quant, Fp8RoundTripMatchesScalar) {
  for (int64_t block : {64, 128}) {
    auto v = tricky_values(64 * 448, 2, int(block));
    auto r = v;
    fp8_round_trip_inplace(v, block);
    ref::fp8_round_trip(r, block);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i].bits, r[i].bits) << "block " << block << " at " << i;
  }
}

TEST(Quant, Fp4RoundTripMatchesScalar) {
  auto v = tricky_values(32 * 2000, 3, 32);
  auto r = v;
  fp4_round_trip_inplace(v);
  ref::fp4_round_trip(r);
  for (size_t i = 0; i < v.size(); ++i)
    ASSERT_EQ(v[i].bits, r[i].bits) << "at " << i << " x=" << bf16_to_f32(r[i]);
}

// Hand-computed: block amax 6 -> s = 1; 2.5 -> 2 (tie to even), 3.5 -> 4, 5 -> 4, 0.25 -> 0.
TEST(Quant, Fp4RoundTripHandCase) {
  std::vector<bf16> v(32, f32_to_bf16(0.f));
  const float in[8] = {6.f, 2.5f, 3.5f, 5.f, 0.25f, -0.75f, 1.25f, -1.75f};
  const float out[8] = {6.f, 2.f, 4.f, 4.f, 0.f, -1.f, 1.f, -2.f};
  for (int i = 0; i < 8; ++i) v[i] = f32_to_bf16(in[i]);
  fp4_round_trip_inplace(v);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(bf16_to_f32(v[i]), out[i]) << in[i];
}

// Hand-computed: amax 448 -> s = 1; 17 lies between 16 and 18 (spacing 2) -> tie, even code 16;
// 19 -> 20 (tie, 20 has the even mantissa).
TEST(Quant, Fp8RoundTripHandCase) {
  std::vector<bf16> v(64, f32_to_bf16(0.f));
  v[0] = f32_to_bf16(448.f);
  v[1] = f32_to_bf16(17.f);
  v[2] = f32_to_bf16(-19.f);
  fp8_round_trip_inplace(v, 64);
  EXPECT_EQ(bf16_to_f32(v[0]), 448.f);
  EXPECT_EQ(bf16_to_f32(v[1]), 16.f);
  EXPECT_EQ(bf16_to_f32(v[2]), -20.f);
}

}  // namespace
}  // namespace dsv4::kernels
