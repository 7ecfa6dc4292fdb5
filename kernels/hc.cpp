// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/hc.hpp"
#include "kernels/parallel.hpp"
#include "kernels/simd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace dsv4::kernels {
namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// mixes[m] = (X · fn[m]) · rsqrt(mean(X²) + eps) for the flattened streams X (fp32 [hc·D]).
// Dot products are accumulated in double and rounded once (the reference uses an fp32 GEMM).
template <int G>
void mix_group(float* mixes, const bf16* h, const float* w, int64_t n, float rs) {
  double a[G] = {};
  for (int64_t i = 0; i < n; ++i) {
    const double x = double(bf16_to_f32(h[i]));
    for (int k = 0; k < G; ++k) a[k] += x * double(w[int64_t(k) * n + i]);
  }
  for (int k = 0; k < G; ++k) mixes[k] = float(a[k]) * rs;
}

void mixing(float* mixes, int n_mix, const bf16* h, const float* fn, int64_t n, float norm_eps) {
  // The n_mix dot products (and the sum of squares) are independent chains: run them side by side, each in
  // its own index order, in groups of 8.
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = bf16_to_f32(h[i]);
    ss += double(v * v);
  }
  const float rs = 1.0f / std::sqrt(float(ss) / float(n) + norm_eps);  // torch fp32 rsqrt = 1/sqrt
  int m = 0;
  for (; m + 8 <= n_mix; m += 8) mix_group<8>(mixes + m, h, fn + int64_t(m) * n, n, rs);
  for (; m + 4 <= n_mix; m += 4) mix_group<4>(mixes + m, h, fn + int64_t(m) * n, n, rs);
  for (; m < n_mix; ++m) {
    const float* w = fn + int64_t(m) * n;
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) acc += double(bf16_to_f32(h[i])) * double(w[i]);
    mixes[m] = float(acc) * rs;
  }
}

// Portable SIMD via GCC vector extensions: 16 independent columns per vector.
using simd::v16f;
typedef uint16_t v16u16 __attribute__((vector_size(32)));
typedef uint32_t v16u32 __attribute__((vector_size(64)));
typedef int32_t v16i32 __attribute__((vector_size(64)));

inline v16f load16(const bf16* p) { return simd::load_bf16x16(p); }
inline void store16(bf16* p, v16f f) {  // f32_to_bf16 lane-wise (RNE, NaN stays NaN)
  v16u32 u;
  std::memcpy(&u, &f, sizeof u);
  const v16u32 r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const v16u32 nan = (u >> 16) | 0x40u;
  const v16i32 is_nan = (u & 0x7fffffffu) > 0x7f800000u;
  const v16u32 sel = is_nan ? nan : r;
  const v16u16 b = __builtin_convertvector(sel, v16u16);
  std::memcpy(p, &b, sizeof b);
}
inline v16f splat(float x) { return x - v16f{}; }  // x − 0 == x for every x, −0 included

// mixing() for nr ≤ 8 rows at once, one SIMD lane per row: every row's sum of squares and every mix dot
// product keep the scalar index order; mixes: fp32 [nr][n_mix] (n_mix ≤ 64).
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
void mixing_rows(float* mixes, int nr, int n_mix, const bf16* h, const float* fn, int64_t n, float norm_eps) {
  constexpr int kChunk = 32;
  alignas(64) double xt[kChunk * 8];       // xt[i][r] = X_r[i]
  alignas(64) float xf[kChunk * 8];
  alignas(64) double wd[64 * kChunk];      // wd[m][i] = fn[m][i]
  v8d acc[64];
  for (int m = 0; m < n_mix; ++m) acc[m] = v8d{};
  v8d ss = {};
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int ci = int(std::min<int64_t>(kChunk, n - i0));
    for (int r = 0; r < 8; ++r)
      for (int i = 0; i < ci; ++i) xf[i * 8 + r] = r < nr ? bf16_to_f32(h[int64_t(r) * n + i0 + i]) : 0.0f;
    for (int i = 0; i < ci * 8; ++i) xt[i] = double(xf[i]);
    for (int m = 0; m < n_mix; ++m)
      for (int i = 0; i < ci; ++i) wd[m * kChunk + i] = double(fn[int64_t(m) * n + i0 + i]);
    for (int i = 0; i < ci; ++i) {
      v8f f;
      std::memcpy(&f, xf + i * 8, sizeof f);
      ss += __builtin_convertvector(f * f, v8d);  // ss += double(v * v)
      v8d x;
      std::memcpy(&x, xt + i * 8, sizeof x);
      for (int m = 0; m < n_mix; ++m) acc[m] += x * (wd[m * kChunk + i] - v8d{});  // broadcast (w − 0 == w, −0 included)
    }
  }
  for (int r = 0; r < nr; ++r) {
    const float rs = 1.0f / std::sqrt(float(ss[r]) / float(n) + norm_eps);  // torch fp32 rsqrt = 1/sqrt
    for (int m = 0; m < n_mix; ++m) mixes[r * n_mix + m] = float(acc[m][r]) * rs;
  }
}

