// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/norm_rope.hpp"

#include "kernels/exact.hpp"
#include "kernels/parallel.hpp"

#include <cmath>

namespace dsv4::kernels {
namespace {
// An fp32 value the compiler must materialise (no fusion of the product into a later add).
inline float rounded(float v) {
  asm("" : "+x"(v));
  return v;
}
}  // namespace

void rms_norm(std::span<bf16> out, std::span<const bf16> x, std::span<const bf16> weight, int dim, float eps) {
  const int64_t rows = int64_t(x.size()) / dim;
  detail::parallel_for(rows, [&](int64_t r) {
    const bf16* xr = x.data() + r * dim;
    bf16* yr = out.data() + r * dim;
    double ss = 0.0;  // x² are exact in fp32 (bf16 inputs); their sum is accumulated in double, rounded once
    for (int i = 0; i < dim; ++i) {
      const float v = bf16_to_f32(xr[i]);
      ss += double(v * v);
    }
    const float var = float(ss) / float(dim);
    const float rs = 1.0f / std::sqrt(var + eps);  // torch's fp32 rsqrt: 1/sqrt, two roundings
    for (int i = 0; i < dim; ++i) {
      const float xn = bf16_to_f32(xr[i]) * rs;
      yr[i] = f32_to_bf16(bf16_to_f32(weight[i]) * xn);  // RMSNorm: (weight * x).to(bf16)
    }
  }, rows > 16);
}

void q_head_rms(std::span<bf16> q, int head_dim, float eps) {
  const int64_t rows = int64_t(q.size()) / head_dim;
  detail::parallel_for(rows, [&](int64_t r) {
    bf16* qr = q.data() + r * head_dim;
    double sum = 0.0;
    for (int i = 0; i < head_dim; ++i) {
      const float v = bf16_to_f32(qr[i]);
      sum += double(round_bf16(v * v));  // q.square(): bf16
    }
    const float m = round_bf16(float(sum) / float(head_dim));         // .mean(-1): fp32 mean, one rounding
    const float a = round_bf16(m + eps);                               // + eps: bf16
    const float rs = round_bf16(float(1.0 / std::sqrt(double(a))));  // rsqrt: correctly rounded to bf16
    for (int i = 0; i < head_dim; ++i) qr[i] = f32_to_bf16(bf16_to_f32(qr[i]) * rs);  // q *= r: bf16
  }, rows > 64);
}

void rope_inv_freqs(std::span<float> freqs, int rope_dim, double base, int64_t original_seq_len, double factor,
                    double beta_fast, double beta_slow) {
  const int half = rope_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float e = float(2 * i) / float(rope_dim);  // arange(0, dim, 2) / dim in fp32 (exact here)
    // base ** e in fp32 (rounded once), then 1.0 / that in fp32
    const float p = float(std::pow(double(float(base)), double(e)));
    freqs[i] = 1.0f / p;
  }
  if (original_seq_len > 0) {
    const double pi = 3.14159265358979323846;
    auto corr = [&](double rot) {
      return rope_dim * std::log(double(original_seq_len) / (rot * 2 * pi)) / (2 * std::log(base));
    };
    double lo = std::floor(corr(beta_fast)), hi = std::ceil(corr(beta_slow));
    lo = std::max(lo, 0.0);
    hi = std::min(hi, double(rope_dim - 1));
    if (lo == hi) hi += 0.001;
    const float flo = float(lo), span = float(hi - lo);
    const float ffactor = float(factor);
    for (int i = 0; i < half; ++i) {
      float ramp = (float(i) - flo) / span;
      ramp = std::min(std::max(ramp, 0.0f), 1.0f);
      const float smooth = 1.0f - ramp;
      const float f = freqs[i];
      freqs[i] = f / ffactor * (1.0f - smooth) + f * smooth;  // YaRN blend, fp32 op by op
    }
  }
}

void rope_table(std::span<float> table, std::span<const float> freqs, int64_t pos0, int64_t n) {
  const int64_t half = int64_t(freqs.size());
  for (int64_t t = 0; t < n; ++t) {
    const float tf = float(pos0 + t);  // torch.outer(arange, freqs): t promoted to fp32
    for (int64_t i = 0; i < half; ++i) {
      const float th = tf * freqs[i];
      table[(t * half + i) * 2 + 0] = std::cos(th);  // torch.polar: cosf/sinf of the fp32 angle
      table[(t * half + i) * 2 + 1] = std::sin(th);
    }
  }
}

void apply_rope(std::span<bf16> x, std::span<const float> table, int64_t tokens, int rows_per_token, int row_dim,
                int rope_dim, bool inverse) {
  const int half = rope_dim / 2;
  const float sgn = inverse ? -1.0f : 1.0f;
  detail::parallel_for(tokens * rows_per_token, [&](int64_t tr) {
    const int64_t t = tr / rows_per_token;
    bf16* v = x.data() + tr * row_dim + (row_dim - rope_dim);
    const float* cs = table.data() + t * half * 2;
    for (int i = 0; i < half; ++i) {
      const float a = bf16_to_f32(v[2 * i]), b = bf16_to_f32(v[2 * i + 1]);
      const float c = cs[2 * i], d = sgn * cs[2 * i + 1];
      // complex64 product, each term rounded to fp32 on its own (the barrier keeps GCC's complex-multiply
      // pattern from fusing them into fmaddsub, which it does even with -ffp-contract=off)
      const float ac = rounded(a * c), bd = rounded(b * d), ad = rounded(a * d), bc = rounded(b * c);
      v[2 * i] = f32_to_bf16(ac - bd);      // apply_rotary_emb: y.copy_(x) back to bf16
      v[2 * i + 1] = f32_to_bf16(ad + bc);  // apply_rotary_emb: y.copy_(x) back to bf16
    }
  }, tokens * rows_per_token > 256);
}

void hadamard128(std::span<bf16> out, std::span<const bf16> x) {
  constexpr int n = 128;
  const int64_t rows = int64_t(x.size()) / n;
  const double scale = 1.0 / std::sqrt(double(n));
  detail::parallel_for(rows, [&](int64_t r) {
    double v[n];  // in-place Walsh-Hadamard butterflies in double: exact for bf16 inputs
    for (int i = 0; i < n; ++i) v[i] = double(bf16_to_f32(x[r * n + i]));
    for (int h = 1; h < n; h *= 2)
      for (int i = 0; i < n; i += 2 * h)
        for (int j = i; j < i + h; ++j) {
          const double a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
    // rotate_activation: exact H·x, then one rounding of the scaled value to bf16
    for (int i = 0; i < n; ++i) out[r * n + i] = f64_to_bf16(v[i] * scale);
  }, rows > 64);
}

}  // namespace dsv4::kernels
