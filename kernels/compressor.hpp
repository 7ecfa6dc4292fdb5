// One parameterized KV compressor (spec §5.5, model.py Compressor.forward) serving the main compressor of
// ratio-4 (overlapping, CSA) and ratio-128 (HCA) layers and the indexer's compressor (rotate = true).
// Incremental: any chunk of tokens with absolute positions, plus the carried fp32 state; prefill at once
// and token-by-token give identical entries.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

struct CompressorDims {
  int ratio;       // compress_ratio: 4 = overlapping windows (coff 2), otherwise plain blocks (coff 1)
  int head_dim;    // d: 512 main compressor, 128 indexer compressor
  int rope_dim;    // rope dims at the end of each entry (64)
  bool rotate;     // indexer compressor: Hadamard + FP4 instead of FP8 on the nope dims
  float norm_eps;  // compressor.norm eps (1e-6)
  int coff() const { return ratio == 4 ? 2 : 1; }
  int state_rows() const { return coff() * ratio; }   // rows of kv_state / score_state
  int proj_dim() const { return coff() * head_dim; }  // width of the wkv / wgate projections
};

// Initial state of a fresh compressor: kv_state = 0, score_state = −inf.
// kv_state, score_state: fp32 [state_rows, proj_dim].
void compressor_reset(std::span<float> kv_state, std::span<float> score_state);

// Feeds tokens (ascending, consecutive positions) and writes every entry completed by them: softmax pooling
// over the slots per channel, bf16, RMSNorm, RoPE at the block's first position, then either the FP8 round
// trip on dims [:d−rope] (block 64, main) or Hadamard-128 + the FP4 round trip (block 32, rotate).
// Returns the number of entries written (at most tokens/ratio + 1).
// entries: bf16 [max_entries, d]; entry_ids: int64 [max_entries] (entry index = first position / ratio);
// kv_state, score_state: fp32 [state_rows, proj_dim] (in/out); kv, score: fp32 [tokens, proj_dim] (the wkv and
// wgate projections of fp32(x)); pos: int64 [tokens]; ape: fp32 [ratio, proj_dim]; norm_w: bf16 [d];
// freqs: fp32 [rope_dim/2] (the layer's rope_inv_freqs).
int64_t compressor_step(std::span<bf16> entries, std::span<int64_t> entry_ids, std::span<float> kv_state,
                        std::span<float> score_state, std::span<const float> kv, std::span<const float> score,
                        std::span<const int64_t> pos, std::span<const float> ape, std::span<const bf16> norm_w,
                        std::span<const float> freqs, const CompressorDims& dims);

}  // namespace dsv4::kernels
