// RMSNorm, the weightless per-head q RMS, rotary embedding tables and application, Hadamard-128.
// Spec §4.4, §5.3 steps 3-5 and 10. Pure compute: outputs first, no allocation.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// RMSNorm (model.py RMSNorm.forward): y = bf16(w · x · rsqrt(mean(x²) + eps)), fp32 internals.
// out: bf16 [rows, dim] (may alias x); x: bf16 [rows, dim]; weight: bf16 [dim] (checkpoint dtype, widened
// exactly to the reference's fp32 parameter).
void rms_norm(std::span<bf16> out, std::span<const bf16> x, std::span<const bf16> weight, int dim, float eps);

// Weightless per-head RMS on q done in bf16 tensor ops (spec §5.3 step 3), in place.
// q: bf16 [rows, head_dim] (rows = tokens · heads).
void q_head_rms(std::span<bf16> q, int head_dim, float eps);

// Rotary frequencies f_i, i < rope_dim/2, exactly as precompute_freqs_cis computes them in fp32
// (YaRN blend when original_seq_len > 0). freqs: fp32 [rope_dim/2].
void rope_inv_freqs(std::span<float> freqs, int rope_dim, double base, int64_t original_seq_len, double factor,
                    double beta_fast, double beta_slow);

// cos/sin table for positions pos0 .. pos0+n-1: θ = fp32(t) · f_i in fp32, then cos/sin of that fp32 value
// (torch.polar, complex64). table: fp32 [n, rope_dim/2, 2] (cos, sin); freqs: fp32 [rope_dim/2].
void rope_table(std::span<float> table, std::span<const float> freqs, int64_t pos0, int64_t n);

// Interleaved RoPE on the LAST rope_dim dims of each row, in place (apply_rotary_emb; inverse = conjugate).
// x: bf16 [tokens, rows_per_token, row_dim]; table: fp32 [tokens, rope_dim/2, 2], row t for token t.
void apply_rope(std::span<bf16> x, std::span<const float> table, int64_t tokens, int rows_per_token, int row_dim,
                int rope_dim, bool inverse);

// rotate_activation: y = bf16(H_128 · x · 128^-½) per row (Sylvester H, exact sum, one rounding).
// out: bf16 [rows, 128] (may alias x); x: bf16 [rows, 128].
void hadamard128(std::span<bf16> out, std::span<const bf16> x);

}  // namespace dsv4::kernels
