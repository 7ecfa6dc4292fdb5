// Scalar twins of the norm/rope, hc, attention, indexer, compressor and MoE kernels: plain loops written
// straight from the reference's formulas (model.py / kernel.py), one token and one element at a time.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/exact.hpp"
#include "kernels/numerics.hpp"

namespace dsv4::ref {

inline float opaque(float v) {  // an fp32 value rounded on its own (no fusion into a later add)
  asm("" : "+x"(v));
  return v;
}

// Sylvester Hadamard entry H[i][j] = (−1)^popcount(i & j).
inline int hadamard_sign(int i, int j) { return (__builtin_popcount(unsigned(i & j)) & 1) ? -1 : 1; }

// rotate_activation as a dense exact matmul, one rounding to bf16.
inline std::vector<bf16> hadamard(const std::vector<bf16>& x, int n) {
  std::vector<bf16> y(x.size());
  for (size_t r = 0; r < x.size() / n; ++r)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int i = 0; i < n; ++i) s += hadamard_sign(i, j) * double(bf16_to_f32(x[r * n + i]));
      y[r * n + j] = kernels::f64_to_bf16(s / std::sqrt(double(n)));
    }
  return y;
}

// Interleaved RoPE on the last rd dims of one row at angle table cs [rd/2][2].
inline void rope_row(bf16* v, const float* cs, int row_dim, int rd, bool inverse) {
  for (int i = 0; i < rd / 2; ++i) {
    bf16* p = v + row_dim - rd + 2 * i;
    const float a = bf16_to_f32(p[0]), b = bf16_to_f32(p[1]);
    const float c = cs[2 * i], d = inverse ? -cs[2 * i + 1] : cs[2 * i + 1];
    p[0] = f32_to_bf16(opaque(a * c) - opaque(b * d));
    p[1] = f32_to_bf16(opaque(a * d) + opaque(b * c));
  }
}

// sparse_attn for one (token, head) as a two-pass softmax when all indices fit one block of 64 (then the
// online form reduces to exactly this).
inline void attn_one_block(bf16* o, const bf16* q, const bf16* kv, const int32_t* idx, int k, int d, float scale,
                           float sink) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> s(k, ninf);
  float m = ninf;
  for (int j = 0; j < k; ++j) {
    if (idx[j] < 0) continue;
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += double(bf16_to_f32(q[c])) * double(bf16_to_f32(kv[int64_t(idx[j]) * d + c]));
    s[j] = float(dot) * scale;
    m = std::max(m, s[j]);
  }
  double sum = 0;
  std::vector<float> p(k, 0.0f);
  for (int j = 0; j < k; ++j)
    if (idx[j] >= 0) {
      p[j] = std::exp(s[j] - m);
      sum += p[j];
    }
  const float den = float(sum) + std::exp(sink - m);
  for (int c = 0; c < d; ++c) {
    double acc = 0;
    for (int j = 0; j < k; ++j)
      if (idx[j] >= 0) acc += double(round_bf16(p[j])) * double(bf16_to_f32(kv[int64_t(idx[j]) * d + c]));
    o[c] = f32_to_bf16(float(acc) / den);
  }
}

// hc_split_sinkhorn comb part (kernel.py): softmax rows + eps, column normalise, then (iters−1) × (rows, cols).
inline void sinkhorn(float (&c)[4][4], int iters, float eps) {
  for (auto& row : c) {
    const float mx = std::max(std::max(row[0], row[1]), std::max(row[2], row[3]));
    float s = 0;
    for (float& v : row) s += (v = std::exp(v - mx));
    for (float& v : row) v = v / s + eps;
  }
  for (int it = 0; it < iters; ++it) {
    if (it > 0)
      for (auto& row : c) {
        const float den = row[0] + row[1] + row[2] + row[3] + eps;
        for (float& v : row) v /= den;
      }
    for (int k = 0; k < 4; ++k) {
      const float den = c[0][k] + c[1][k] + c[2][k] + c[3][k] + eps;
      for (int j = 0; j < 4; ++j) c[j][k] /= den;
    }
  }
}

// Top-k by a stable descending sort (torch.topk with ties to the lower index).
inline std::vector<int32_t> topk_stable(const std::vector<float>& v, int k) {
  std::vector<int32_t> ix(v.size());
  std::iota(ix.begin(), ix.end(), 0);
  std::stable_sort(ix.begin(), ix.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  ix.resize(size_t(k));
  return ix;
}

}  // namespace dsv4::ref
