// Linear layers of the reference (spec §4.1): y = x·Wᵀ with W [out=n, in=k].
//
// Golden semantics (tests/golden/tiny/README.md "Numerics mode"):
//  * FP8 (kernel.py fp8_gemm): each 128-wide K block's dot product Σ qa·qb is computed EXACTLY and
//    rounded once to fp32, multiplied by sa[m,kb]·sb[n/128,kb] in fp32, accumulated across blocks in
//    fp32 in ascending block order, rounded to bf16. Exactness: an e4m3 value is an integer times
//    2^-9 below 2^17.8, so a product is an integer times 2^-18 below 2^35.6 and a 128-term sum below
//    2^42.6 of those units: every partial sum is exact in fp64 in any order.
//  * FP4 (kernel.py fp4_gemm): the same with 32-wide K sub-blocks, sa per 128, sb per (n, 32). An
//    e2m1 value is an integer times 2^-1 below 12, so a 32-term sub-block sum is an integer times
//    2^-10 below 2^26.4: computed exactly in int32 (AVX512-VNNI).
//  * BF16 (weights_proj; the wo_a einsum, on its FP8 weight's exact values): products exact in fp64,
//    summed in fp64 in the canonical order of linear_core.hpp, rounded once to bf16. fp64 summation is
//    not exact for arbitrary exponent spreads: the result is the correctly rounded bf16 unless the exact
//    sum lies within about k·2^-53·Σ|x·w| of a bf16 rounding midpoint (relative 2^-41 for k = 4096).
//  * FP32 (compressor wkv/wgate, gate, head): torch's CPU order, sequential over k (see linear_f32).
// The FP8 / FP4 / BF16 kernels take a GEMV path for few rows (weights streamed once per 4 rows; m <= 8 for
// FP8 / FP4, m <= 4 for BF16) and a tiled GEMM path otherwise. Their block sums are exact (FP8, FP4) or
// summed in one canonical order (BF16), and the fp32 steps after them run in the same order on every
// path, so a row's bits never depend on the batch.
// Kernels allocate nothing; they use OpenMP threads over output rows (tiles).
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

inline constexpr int64_t kLinearKBlock = 128;  // K block of act_quant and of FP8 weight scales
inline constexpr int64_t kFp4ScaleBlock = 32;  // K block of FP4 expert weight scales

// FP8 linear. y bf16 [m, n]; xq e4m3 [m, k] and xs fp32 [m, k/128] from act_quant_fp8;
// w e4m3 [n, k]; ws e8m0 [ceil(n/128), k/128]. k % 128 == 0.
void linear_fp8(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k);
// The two paths, exposed for tests and benchmarks (same contract; gemv requires m <= 8).
void linear_fp8_gemv(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                     std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k);
void linear_fp8_gemm(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                     std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k);

// FP4 expert linear. y bf16 [m, n]; xq e4m3 [m, k], xs fp32 [m, k/128] from act_quant_fp8;
// w packed e2m1 [n, k/2] (low nibble = even k); ws e8m0 [n, k/32]. k % 128 == 0.
// m <= 8 takes the GEMV (weights streamed once per 4 rows); larger m decodes weight tiles once and
// reuses them across rows. Both give identical bits (exact integer sub-block sums, the same fp32 steps).
void linear_fp4(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k);

// BF16 linear (indexer weights_proj). y bf16 [m, n]; x bf16 [m, k]; w bf16 [n, k]. k % 128 == 0.
void linear_bf16(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w,
                 int64_t m, int64_t n, int64_t k);
// Which engine a linear takes: by row count (kAuto), or forced, for tests and benchmarks (GEMV: m <= 4).
enum class LinearPath { kAuto, kGemv, kGemm };

// Grouped BF16 linear on FP8-stored weights (attention wo_a einsum "bsgd,grd->bsgr"): y bf16 [m, groups, n];
// x bf16 [m, groups, k]; w e4m3 [groups * n, k] (group g owns rows g*n .. g*n+n-1) with e8m0 block scales
// ws [ceil(groups * n / 128), k / 128]. The bits of linear_bf16 on the dequantised weight bf16(e4m3 x 2^(s-127))
// (convert.py's wo_a), given that dequantisation is exact; k % 128 == 0.
void linear_bf16_fp8w_grouped(std::span<bf16> y, std::span<const bf16> x, std::span<const uint8_t> w,
                             std::span<const uint8_t> ws, int64_t m, int64_t groups, int64_t n, int64_t k,
                             LinearPath path = LinearPath::kAuto);

// FP32 linear with bf16-stored weights (compressor wkv/wgate, gate, head), in the reference's order:
// torch's CPU fp32 F.linear sums each output sequentially over k (checked bit-exactly on the golden gate
// logits); with bf16-valued x every product is exact in fp32, so y[i][j] = ((x0*w0 + x1*w1) + ...) with an
// fp32 rounding after each addition. y fp32 [m, n]; x fp32 [m, k]; w bf16 [n, k]. Threads split n.
void linear_f32(std::span<float> y, std::span<const float> x, std::span<const bf16> w,
                int64_t m, int64_t n, int64_t k);

// Path-forcing twins of the dense linears, for tests and benchmarks (gemv requires m <= 4).
void linear_bf16_gemv(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w,
                      int64_t m, int64_t n, int64_t k);
void linear_bf16_gemm(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w,
                      int64_t m, int64_t n, int64_t k);

}  // namespace dsv4::kernels
