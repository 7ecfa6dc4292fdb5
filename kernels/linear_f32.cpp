#include "kernels/linear.hpp"

#include <immintrin.h>

#include <algorithm>

#pragma GCC optimize("fp-contract=off")

namespace dsv4::kernels {
namespace {

constexpr int64_t kLanes = 16;  // outputs per vector

// Scalar twin / tail: one output at a time, sequential k.
void seq_block(float* y, const float* x, const bf16* w, int64_t m, int64_t n0, int64_t n1, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = n0; j < n1; ++j) {
      float acc = 0.0f;
      for (int64_t t = 0; t < k; ++t) acc += x[i * k + t] * bf16_to_f32(w[j * k + t]);  // exact product, fp32 sum
      y[i * n + j] = acc;
    }
}

#if defined(__AVX512F__)
// Lanes run over 16 consecutive outputs j, so every lane is one output's sequential sum over k (k is never
// split). The weights of 16 rows are read with plain row loads, 32 bf16 (16 dwords = pairs (t, t+1)) per
// row, and transposed in registers; a gather per k step is several times slower than the weight stream.

// v[r] = row r's dwords (pairs) -> v[p] = pair p of rows 0..15 (lane r = row r). Four shuffle stages.
inline void transpose16(__m512i (&v)[16]) {
  __m512i a[16], s[16];
  for (int r = 0; r < 16; r += 2) {  // lane L of a[r]: rows r, r+1 at pairs 4L, 4L+1; a[r+1]: pairs 4L+2, 4L+3
    a[r] = _mm512_unpacklo_epi32(v[r], v[r + 1]);
    a[r + 1] = _mm512_unpackhi_epi32(v[r], v[r + 1]);
  }
  for (int q = 0; q < 4; ++q) {  // s[4o+q] lane L: rows 4q..4q+3 at pair 4L+o
    s[q] = _mm512_unpacklo_epi64(a[4 * q], a[4 * q + 2]);
    s[4 + q] = _mm512_unpackhi_epi64(a[4 * q], a[4 * q + 2]);
    s[8 + q] = _mm512_unpacklo_epi64(a[4 * q + 1], a[4 * q + 3]);
    s[12 + q] = _mm512_unpackhi_epi64(a[4 * q + 1], a[4 * q + 3]);
  }
  for (int o = 0; o < 4; ++o) {  // 4x4 transpose of the 128-bit lanes of s[4o..4o+3]
    const __m512i* S = s + 4 * o;
    const __m512i u0 = _mm512_shuffle_i32x4(S[0], S[1], 0x44), u1 = _mm512_shuffle_i32x4(S[0], S[1], 0xee);
    const __m512i u2 = _mm512_shuffle_i32x4(S[2], S[3], 0x44), u3 = _mm512_shuffle_i32x4(S[2], S[3], 0xee);
    v[o] = _mm512_shuffle_i32x4(u0, u2, 0x88);
    v[4 + o] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
    v[8 + o] = _mm512_shuffle_i32x4(u1, u3, 0x88);
    v[12 + o] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
  }
}

// Loads the 16 rows' bf16 [t, t + c) (c <= 32; the rest zero, no read past the rows) and transposes them.
inline void load_block(__m512i (&v)[16], const bf16* w, int64_t k, int64_t t, int64_t c) {
  const __mmask32 mask = c >= 32 ? ~__mmask32(0) : __mmask32((1u << c) - 1);
  for (int r = 0; r < 16; ++r)
    v[r] = c >= 32 ? _mm512_loadu_si512(w + r * k + t) : _mm512_maskz_loadu_epi16(mask, w + r * k + t);
  transpose16(v);
}

// The pair's first (t) and second (t + 1) bf16 widened to fp32.
inline __m512 lo_f32(__m512i p) { return _mm512_castsi512_ps(_mm512_slli_epi32(p, 16)); }
inline __m512 hi_f32(__m512i p) {
  return _mm512_castsi512_ps(_mm512_and_si512(p, _mm512_set1_epi32(int(0xffff0000u))));
}

// Decode (m <= 8): R activation rows against one 16-row panel, weights transposed in registers straight
// from the row loads (each is used R times). acc[i] = one chain per row; Zen 5's 2-cycle add keeps even
// R = 1 ahead of the weight stream.
template <int R>
void gemv_panel(float* y, const float* x, const bf16* w, int64_t n, int64_t k, int64_t j0) {
  __m512 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  const bf16* wp = w + j0 * k;
  __m512i v[16];
  int64_t t = 0;
  for (; t + 32 <= k; t += 32) {
    load_block(v, wp, k, t, 32);
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      const __m512 w0 = lo_f32(v[p]), w1 = hi_f32(v[p]);
      for (int i = 0; i < R; ++i) {
        const float* xi = x + i * k + t + 2 * p;
        acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xi[0]), w0));
        acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xi[1]), w1));
      }
    }
  }
  if (t < k) {  // k % 32 tail (any k, odd included): exactly the remaining c steps, in order
    const int64_t c = k - t;
    load_block(v, wp, k, t, c);
    for (int64_t e = 0; e < c; ++e) {
      const __m512 we = e % 2 ? hi_f32(v[e / 2]) : lo_f32(v[e / 2]);
      for (int i = 0; i < R; ++i) acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(x[i * k + t + e]), we));
    }
  }
  for (int i = 0; i < R; ++i) _mm512_storeu_ps(y + i * n + j0, acc[i]);
}

// r (1..R) rows through gemv_panel<r>.
template <int R = 8>
void gemv_rows(int64_t r, float* y, const float* x, const bf16* w, int64_t n, int64_t k, int64_t j0) {
  if constexpr (R > 1)
    if (r < R) return gemv_rows<R - 1>(r, y, x, w, n, k, j0);
  gemv_panel<R>(y, x, w, n, k, j0);
}
#endif

}  // namespace

void linear_f32(std::span<float> y, std::span<const float> x, std::span<const bf16> w, int64_t m, int64_t n,
                    int64_t k) {
  const int64_t full = n / kLanes * kLanes;
#if defined(__AVX512F__)
  if (m <= 8) {
#pragma omp parallel for schedule(static)
    for (int64_t nb = 0; nb < full; nb += kLanes) gemv_rows(m, y.data(), x.data(), w.data(), n, k, nb);
    seq_block(y.data(), x.data(), w.data(), m, full, n, n, k);
    return;
  }
#endif
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < n; nb += kLanes)
    seq_block(y.data(), x.data(), w.data(), m, nb, std::min(n, nb + kLanes), n, k);
}

}  // namespace dsv4::kernels