// y = bf16(Σ_j pre_j · X_j), products rounded to fp32, summed in stream order.
void weighted_streams(bf16* y, const float* pre, const bf16* h, int hc, int dim) {
  int i = 0;
  for (; i + 16 <= dim; i += 16) {
    v16f acc = splat(pre[0]) * load16(h + i);
    for (int j = 1; j < hc; ++j) acc += splat(pre[j]) * load16(h + int64_t(j) * dim + i);
    store16(y + i, acc);  // hc_pre: y.to(bf16)
  }
  for (; i < dim; ++i) {
    float acc = pre[0] * bf16_to_f32(h[i]);
    for (int j = 1; j < hc; ++j) acc += pre[j] * bf16_to_f32(h[int64_t(j) * dim + i]);
    y[i] = f32_to_bf16(acc);  // hc_pre: y.to(bf16)
  }
}

// Mixes of up to 8 rows: one SIMD pass with a lane per row, or the single-row path for a lone row.
void mixing_group(float* mixes, int nr, int n_mix, const bf16* h, const float* fn, int64_t n, float norm_eps) {
  if (nr == 1) mixing(mixes, n_mix, h, fn, n, norm_eps);
  else mixing_rows(mixes, nr, n_mix, h, fn, n, norm_eps);
}

}  // namespace

void hc_split_sinkhorn(float* pre, float* post, float* comb, const float* mixes, const float* scale,
                       const float* base, int hc, int iters, float eps) {
  for (int j = 0; j < hc; ++j) pre[j] = sigmoid(mixes[j] * scale[0] + base[j]) + eps;
  for (int j = 0; j < hc; ++j) post[j] = 2.0f * sigmoid(mixes[hc + j] * scale[1] + base[hc + j]);
  for (int j = 0; j < hc * hc; ++j) comb[j] = mixes[2 * hc + j] * scale[2] + base[2 * hc + j];
  // Row softmax (subtract the row max) + eps.
  for (int j = 0; j < hc; ++j) {
    float* r = comb + j * hc;
    float mx = r[0];
    for (int k = 1; k < hc; ++k) mx = std::max(mx, r[k]);
    float s = 0.0f;
    for (int k = 0; k < hc; ++k) {
      r[k] = std::exp(r[k] - mx);
      s += r[k];
    }
    for (int k = 0; k < hc; ++k) r[k] = r[k] / s + eps;
  }
  auto col_norm = [&] {
    for (int k = 0; k < hc; ++k) {
      float s = 0.0f;
      for (int j = 0; j < hc; ++j) s += comb[j * hc + k];
      const float den = s + eps;
      for (int j = 0; j < hc; ++j) comb[j * hc + k] /= den;
    }
  };
  col_norm();
  for (int it = 1; it < iters; ++it) {
    for (int j = 0; j < hc; ++j) {
      float s = 0.0f;
      for (int k = 0; k < hc; ++k) s += comb[j * hc + k];
      const float den = s + eps;
      for (int k = 0; k < hc; ++k) comb[j * hc + k] /= den;
    }
    col_norm();
  }
}

