// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/indexer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/exact.hpp"
#include "kernels/norm_rope.hpp"
#include "kernels/quant.hpp"

namespace dsv4::kernels {

void indexer_q_post(std::span<bf16> q, std::span<const float> table, int64_t tokens, int heads, int rope_dim) {
  constexpr int hd = 128;
  apply_rope(q, table, tokens, heads, hd, rope_dim, false);  // Indexer: apply_rotary_emb(q[..., -rd:])
  hadamard128(q, q);                                         // Indexer: rotate_activation(q)
  fp4_round_trip_inplace(q);                                 // Indexer: fp4_act_quant(q, 32, inplace)
}

void indexer_weights(std::span<bf16> w, std::span<const bf16> wp, float scale) {
  for (size_t i = 0; i < wp.size(); ++i) w[i] = f32_to_bf16(bf16_to_f32(wp[i]) * scale);  // weights * scalar: bf16
}

void indexer_scores(std::span<bf16> scores, std::span<const bf16> q, std::span<const bf16> w,
                    std::span<const bf16> keys, std::span<const int64_t> pos, int heads, int hd, int ratio) {
  const int64_t tokens = int64_t(pos.size());
  const int64_t n_keys = int64_t(keys.size()) / hd;
  const bf16 ninf = f32_to_bf16(-std::numeric_limits<float>::infinity());
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t visible = (pos[t] + 1) / ratio;
    bf16* sr = scores.data() + t * n_keys;
    for (int64_t j = 0; j < n_keys; ++j) {
      if (j >= visible) {
        sr[j] = ninf;  // prefill causal mask: += −inf
        continue;
      }
      const bf16* kr = keys.data() + j * hd;
      float acc = 0.0f;
      for (int h = 0; h < heads; ++h) {
        const bf16* qr = q.data() + (t * heads + h) * hd;
        double dot = 0.0;
        for (int c = 0; c < hd; ++c) dot += double(bf16_to_f32(qr[c])) * double(bf16_to_f32(kr[c]));
        float s = bf16_to_f32(f64_to_bf16(dot));  // einsum bshd,btd->bsht: exact, rounded once to bf16
        s = s < 0.0f ? 0.0f : s;                  // relu_ (bf16, exact)
        acc += round_bf16(s * bf16_to_f32(w[t * heads + h]));  // relu(qk) * weights: bf16
      }
      sr[j] = f32_to_bf16(acc);  // .sum(dim=2): fp32 accumulation, one rounding to bf16
    }
  }
}

void indexer_topk(std::span<int32_t> idx, std::span<const bf16> scores, std::span<const int64_t> pos, int64_t n_keys,
                  int k, int ratio, int32_t offset) {
  const int64_t tokens = int64_t(pos.size());
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const bf16* sr = scores.data() + t * n_keys;
    int32_t* out = idx.data() + t * k;
    // a ranks before b: larger score, or equal score and lower index (stable descending sort).
    auto before = [&](int32_t a, int32_t b) {
      const float va = bf16_to_f32(sr[a]), vb = bf16_to_f32(sr[b]);
      return va > vb || (va == vb && a < b);
    };
    // Keep the best k in a heap whose top is the worst kept entry, then sort it.
    int n = 0;
    for (int32_t j = 0; j < int32_t(n_keys); ++j) {
      if (n < k) {
        out[n++] = j;
        std::push_heap(out, out + n, before);
      } else if (before(j, out[0])) {
        std::pop_heap(out, out + n, before);
        out[n - 1] = j;
        std::push_heap(out, out + n, before);
      }
    }
    std::sort(out, out + n, before);
    const int64_t visible = (pos[t] + 1) / ratio;
    for (int i = 0; i < k; ++i) out[i] = (i < n && out[i] < visible) ? out[i] + offset : -1;
  }
}

}  // namespace dsv4::kernels
