// FP32 linear in the reference's summation order. torch's CPU fp32 F.linear (gate, compressor wkv/wgate,
// head) sums each output sequentially over k (checked bit-exactly on the golden gate logits); with
// bf16-valued inputs every product is exact in fp32, so only the order matters.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// y fp32 [m, n] = x fp32 [m, k] @ w^T, w bf16 [n, k] widened exactly; y[i][j] = (((x0·w0) + x1·w1) + ...)
// in ascending k with fp32 rounding after each step. Threads split the outputs n (order unchanged).
void linear_f32_seq(std::span<float> y, std::span<const float> x, std::span<const bf16> w, int64_t m, int64_t n,
                    int64_t k);

}  // namespace dsv4::kernels
