// Sparse multi-head attention with a sink over an index list (kernel.py sparse_attn, spec §5.3 step 9).
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// For each token t and head h: s_j = scale · q·kv[idx_j] over valid idx_j (−1 = masked), online softmax in
// blocks of 64 indices, P rounded to bf16 before P·V, the sink only in the denominator, fp32 divide.
// K = V = the latent row. o: bf16 [tokens, heads, d]; q: bf16 [tokens, heads, d]; kv: bf16 [n_kv, d];
// sink: fp32 [heads]; idx: int32 [tokens, k] (entries in [0, n_kv) or −1).
void sparse_attn(std::span<bf16> o, std::span<const bf16> q, std::span<const bf16> kv, std::span<const float> sink,
                 std::span<const int32_t> idx, int heads, int d, int k, float scale);

}  // namespace dsv4::kernels
