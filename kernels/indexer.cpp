// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/indexer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/exact.hpp"
#include "kernels/norm_rope.hpp"
#include "kernels/parallel.hpp"
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

namespace {
// Portable SIMD via GCC vector extensions (lowered to whatever the target ISA offers).
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
constexpr int kKeys = 32;   // keys per work item: one SIMD lane per key
constexpr int kMaxHd = 256;
}  // namespace

void indexer_scores(std::span<bf16> scores, std::span<const bf16> q, std::span<const bf16> w,
                    std::span<const bf16> keys, std::span<const int64_t> pos, int heads, int hd, int ratio) {
  const int64_t tokens = int64_t(pos.size());
  const int64_t n_keys = int64_t(keys.size()) / hd;
  const bf16 ninf = f32_to_bf16(-std::numeric_limits<float>::infinity());
  if (hd > kMaxHd) {  // generic path (no transposition buffer): the same arithmetic, one key at a time
    detail::parallel_for(tokens, [&](int64_t t) {
      const int64_t visible = (pos[t] + 1) / ratio;
      bf16* sr = scores.data() + t * n_keys;
      for (int64_t j = 0; j < n_keys; ++j) {
        if (j >= visible) {
          sr[j] = ninf;
          continue;
        }
        const bf16* kr = keys.data() + j * hd;
        float acc = 0.0f;
        for (int h = 0; h < heads; ++h) {
          const bf16* qr = q.data() + (t * heads + h) * hd;
          double dot = 0.0;
          for (int c = 0; c < hd; ++c) dot += double(bf16_to_f32(qr[c])) * double(bf16_to_f32(kr[c]));
          float s = bf16_to_f32(f64_to_bf16_via_f32(dot));
          s = s < 0.0f ? 0.0f : s;
          acc += round_bf16(s * bf16_to_f32(w[t * heads + h]));
        }
        sr[j] = f32_to_bf16(acc);
      }
    });
    return;
  }
  const int64_t chunks = (n_keys + kKeys - 1) / kKeys;
  // Work item = (token, chunk of keys). Each key's arithmetic is the scalar sequence: per head the q·k dot
  // product is accumulated in double in dimension order, and the head sum in fp32 in head order.
  detail::parallel_for(tokens * chunks, [&](int64_t it) {
    const int64_t t = it / chunks, j0 = (it % chunks) * kKeys;
    const int64_t visible = (pos[t] + 1) / ratio;
    bf16* sr = scores.data() + t * n_keys;
    const int nj = int(std::max<int64_t>(0, std::min<int64_t>({int64_t(kKeys), n_keys - j0, visible - j0})));
    for (int64_t j = j0 + nj; j < std::min(n_keys, j0 + kKeys); ++j) sr[j] = ninf;  // prefill causal mask: += −inf
    if (nj == 0) return;
    alignas(64) float kt[kMaxHd * kKeys];  // transposed keys: kt[c][j] (bf16 -> fp32 is exact); padding = 0
    for (int j = 0; j < kKeys; ++j) {
      if (j < nj) {
        const bf16* kr = keys.data() + (j0 + j) * hd;
        for (int c = 0; c < hd; ++c) kt[c * kKeys + j] = bf16_to_f32(kr[c]);
      } else {
        for (int c = 0; c < hd; ++c) kt[c * kKeys + j] = 0.0f;
      }
    }
    float acc[kKeys] = {};
    for (int h = 0; h < heads; ++h) {
      const bf16* qr = q.data() + (t * heads + h) * hd;
      v8d a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int c = 0; c < hd; ++c) {
        const double qd = double(bf16_to_f32(qr[c]));
        const v8d qb = {qd, qd, qd, qd, qd, qd, qd, qd};
        const float* r = kt + c * kKeys;
        v8f f;
        std::memcpy(&f, r + 0, 32), a0 += qb * __builtin_convertvector(f, v8d);
        std::memcpy(&f, r + 8, 32), a1 += qb * __builtin_convertvector(f, v8d);
        std::memcpy(&f, r + 16, 32), a2 += qb * __builtin_convertvector(f, v8d);
        std::memcpy(&f, r + 24, 32), a3 += qb * __builtin_convertvector(f, v8d);
      }
      alignas(64) double dot[kKeys];
      std::memcpy(dot + 0, &a0, 64), std::memcpy(dot + 8, &a1, 64);
      std::memcpy(dot + 16, &a2, 64), std::memcpy(dot + 24, &a3, 64);
      const float wh = bf16_to_f32(w[t * heads + h]);
      for (int j = 0; j < nj; ++j) {
        float s = bf16_to_f32(f64_to_bf16_via_f32(dot[j]));  // einsum bshd,btd->bsht: exact -> fp32 -> bf16
        s = s < 0.0f ? 0.0f : s;                     // relu_ (bf16, exact)
        acc[j] += round_bf16(s * wh);                // relu(qk) * weights: bf16
      }
    }
    for (int j = 0; j < nj; ++j) sr[j0 + j] = f32_to_bf16(acc[j]);  // .sum(dim=2): fp32 accumulation, one rounding
  });
}

void indexer_topk(std::span<int32_t> idx, std::span<const bf16> scores, std::span<const int64_t> pos, int64_t n_keys,
                  int k, int ratio, int32_t offset) {
  const int64_t tokens = int64_t(pos.size());
  detail::parallel_for(tokens, [&](int64_t t) {
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
  });
}

}  // namespace dsv4::kernels
