// Indexer scoring and top-k selection over compressed index keys (spec §5.6, model.py Indexer.forward).
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// Indexer q post-processing (steps 2-4), in place: RoPE on the last rope_dim dims, Hadamard-128, then the
// FP4 round trip (block 32). q: bf16 [tokens, heads, 128]; table: fp32 [tokens, rope_dim/2, 2].
void indexer_q_post(std::span<bf16> q, std::span<const float> table, int64_t tokens, int heads, int rope_dim);

// w = bf16(fp32(weights_proj_out) · scale), scale = fp32(index_head_dim^-½ · index_n_heads^-½).
// w: bf16 [tokens, heads]; wp: bf16 [tokens, heads] (weights_proj output).
void indexer_weights(std::span<bf16> w, std::span<const bf16> wp, float scale);

// score[t][j] = bf16(Σ_h bf16(relu(bf16(q_h·K_j)) · w_h)) for j < visible(t) = (pos_t+1)/ratio, else −inf.
// scores: bf16 [tokens, n_keys]; q: bf16 [tokens, heads, hd]; w: bf16 [tokens, heads]; keys: bf16 [n_keys, hd];
// pos: int64 [tokens] absolute positions.
void indexer_scores(std::span<bf16> scores, std::span<const bf16> q, std::span<const bf16> w,
                    std::span<const bf16> keys, std::span<const int64_t> pos, int heads, int hd, int ratio);

// Top-k of each score row (descending, ties to the LOWER index, masked −inf last), then idx + offset, or −1
// where idx ≥ visible(t). idx: int32 [tokens, k]; scores: bf16 [tokens, n_keys]; k ≤ n_keys.
void indexer_topk(std::span<int32_t> idx, std::span<const bf16> scores, std::span<const int64_t> pos, int64_t n_keys,
                  int k, int ratio, int32_t offset);

}  // namespace dsv4::kernels
