// Activation quantisation of the reference (kernel.py act_quant / fp4_act_quant, spec §4.2, §4.3).
// Scales are powers of two read off the IEEE bits (kernel.py fast_round_scale):
//   FP8: amax = max(max|x|, 1e-4), s = 2^ceil_log2(amax·fp32(1/448)), q = e4m3_RNE(clamp(x/s, ±448));
//   FP4: amax = max(max|x|, 6·2^-126), s = 2^ceil_log2(amax·fp32(1/6)), q = e2m1_RNE(clamp(x/s, ±6)).
// x/s is computed as the reference does, by an fp32 division (exact here: s is a power of two and
// x/s stays inside the normal range except for values that round to 0 anyway).
// NaN inputs give unspecified codes (the reference's clamp of NaN is backend-defined).
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

inline constexpr int64_t kActQuantBlock = 128;  // act_quant block of every FP8/FP4 GEMM input
inline constexpr int64_t kKvFp8Block = 64;      // in-place FP8 simulation block on kv nope dims
inline constexpr int64_t kFp4Block = 32;        // in-place FP4 simulation block (indexer q / kv)

// Scale of one block from its amax (max |x| over the block, in fp32), floors included.
float fp8_block_scale(float amax);  // fast_round_scale(max(amax, 1e-4), fp32(1/448))
float fp4_block_scale(float amax);  // fast_round_scale(max(amax, 6·2^-126), fp32(1/6))

// act_quant(x, 128, "ue8m0"), non-inplace: q e4m3 [rows, cols]; s fp32 [rows, cols/128] (powers of
// two, exactly the e8m0 scales); x bf16 [rows, cols]. cols % 128 == 0.
void act_quant_fp8(std::span<uint8_t> q, std::span<float> s, std::span<const bf16> x, int64_t rows,
                   int64_t cols);

// act_quant(v, block, "ue8m0", inplace=True): v <- bf16(fp32(e4m3(clamp(v/s, ±448))) · s) per block
// of `block` contiguous values. v bf16 [len], len % block == 0. The kv caller passes each row's first
// head_dim-64 values with block 64.
void fp8_round_trip_inplace(std::span<bf16> v, int64_t block = kKvFp8Block);

// fp4_act_quant(v, 32, inplace=True): v <- bf16(e2m1(clamp(v/s, ±6)) · s) per block of 32.
// v bf16 [len], len % 32 == 0.
void fp4_round_trip_inplace(std::span<bf16> v);

}  // namespace dsv4::kernels
