// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace dsv4::kernels {

namespace {
constexpr int kBlock = 64;  // kernel.py sparse_attn_kernel: block = 64 indices
constexpr int kMaxD = 1024;
}  // namespace

void sparse_attn(std::span<bf16> o, std::span<const bf16> q, std::span<const bf16> kv, std::span<const float> sink,
                 std::span<const int32_t> idx, int heads, int d, int k, float scale) {
  const int64_t tokens = int64_t(q.size()) / (int64_t(heads) * d);
  const float ninf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const bf16* qv = q.data() + (t * heads + h) * d;
      const int32_t* ix = idx.data() + t * k;
      float qf[kMaxD], acc[kMaxD];
      double pv[kMaxD];
      for (int c = 0; c < d; ++c) {
        qf[c] = bf16_to_f32(qv[c]);
        acc[c] = 0.0f;
      }
      float m = ninf, sum = 0.0f;
      for (int b0 = 0; b0 < k; b0 += kBlock) {
        const int nb = std::min(kBlock, k - b0);
        float s[kBlock];
        float bmax = m;
        for (int j = 0; j < nb; ++j) {
          const int32_t id = ix[b0 + j];
          if (id < 0) {
            s[j] = ninf;
            continue;
          }
          const bf16* kr = kv.data() + int64_t(id) * d;
          double dot = 0.0;  // bf16·bf16 products are exact; the block GEMM result is rounded once to fp32
          for (int c = 0; c < d; ++c) dot += double(qf[c]) * double(bf16_to_f32(kr[c]));
          s[j] = float(dot) * scale;
          bmax = std::max(bmax, s[j]);
        }
        if (bmax == ninf) continue;  // block fully masked and nothing seen yet
        const float alpha = std::exp(m - bmax);  // rescale of the running sums (0 on the first block)
        m = bmax;
        double bsum = 0.0;  // block row sum of the fp32 probabilities (order-free: accumulated in double)
        for (int c = 0; c < d; ++c) pv[c] = 0.0;
        for (int j = 0; j < nb; ++j) {
          if (s[j] == ninf) continue;
          const float p = std::exp(s[j] - m);
          bsum += p;
          const double pb = double(round_bf16(p));  // P cast to bf16 before the P·V GEMM
          const bf16* kr = kv.data() + int64_t(ix[b0 + j]) * d;
          for (int c = 0; c < d; ++c) pv[c] += pb * double(bf16_to_f32(kr[c]));
        }
        sum = sum * alpha + float(bsum);
        for (int c = 0; c < d; ++c) acc[c] = acc[c] * alpha + float(pv[c]);
      }
      sum += std::exp(sink[h] - m);  // the sink enters the denominator only
      bf16* ov = o.data() + (t * heads + h) * d;
      for (int c = 0; c < d; ++c) ov[c] = f32_to_bf16(acc[c] / sum);  // o: bf16
    }
  }
}

}  // namespace dsv4::kernels
