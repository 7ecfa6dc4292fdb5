// Scalar twins of the in-place FP8 (block 64, ue8m0) and FP4 (block 32) round trips (spec §4.3), for tests
// of ops whose output includes them. The engine's kernels are kernels/quant.*; these are test-only.
#pragma once
#include <algorithm>
#include <cmath>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::ref {

// act_quant(v, block, "ue8m0", inplace=True) on one row: v <- bf16(e4m3(clamp(v/s, ±448)) · s).
inline void fp8_round_trip(std::span<bf16> v, int block) {
  for (size_t b0 = 0; b0 < v.size(); b0 += size_t(block)) {
    float amax = 1e-4f;
    for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(v[b0 + i])));
    const float s = std::ldexp(1.0f, ceil_log2_bits(amax * (1.0f / 448.0f)));
    for (int i = 0; i < block; ++i) {
      const float x = std::clamp(bf16_to_f32(v[b0 + i]) / s, -448.0f, 448.0f);
      v[b0 + i] = f32_to_bf16(e4m3_to_f32(f32_to_e4m3(x)) * s);
    }
  }
}

// fp4_act_quant(v, block, inplace=True) on one row: v <- bf16(e2m1(clamp(v/s, ±6)) · s).
inline void fp4_round_trip(std::span<bf16> v, int block) {
  for (size_t b0 = 0; b0 < v.size(); b0 += size_t(block)) {
    float amax = 6.0f * std::ldexp(1.0f, -126);
    for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(v[b0 + i])));
    const float s = std::ldexp(1.0f, ceil_log2_bits(amax * (1.0f / 6.0f)));
    for (int i = 0; i < block; ++i) {
      const float x = std::clamp(bf16_to_f32(v[b0 + i]) / s, -6.0f, 6.0f);
      v[b0 + i] = f32_to_bf16(e2m1_to_f32(f32_to_e2m1(x)) * s);
    }
  }
}

}  // namespace dsv4::ref
