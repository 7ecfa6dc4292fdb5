// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/compressor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/norm_rope.hpp"
#include "kernels/quant.hpp"

namespace dsv4::kernels {

void compressor_reset(std::span<float> kv_state, std::span<float> score_state) {
  std::fill(kv_state.begin(), kv_state.end(), 0.0f);
  std::fill(score_state.begin(), score_state.end(), -std::numeric_limits<float>::infinity());
}

namespace {

// Softmax pooling over the slots of the state, per channel c < d. Overlap: slots 0..r−1 take channels [:d]
// of rows 0..r−1 (previous block), slots r..2r−1 channels [d:] of rows r..2r−1 (this block).
void pool(float* out, const float* kv_state, const float* score_state, const CompressorDims& dm) {
  const int r = dm.ratio, d = dm.head_dim, w = dm.proj_dim(), slots = dm.state_rows();
  const bool overlap = dm.coff() == 2;
  for (int c = 0; c < d; ++c) {
    auto at = [&](int s) { return int64_t(s) * w + (overlap && s >= r ? d + c : c); };
    float mx = score_state[at(0)];
    for (int s = 1; s < slots; ++s) mx = std::max(mx, score_state[at(s)]);
    float e[256];
    float sum = 0.0f;
    for (int s = 0; s < slots; ++s) {
      e[s] = std::exp(score_state[at(s)] - mx);  // score.softmax(dim=slots), fp32
      sum += e[s];
    }
    float acc = 0.0f;
    for (int s = 0; s < slots; ++s) acc += kv_state[at(s)] * (e[s] / sum);  // (kv * softmax).sum(dim=slots)
    out[c] = acc;
  }
}

}  // namespace

int64_t compressor_step(std::span<bf16> entries, std::span<int64_t> entry_ids, std::span<float> kv_state,
                        std::span<float> score_state, std::span<const float> kv, std::span<const float> score,
                        std::span<const int64_t> pos, std::span<const float> ape, std::span<const bf16> norm_w,
                        std::span<const float> freqs, const CompressorDims& dm) {
  const int r = dm.ratio, d = dm.head_dim, w = dm.proj_dim();
  const bool overlap = dm.coff() == 2;
  int64_t n_out = 0;
  for (size_t t = 0; t < pos.size(); ++t) {
    const int64_t p = pos[t];
    const int slot = int(p % r);
    const int row = overlap ? r + slot : slot;
    float* ks = kv_state.data() + int64_t(row) * w;
    float* ss = score_state.data() + int64_t(row) * w;
    const float* ap = ape.data() + int64_t(slot) * w;
    for (int c = 0; c < w; ++c) {
      ks[c] = kv[t * w + c];
      ss[c] = score[t * w + c] + ap[c];  // score + ape[p % ratio]
    }
    if ((p + 1) % r != 0) continue;
    float pooled[1024];
    pool(pooled, kv_state.data(), score_state.data(), dm);
    if (overlap) {  // this block's rows become the next entry's overlap rows
      std::memcpy(kv_state.data(), kv_state.data() + int64_t(r) * w, sizeof(float) * size_t(r) * w);
      std::memcpy(score_state.data(), score_state.data() + int64_t(r) * w, sizeof(float) * size_t(r) * w);
    }
    bf16* e = entries.data() + n_out * d;
    for (int c = 0; c < d; ++c) e[c] = f32_to_bf16(pooled[c]);  // kv.to(bf16) before the norm
    std::span<bf16> es(e, size_t(d));
    rms_norm(es, es, norm_w, d, dm.norm_eps);  // compressor.norm: bf16 out
    float table[512];
    rope_table(std::span<float>(table, freqs.size() * 2), freqs, p + 1 - r, 1);  // RoPE at the block's first position
    apply_rope(es, std::span<const float>(table, freqs.size() * 2), 1, 1, d, dm.rope_dim, false);
    if (dm.rotate) {
      hadamard128(es, es);          // indexer compressor: rotate_activation
      fp4_round_trip_inplace(es);   // fp4_act_quant(kv, 32, inplace)
    } else {
      fp8_round_trip_inplace(es.first(size_t(d - dm.rope_dim)), 64);  // act_quant(kv[..., :-rd], 64, inplace)
    }
    entry_ids[n_out] = p / r;
    ++n_out;
  }
  return n_out;
}

}  // namespace dsv4::kernels