void hc_pre(std::span<bf16> y, std::span<float> post, std::span<float> comb, std::span<const bf16> h,
            std::span<const float> fn, std::span<const float> scale, std::span<const float> base, const HcDims& d) {
  const int hc = d.hc, n_mix = (2 + hc) * hc;
  const int64_t n = int64_t(hc) * d.dim, rows = int64_t(h.size()) / n;
  // Work item = up to 8 rows whose mixings share one SIMD pass (lane = row); a lone row takes the row path.
  const int64_t groups = (rows + 7) / 8;
  detail::parallel_for(groups, [&](int64_t g) {
    const int64_t r0 = g * 8;
    const int nr = int(std::min<int64_t>(8, rows - r0));
    float mixes[8 * 64], pre[8];
    mixing_group(mixes, nr, n_mix, h.data() + r0 * n, fn.data(), n, d.norm_eps);
    for (int64_t r = r0; r < r0 + nr; ++r) {
      hc_split_sinkhorn(pre, post.data() + r * hc, comb.data() + r * hc * hc, mixes + (r - r0) * n_mix,
                        scale.data(), base.data(), hc, d.sinkhorn_iters, d.hc_eps);
      weighted_streams(y.data() + r * d.dim, pre, h.data() + r * n, hc, d.dim);
    }
  });
}

void hc_post(std::span<bf16> out, std::span<const bf16> x, std::span<const bf16> res, std::span<const float> post,
             std::span<const float> comb, const HcDims& d) {
  const int hc = d.hc, dim = d.dim;
  const int64_t rows = int64_t(x.size()) / dim;
  detail::parallel_for(rows, [&](int64_t r) {
    const float* p = post.data() + r * hc;
    const float* c = comb.data() + r * hc * hc;
    const bf16* xr = x.data() + r * dim;
    const bf16* rr = res.data() + r * hc * dim;
    for (int k = 0; k < hc; ++k) {
      bf16* o = out.data() + (r * hc + k) * dim;
      int i = 0;
      for (; i + 16 <= dim; i += 16) {
        v16f s = splat(c[0 * hc + k]) * load16(rr + i);
        for (int j = 1; j < hc; ++j) s += splat(c[j * hc + k]) * load16(rr + int64_t(j) * dim + i);
        store16(o + i, splat(p[k]) * load16(xr + i) + s);  // hc_post: y.type_as(x)
      }
      for (; i < dim; ++i) {
        float s = c[0 * hc + k] * bf16_to_f32(rr[i]);
        for (int j = 1; j < hc; ++j) s += c[j * hc + k] * bf16_to_f32(rr[int64_t(j) * dim + i]);
        o[i] = f32_to_bf16(p[k] * bf16_to_f32(xr[i]) + s);  // hc_post: y.type_as(x)
      }
    }
  });
}

void hc_head(std::span<bf16> y, std::span<const bf16> h, std::span<const float> fn, std::span<const float> scale,
             std::span<const float> base, const HcDims& d) {
  const int hc = d.hc;
  const int64_t n = int64_t(hc) * d.dim, rows = int64_t(h.size()) / n;
  const int64_t groups = (rows + 7) / 8;
  detail::parallel_for(groups, [&](int64_t g) {
    const int64_t r0 = g * 8;
    const int nr = int(std::min<int64_t>(8, rows - r0));
    float mixes[8 * 8], pre[8];
    mixing_group(mixes, nr, hc, h.data() + r0 * n, fn.data(), n, d.norm_eps);
    for (int64_t r = r0; r < r0 + nr; ++r) {
      const float* mx = mixes + (r - r0) * hc;
      for (int j = 0; j < hc; ++j) pre[j] = sigmoid(mx[j] * scale[0] + base[j]) + d.hc_eps;
      weighted_streams(y.data() + r * d.dim, pre, h.data() + r * n, hc, d.dim);
    }
  });
}

}  // namespace dsv4::kernels
