// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/moe.hpp"
#include "kernels/parallel.hpp"

#include <algorithm>
#include <cmath>

namespace dsv4::kernels {

void moe_gate(std::span<float> weights, std::span<int32_t> indices, std::span<float> scores,
              std::span<const float> logits, std::span<const float> bias, std::span<const int64_t> tid2eid,
              std::span<const int32_t> token_ids, int n_experts, int k, float route_scale) {
  const int64_t rows = int64_t(logits.size()) / n_experts;
  for (int64_t r = 0; r < rows; ++r) {
    float sc[1024];
    const float* lr = logits.data() + r * n_experts;
    for (int e = 0; e < n_experts; ++e) {
      const float x = lr[e];
      // F.softplus(beta=1, threshold=20): exp rounded to fp32, log1p of it rounded once (fits the golden best;
      // torch's vectorized Sleef exp/log1p still differ by 1 ulp on ~4% of the scores)
      const float sp = x > 20.0f ? x : float(std::log1p(double(std::exp(x))));
      sc[e] = std::sqrt(sp);
      if (!scores.empty()) scores[r * n_experts + e] = sc[e];
    }
    int32_t* ix = indices.data() + r * k;
    if (!tid2eid.empty()) {
      for (int i = 0; i < k; ++i) ix[i] = int32_t(tid2eid[int64_t(token_ids[r]) * k + i]);
    } else {
      float biased[1024];
      for (int e = 0; e < n_experts; ++e) biased[e] = bias.empty() ? sc[e] : sc[e] + bias[e];
      // Selection: descending biased score, ties to the lower expert id.
      for (int i = 0; i < k; ++i) {
        int best = -1;
        for (int e = 0; e < n_experts; ++e) {
          bool taken = false;
          for (int j = 0; j < i; ++j) taken |= ix[j] == e;
          if (!taken && (best < 0 || biased[e] > biased[best])) best = e;
        }
        ix[i] = best;
      }
    }
    float* w = weights.data() + r * k;
    float sum = 0.0f;
    for (int i = 0; i < k; ++i) {
      w[i] = sc[ix[i]];
      sum += w[i];
    }
    for (int i = 0; i < k; ++i) w[i] = w[i] / sum * route_scale;
  }
}

void swiglu(std::span<bf16> a, std::span<const bf16> g, std::span<const bf16> u, std::span<const float> route_w,
            int inter, float limit) {
  const int64_t rows = int64_t(g.size()) / inter;
  detail::parallel_for(rows, [&](int64_t r) {
    for (int i = 0; i < inter; ++i) {
      const int64_t o = r * inter + i;
      const float gg = std::min(bf16_to_f32(g[o]), limit);                   // gate clamped from above only
      const float uu = std::min(std::max(bf16_to_f32(u[o]), -limit), limit);  // up clamped to ±limit
      float x = gg / (1.0f + std::exp(-gg)) * uu;                             // F.silu(gate) * up
      if (!route_w.empty()) x = route_w[r] * x;                               // routed: weights * x before w2
      a[o] = f32_to_bf16(x);                                                  // w2(x.to(bf16))
    }
  }, rows > 4);
}

void moe_combine(std::span<bf16> y, std::span<const bf16> expert_out, std::span<const int32_t> indices,
                 std::span<const bf16> shared, int k, int dim) {
  const int64_t rows = int64_t(y.size()) / dim;
  detail::parallel_for(rows, [&](int64_t r) {
    int order[64];
    for (int i = 0; i < k; ++i) order[i] = i;
    const int32_t* ix = indices.data() + r * k;
    // Stable insertion sort by expert id (std::stable_sort would allocate a buffer).
    for (int i = 1; i < k; ++i)
      for (int j = i; j > 0 && ix[order[j - 1]] > ix[order[j]]; --j) std::swap(order[j - 1], order[j]);
    for (int c = 0; c < dim; ++c) {
      float acc = 0.0f;
      for (int i = 0; i < k; ++i) acc += bf16_to_f32(expert_out[(r * k + order[i]) * dim + c]);  // experts ascending
      acc += bf16_to_f32(shared[r * dim + c]);
      y[r * dim + c] = f32_to_bf16(acc);  // MoE: y.type_as(x)
    }
  }, rows > 4);
}

}  // namespace dsv4::kernels
