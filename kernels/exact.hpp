// Helpers for "computed exactly, rounded once" results (the golden's exact GEMM shims, spec §4.1 notes).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// double -> fp32 with round-to-odd: the truncated value with its last bit set when inexact. A later RNE
// rounding to a format at least 2 bits narrower (bf16) then equals one direct rounding of the double.
inline float f64_to_f32_odd(double d) {
  float f = float(d);
  if (double(f) == d || std::isnan(d)) return f;
  if (std::fabs(double(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);  // truncate toward zero
  return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | 1u);
}

// One RNE rounding of an exact double value to bf16.
inline bf16 f64_to_bf16(double d) { return f32_to_bf16(f64_to_f32_odd(d)); }

// The reference's bf16 GEMMs (wo_a einsum, weights_proj, indexer q·k): the exact sum is rounded to fp32 (the
// GEMM's output precision), then cast to bf16 - two RNE roundings, as the golden wo_a einsum shows where
// they differ from one direct rounding.
inline bf16 f64_to_bf16_via_f32(double d) { return f32_to_bf16(float(d)); }

}  // namespace dsv4::kernels
