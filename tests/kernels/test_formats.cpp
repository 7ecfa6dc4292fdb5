// Number formats (kernels/numerics.hpp): exhaustive over e4m3 and e2m1 codes.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/numerics.hpp"

namespace dsv4 {
namespace {

bool is_e4m3_nan(int c) { return (c & 0x7f) == 0x7f; }

// e4m3 value from the definition (bias 7, subnormals at 2^-6, S.1111.111 = NaN).
double e4m3_by_definition(int c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

TEST(Formats, E4m3DecodeAllCodes) {
  for (int c = 0; c < 256; ++c) {
    const float v = e4m3_to_f32(uint8_t(c));
    if (is_e4m3_nan(c)) {
      EXPECT_TRUE(std::isnan(v)) << c;
      continue;
    }
    EXPECT_EQ(double(v), e4m3_by_definition(c)) << "code " << c;
    EXPECT_EQ(std::signbit(v), c >= 128) << c;
  }
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.f);
  EXPECT_EQ(e4m3_to_f32(0x01), 0x1p-9f);
  EXPECT_EQ(e4m3_to_f32(0x08), 0x1p-6f);
}

TEST(Formats, E4m3EncodeRoundTripAllCodes) {
  for (int c = 0; c < 256; ++c) {
    if (is_e4m3_nan(c)) continue;
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(uint8_t(c))), c) << "code " << c;
  }
  EXPECT_EQ(f32_to_e4m3(std::nanf("")), 0x7f);
}

// Between each pair of neighbouring codes: the midpoint goes to the even code, anything off the
// midpoint to the nearer one. Covers the subnormal grid, the subnormal->normal edge and binade edges.
TEST(Formats, E4m3TiesAndNeighbours) {
  for (int c = 0; c < 0x7e; ++c) {
    for (int sign = 0; sign < 2; ++sign) {
      const int sb = sign ? 0x80 : 0;
      const float lo = e4m3_to_f32(uint8_t(c)), hi = e4m3_to_f32(uint8_t(c + 1));
      const float mid = (lo + hi) / 2;  // exact in fp32
      const float s = sign ? -1.f : 1.f;
      const int even = (c % 2 == 0) ? c : c + 1;
      EXPECT_EQ(f32_to_e4m3(s * mid), sb | even) << "midpoint after code " << c;
      EXPECT_EQ(f32_to_e4m3(s * std::nextafter(mid, 0.f)), sb | c) << c;
      EXPECT_EQ(f32_to_e4m3(s * std::nextafter(mid, 1e9f)), sb | (c + 1)) << c;
    }
  }
  EXPECT_EQ(f32_to_e4m3(0x1p-10f), 0x00);  // half the smallest subnormal: tie to even (0)
  EXPECT_EQ(f32_to_e4m3(0x1.8p-9f), 0x02);  // 1.5 subnormal steps: tie to even (2)
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
}

TEST(Formats, E4m3Clamps) {
  EXPECT_EQ(f32_to_e4m3(448.f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(464.f), 0x7e);  // would round to 512 (NaN slot) without the clamp
  EXPECT_EQ(f32_to_e4m3(1e30f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(f32_to_e4m3(INFINITY), 0x7e);
  EXPECT_EQ(f32_to_e4m3(1e-30f), 0x00);
}

TEST(Formats, E2m1AllCodes) {
  const float grid[8] = {0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  for (int c = 0; c < 16; ++c) {
    const float v = e2m1_to_f32(uint8_t(c));
    EXPECT_EQ(std::fabs(v), grid[c & 7]) << c;
    EXPECT_EQ(std::signbit(v), c >= 8) << c;
    EXPECT_EQ(f32_to_e2m1(v), c) << c;  // includes -0 -> code 8
  }
  // Every midpoint goes to the even code; off-midpoint values to the nearer one.
  for (int c = 0; c < 7; ++c) {
    const float mid = (grid[c] + grid[c + 1]) / 2;
    const int even = c % 2 == 0 ? c : c + 1;
    EXPECT_EQ(f32_to_e2m1(mid), even) << mid;
    EXPECT_EQ(f32_to_e2m1(-mid), 8 | even) << mid;
    EXPECT_EQ(f32_to_e2m1(std::nextafter(mid, 0.f)), c) << mid;
    EXPECT_EQ(f32_to_e2m1(std::nextafter(mid, 10.f)), c + 1) << mid;
  }
  EXPECT_EQ(f32_to_e2m1(6.5f), 7);
  EXPECT_EQ(f32_to_e2m1(1e30f), 7);
  EXPECT_EQ(f32_to_e2m1(-1e30f), 15);
}

TEST(Formats, E8m0) {
  for (int b = 1; b < 255; ++b) EXPECT_EQ(e8m0_to_f32(uint8_t(b)), std::ldexp(1.0f, b - 127)) << b;
  EXPECT_EQ(e8m0_to_f32(0), 0x1p-127f);
  EXPECT_TRUE(std::isnan(e8m0_to_f32(255)));
}

TEST(Formats, CeilLog2Bits) {
  for (int e = -126; e < 128; ++e) {
    const float p = std::ldexp(1.0f, e);
    EXPECT_EQ(ceil_log2_bits(p), e);
    if (e < 127) {
      EXPECT_EQ(ceil_log2_bits(std::nextafter(p, INFINITY)), e + 1);
    }
    if (e > -126) {
      EXPECT_EQ(ceil_log2_bits(std::nextafter(p, 0.f)), e);
    }
  }
}

TEST(Formats, Bf16RoundNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)).bits, 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)).bits, 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)).bits, 0x3f81);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7f7fffffu)).bits, 0x7f80);  // overflow to inf
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

}  // namespace
}  // namespace dsv4
