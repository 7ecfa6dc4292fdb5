// Number formats of the DeepSeek-V4 reference (spec §2, §4): bf16, FP8 e4m3, FP4 e2m1, e8m0 scales.
// Header-only and constexpr where possible: shared by kernels, tools and tests.
#pragma once
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace dsv4 {

// bf16 storage: the upper 16 bits of an IEEE fp32.
struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2);

inline float bf16_to_f32(bf16 v) { return std::bit_cast<float>(uint32_t(v.bits) << 16); }

// Round-to-nearest-even fp32 -> bf16 (torch's rounding; NaN stays NaN).
inline bf16 f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

// fp32 value after one bf16 rounding: the reference's "computed in fp32, rounded once to bf16".
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// e8m0 scale byte: 2^(b-127); 0xFF is NaN.
inline float e8m0_to_f32(uint8_t b) {
  if (b == 0xff) return std::numeric_limits<float>::quiet_NaN();
  if (b == 0) return std::bit_cast<float>(uint32_t(0x00400000));  // 2^-127 (subnormal)
  return std::bit_cast<float>(uint32_t(b) << 23);
}

// FP8 e4m3fn decode (bias 7, no infinities, S.1111.111 = NaN).
constexpr float e4m3_decode_scalar(uint8_t c) {
  const int sign = c >> 7, exp = (c >> 3) & 0xf, man = c & 7;
  float v;
  if (exp == 0xf && man == 7) return std::numeric_limits<float>::quiet_NaN();
  if (exp == 0) v = float(man) / 8.0f / 64.0f;  // subnormal: man/8 * 2^-6
  else {
    v = 1.0f + float(man) / 8.0f;
    for (int e = exp - 7; e > 0; --e) v *= 2.0f;
    for (int e = exp - 7; e < 0; ++e) v /= 2.0f;
  }
  return sign ? -v : v;
}

inline const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> a{};
    for (int i = 0; i < 256; ++i) a[i] = e4m3_decode_scalar(uint8_t(i));
    return a;
  }();
  return t;
}
inline float e4m3_to_f32(uint8_t c) { return e4m3_table()[c]; }

// FP4 e2m1 nibble -> value; bit 3 is the sign (spec §2 "FP4 packing").
constexpr std::array<float, 16> kE2m1Values = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                               -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
constexpr float e2m1_to_f32(uint8_t nibble) { return kE2m1Values[nibble & 0xf]; }

// FP8 e4m3 encode, round-to-nearest-even, after the reference's clamp to ±448 (spec §4.2).
inline uint8_t f32_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  float a = std::fabs(x);
  if (a > 448.0f) a = 448.0f;
  int code;
  if (a < 0.015625f) {  // below 2^-6: subnormal grid of 2^-9; q == 8 lands on the first normal code
    code = int(std::nearbyint(a * 512.0f));
  } else {
    int e;
    std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
    e -= 1;             // a in [2^e, 2^(e+1))
    const int q = int(std::nearbyint(std::ldexp(a, 3 - e)));  // 8..16, 16 carries into the exponent
    code = (e + 7) * 8 + q - 8;
  }
  return uint8_t(sign | code);
}

// FP4 e2m1 encode, round-to-nearest-even on {0,.5,1,1.5,2,3,4,6} after a clamp to ±6; ties go to the
// even code (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4).
inline uint8_t f32_to_e2m1(float x) {
  const uint8_t sign = std::signbit(x) ? 8 : 0;
  const float a = std::fabs(x);
  uint8_t c;
  if (a <= 0.25f) c = 0;
  else if (a < 0.75f) c = 1;
  else if (a <= 1.25f) c = 2;
  else if (a < 1.75f) c = 3;
  else if (a <= 2.5f) c = 4;
  else if (a < 3.5f) c = 5;
  else if (a <= 5.0f) c = 6;
  else c = 7;
  return uint8_t(sign | c);
}

// Power-of-two scale exponent ceil(log2(t)) read off the IEEE bits, as the reference's fast_round_scale
// does (spec §4.2): exp-127 + (mantissa != 0). t must be a positive normal fp32.
inline int ceil_log2_bits(float t) {
  const uint32_t u = std::bit_cast<uint32_t>(t);
  return int((u >> 23) & 0xff) - 127 + ((u & 0x7fffffu) != 0 ? 1 : 0);
}

}  // namespace dsv4
