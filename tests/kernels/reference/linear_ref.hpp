// Plain scalar twins of kernels/quant.* and kernels/linear.*: written from the spec (§4.2, §4.3),
// independently of the kernels' tricks (no LUT bytes, no VNNI digits, no fp64 block engine for FP8:
// exact block sums use int64 here).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/numerics.hpp"

namespace dsv4::ref {

// 2^ceil(log2(t)) for a positive normal t, via frexp (not via the IEEE bit trick).
inline float pow2_ceil(float t) {
  int e;
  const float fr = std::frexp(t, &e);  // t = fr·2^e, fr in [0.5, 1)
  return std::ldexp(1.0f, fr == 0.5f ? e - 1 : e);
}
inline float fp8_scale(float amax) { return pow2_ceil(std::max(amax, 1e-4f) * float(1.0 / 448.0)); }
inline float fp4_scale(float amax) { return pow2_ceil(std::max(amax, 6.0f * 0x1p-126f) * float(1.0 / 6.0)); }

inline float block_amax(const bf16* x, int64_t n) {
  float a = 0.f;
  for (int64_t i = 0; i < n; ++i) a = std::max(a, std::fabs(bf16_to_f32(x[i])));
  return a;
}

// act_quant non-inplace, block 128.
inline void act_quant_fp8(std::vector<uint8_t>& q, std::vector<float>& s, const std::vector<bf16>& x,
                          int64_t rows, int64_t cols) {
  q.assign(rows * cols, 0);
  s.assign(rows * cols / 128, 0.f);
  for (int64_t b = 0; b < rows * cols / 128; ++b) {
    const float sc = fp8_scale(block_amax(&x[b * 128], 128));
    s[b] = sc;
    for (int i = 0; i < 128; ++i)
      q[b * 128 + i] = f32_to_e4m3(std::clamp(bf16_to_f32(x[b * 128 + i]) / sc, -448.f, 448.f));
  }
}

inline void fp8_round_trip(std::vector<bf16>& v, int64_t block) {
  for (size_t b = 0; b < v.size(); b += block) {
    const float sc = fp8_scale(block_amax(&v[b], block));
    for (int64_t i = 0; i < block; ++i) {
      const float q = e4m3_to_f32(f32_to_e4m3(std::clamp(bf16_to_f32(v[b + i]) / sc, -448.f, 448.f)));
      v[b + i] = f32_to_bf16(q * sc);
    }
  }
}

inline void fp4_round_trip(std::vector<bf16>& v) {
  for (size_t b = 0; b < v.size(); b += 32) {
    const float sc = fp4_scale(block_amax(&v[b], 32));
    for (int i = 0; i < 32; ++i) {
      const float q = e2m1_to_f32(f32_to_e2m1(std::clamp(bf16_to_f32(v[b + i]) / sc, -6.f, 6.f)));
      v[b + i] = f32_to_bf16(q * sc);
    }
  }
}

// e4m3 value · 2^9 as an exact integer (NaN codes excluded by the callers).
inline int64_t e4m3_units(uint8_t c) { return int64_t(std::ldexp(double(e4m3_to_f32(c)), 9)); }

// fp8_gemm: exact block sum -> fp32, × (sa·sb) fp32, fp32 accumulation in ascending blocks, bf16.
inline void linear_fp8(std::vector<bf16>& y, const std::vector<uint8_t>& xq, const std::vector<float>& xs,
                       const std::vector<uint8_t>& w, const std::vector<uint8_t>& ws, int64_t m, int64_t n,
                       int64_t k) {
  const int64_t kb_n = k / 128;
  y.assign(m * n, bf16{0});
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t kb = 0; kb < kb_n; ++kb) {
        int64_t s = 0;
        for (int64_t t = kb * 128; t < kb * 128 + 128; ++t) s += e4m3_units(xq[i * k + t]) * e4m3_units(w[j * k + t]);
        const float blk = float(std::ldexp(double(s), -18));  // exact in double, one rounding to fp32
        const float scale = xs[i * kb_n + kb] * e8m0_to_f32(ws[(j / 128) * kb_n + kb]);
        acc = acc + blk * scale;
      }
      y[i * n + j] = f32_to_bf16(acc);
    }
}

// fp4_gemm: exact 32-wide sub-block sums, sa per 128, sb per (n, 32).
inline void linear_fp4(std::vector<bf16>& y, const std::vector<uint8_t>& xq, const std::vector<float>& xs,
                       const std::vector<uint8_t>& w, const std::vector<uint8_t>& ws, int64_t m, int64_t n,
                       int64_t k) {
  y.assign(m * n, bf16{0});
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t sb = 0; sb < k / 32; ++sb) {
        int64_t s = 0;
        for (int64_t t = sb * 32; t < sb * 32 + 32; ++t) {
          const uint8_t nib = (w[j * (k / 2) + t / 2] >> (4 * (t % 2))) & 0xf;
          s += e4m3_units(xq[i * k + t]) * int64_t(2 * e2m1_to_f32(nib));
        }
        const float blk = float(std::ldexp(double(s), -10));
        const float scale = xs[i * (k / 128) + sb / 4] * e8m0_to_f32(ws[j * (k / 32) + sb]);
        acc = acc + blk * scale;
      }
      y[i * n + j] = f32_to_bf16(acc);
    }
}

// The dense linears' documented order (kernels/linear_core.hpp): per 128-block, 8 lanes (k mod 8)
// summed in ascending k in fp64, lanes added ((0+1)+(2+3))+((4+5)+(6+7)), blocks added in fp64.
inline double dense_dot_canonical(const double* a, const double* b, int64_t k) {
  double acc = 0.0;
  for (int64_t kb = 0; kb < k; kb += 128) {
    double l[8];
    for (int q = 0; q < 8; ++q) {
      double s = 0.0;
      for (int t = 0; t < 16; ++t) s += a[kb + 8 * t + q] * b[kb + 8 * t + q];
      l[q] = s;
    }
    acc += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }
  return acc;
}

}  // namespace dsv4::ref
