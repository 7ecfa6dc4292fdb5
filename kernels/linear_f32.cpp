#include "kernels/linear.hpp"
#include "kernels/parallel.hpp"
#include "kernels/simd.hpp"

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

#if defined(__AVX512F__) && defined(__AVX512BW__)  // BW: the masked 16-bit loads of the k tail
// Lanes run over 16 consecutive outputs j (a "panel" of 16 weight rows), so every lane is one output's
// sequential sum over k; k is never split. The panel's rows are read with plain 64-byte loads (32 bf16 =
// 16 dwords, each the pair (t, t+1)) and transposed in registers: a gather per k pair is several times
// slower than the weight stream.

// Row r (0..15) of a panel: byte offset r * s from b. Rows 3, 5, 7 (+ 8) get their own strides and the
// rest are scaled indices, so the 16 rows cost 6 registers (16 row pointers would be spilled).
struct Panel {
  const char* b;
  int64_t s, s3, s5, s7;
  Panel(const bf16* w, int64_t k) : b(reinterpret_cast<const char*>(w)), s(2 * k), s3(3 * s), s5(5 * s), s7(7 * s) {}
  [[gnu::always_inline]] const void* at(int r, int64_t t) const {
    const char* h = b + (r & 8 ? 8 * s : 0) + 2 * t;
    switch (r & 7) {
      case 0: return h;
      case 1: return h + s;
      case 2: return h + 2 * s;
      case 3: return h + s3;
      case 4: return h + 4 * s;
      case 5: return h + s5;
      case 6: return h + 2 * s3;
      default: return h + s7;
    }
  }
};

// Loads the panel's bf16 [t, t + c) (c <= 32; zeros past c, nothing read there: the k tail) and transposes
// the 16x16 dwords: v[p] lane r = row r's pair p = (t + 2p, t + 2p + 1).
[[gnu::always_inline]] inline void load_block(__m512i (&v)[16], const Panel& w, int64_t t, int64_t c) {
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r)
    v[r] = c >= 32 ? _mm512_loadu_si512(w.at(r, t)) : _mm512_maskz_loadu_epi16(__mmask32((1u << c) - 1), w.at(r, t));
  for (int r = 0; r < 16; ++r) asm("" : "+v"(v[r]));  // one load per row: GCC would fold it into both unpacks
  // 16 rows in lockstep at the same page offset (k = 4096: rows 8 KiB apart) defeat the hardware
  // prefetchers; fetching 4 blocks ahead gains 10-20% from DRAM.
  if (c >= 32)
    for (int r = 0; r < 16; ++r) _mm_prefetch(static_cast<const char*>(w.at(r, t)) + 256, _MM_HINT_T0);
  simd::transpose16(v, v);
}

// The pair's first (t) and second (t + 1) bf16 widened to fp32.
inline __m512 lo_f32(__m512i p) { return _mm512_castsi512_ps(_mm512_slli_epi32(p, 16)); }
inline __m512 hi_f32(__m512i p) {
  return _mm512_castsi512_ps(_mm512_and_si512(p, _mm512_set1_epi32(int(0xffff0000u))));
}

// acc += x * w, one fp32 rounding each (fp-contract is off: never an FMA).
inline __m512 step(__m512 acc, float x, __m512 w) { return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x), w)); }

// The k % 32 tail (any k, odd included): y holds the sums so far; adds the remaining k - t steps, in order.
// Out of line, as indexing v by a variable puts it in memory, which the main loop must not pay for.
template <int R>
[[gnu::noinline]] void gemv_tail(float* y, const float* x, const Panel& w, int64_t n, int64_t k, int64_t t) {
  __m512 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_loadu_ps(y + i * n);
  __m512i v[16];
  load_block(v, w, t, k - t);
  for (int64_t e = 0; e < k - t; ++e) {
    const __m512 we = e % 2 ? hi_f32(v[e / 2]) : lo_f32(v[e / 2]);
    for (int i = 0; i < R; ++i) acc[i] = step(acc[i], x[i * k + t + e], we);
  }
  for (int i = 0; i < R; ++i) _mm512_storeu_ps(y + i * n, acc[i]);
}

// Decode (m <= 8): R activation rows against one panel, each transposed block used straight from registers
// by all R rows. y, x point at the panel's column and row 0.
template <int R>
void gemv_panel(float* y, const float* x, const Panel w, int64_t n, int64_t k) {
  __m512 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  int64_t t = 0;
  for (; t + 32 <= k; t += 32) {
    __m512i v[16];
    load_block(v, w, t, 32);
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      const __m512 w0 = lo_f32(v[p]), w1 = hi_f32(v[p]);
      for (int i = 0; i < R; ++i) {
        const float* xi = x + i * k + t + 2 * p;
        acc[i] = step(step(acc[i], xi[0], w0), xi[1], w1);
      }
      // Keeps the R chains interleaved step by step; GCC otherwise emits them one after another, which
      // leaves the out-of-order window too short to overlap them.
      for (int i = 0; i < R; ++i) asm volatile("" : "+v"(acc[i]));
    }
  }
  for (int i = 0; i < R; ++i) _mm512_storeu_ps(y + i * n, acc[i]);
  if (t < k) gemv_tail<R>(y, x, w, n, k, t);
}

template <int R = 8>
void gemv_rows(int64_t m, float* y, const float* x, const Panel& w, int64_t n, int64_t k) {
  if constexpr (R > 1)
    if (m < R) return gemv_rows<R - 1>(m, y, x, w, n, k);
  gemv_panel<R>(y, x, w, n, k);
}

// Batch (m > 8): P panels' weights for a k chunk are transposed once into an fp32 scratch (L1-resident) and
// reused by every row group; a group of up to 8 rows keeps 8 x P accumulators in registers, one broadcast
// of x per row serving P panels. Across chunks the partial sums wait in y (an exact fp32 round trip).
constexpr int64_t kChunk = 256;      // k per scratch fill: 2 panels x 16 x 256 x 4 B = 32 KiB
constexpr int64_t kRowBlock = 256;   // activation rows per pass over the panel's weights (x block in L2)

// wt[t * ld + r] = float(w[r][t0 + t]) for the panel's rows r < 16, t < kc.
void stage(float* wt, int64_t ld, const Panel& w, int64_t t0, int64_t kc) {
  for (int64_t t = 0; t < kc; t += 32) {  // kChunk % 32 == 0: a short last block stays inside wt
    __m512i v[16];
    load_block(v, w, t0 + t, std::min<int64_t>(32, kc - t));
    for (int p = 0; p < 16; ++p) {
      _mm512_store_ps(wt + (t + 2 * p) * ld, lo_f32(v[p]));
      _mm512_store_ps(wt + (t + 2 * p + 1) * ld, hi_f32(v[p]));
    }
  }
}

template <int R, int P>
void gemm_group(float* y, const float* x, const float* wt, int64_t n, int64_t k, int64_t t0, int64_t kc) {
  __m512 acc[R][P];
  for (int i = 0; i < R; ++i)
    for (int q = 0; q < P; ++q) acc[i][q] = t0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(y + i * n + q * kLanes);
  for (int64_t t = 0; t < kc; ++t) {
    __m512 wv[P];
    for (int q = 0; q < P; ++q) wv[q] = _mm512_load_ps(wt + (t * P + q) * kLanes);
    for (int i = 0; i < R; ++i) {
      const __m512 xb = _mm512_set1_ps(x[i * k + t0 + t]);
      for (int q = 0; q < P; ++q) acc[i][q] = _mm512_add_ps(acc[i][q], _mm512_mul_ps(xb, wv[q]));
    }
  }
  for (int i = 0; i < R; ++i)
    for (int q = 0; q < P; ++q) _mm512_storeu_ps(y + i * n + q * kLanes, acc[i][q]);
}

template <int P, int R = 8>
void gemm_rows(int64_t m, float* y, const float* x, const float* wt, int64_t n, int64_t k, int64_t t0, int64_t kc) {
  if constexpr (R > 1)
    if (m < R) return gemm_rows<P, R - 1>(m, y, x, wt, n, k, t0, kc);
  gemm_group<R, P>(y, x, wt, n, k, t0, kc);
}

// Outputs [j0, j0 + 16 P) for all m rows. y, x, w are the whole tensors.
template <int P>
void gemm_panels(float* y, const float* x, const bf16* w, int64_t m, int64_t n, int64_t k, int64_t j0) {
  alignas(64) float wt[kChunk * P * kLanes];
  for (int64_t b0 = 0; b0 < m; b0 += kRowBlock) {
    const int64_t b1 = std::min(m, b0 + kRowBlock);
    for (int64_t t0 = 0; t0 == 0 || t0 < k; t0 += kChunk) {  // k == 0 still writes the zeros
      const int64_t kc = std::min(kChunk, k - t0);
      for (int q = 0; q < P; ++q) stage(wt + q * kLanes, P * kLanes, Panel(w + (j0 + q * kLanes) * k, k), t0, kc);
      for (int64_t i0 = b0; i0 < b1; i0 += 8)
        gemm_rows<P>(std::min<int64_t>(8, b1 - i0), y + i0 * n + j0, x + i0 * k, wt, n, k, t0, kc);
    }
  }
}
#elif defined(__AVX2__)
// AVX2: the same lanes over outputs (8 per vector), one path for every row count. A task owns a panel of
// 16 outputs; per chunk of k the panel's weights are widened and transposed into an fp32 scratch (L1),
// which each group of up to 4 activation rows then walks, 2 independent sums per row. Across chunks the
// partial sums wait in y (an exact fp32 round trip).
constexpr int64_t kPanel = 16, kChunk = 256, kRowBlock = 256;

// 8x8 fp32 transpose in place: r[i] lane j -> r[j] lane i.
inline void transpose8(__m256 r[8]) {
  __m256 a[8], b[8];
  for (int i = 0; i < 4; ++i) {
    a[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // b[4i + c]: rows 4i..4i+3 of columns c and c + 4
    b[4 * i + 0] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], 0x44);
    b[4 * i + 1] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], 0xEE);
    b[4 * i + 2] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0x44);
    b[4 * i + 3] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x31);
  }
}

// wt[t * 16 + c] = float(w[c][t0 + t]) for the panel's rows c < 16 (w points at row 0), t < kc.
void stage(float* wt, const bf16* w, int64_t k, int64_t t0, int64_t kc) {
  int64_t t = 0;
  for (; t + 8 <= kc; t += 8)
    for (int h = 0; h < 2; ++h) {
      __m256 r[8];
      for (int c = 0; c < 8; ++c) {
        const bf16* row = w + (8 * h + c) * k + t0 + t;
        // 16 rows in lockstep at the same page offset defeat the hardware prefetchers (see load_block).
        if (t % 32 == 0) _mm_prefetch(reinterpret_cast<const char*>(row) + 256, _MM_HINT_T0);
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row));
        r[c] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
      }
      transpose8(r);
      for (int e = 0; e < 8; ++e) _mm256_store_ps(wt + (t + e) * kPanel + 8 * h, r[e]);
    }
  for (; t < kc; ++t)  // the k % 8 tail
    for (int c = 0; c < kPanel; ++c) wt[t * kPanel + c] = bf16_to_f32(w[c * k + t0 + t]);
}

// R activation rows over one staged chunk: acc += x * w per k, in order. y, x point at the panel's column
// and row 0.
template <int R>
void steps(float* y, const float* x, const float* wt, int64_t n, int64_t k, int64_t t0, int64_t kc) {
  __m256 acc[R][2];
  for (int i = 0; i < R; ++i)
    for (int h = 0; h < 2; ++h) acc[i][h] = t0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(y + i * n + 8 * h);
  for (int64_t t = 0; t < kc; ++t) {
    const __m256 w0 = _mm256_load_ps(wt + t * kPanel), w1 = _mm256_load_ps(wt + t * kPanel + 8);
    for (int i = 0; i < R; ++i) {
      const __m256 xb = _mm256_set1_ps(x[i * k + t0 + t]);
      acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_mul_ps(xb, w0));  // one fp32 rounding each, never an FMA
      acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_mul_ps(xb, w1));
    }
  }
  for (int i = 0; i < R; ++i)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y + i * n + 8 * h, acc[i][h]);
}

// Outputs [j0, j0 + 16) for all m rows. y, x, w are the whole tensors.
void panel_rows(float* y, const float* x, const bf16* w, int64_t m, int64_t n, int64_t k, int64_t j0) {
  alignas(32) float wt[kChunk * kPanel];
  for (int64_t b0 = 0; b0 < m; b0 += kRowBlock) {
    const int64_t b1 = std::min(m, b0 + kRowBlock);
    for (int64_t t0 = 0; t0 == 0 || t0 < k; t0 += kChunk) {  // k == 0 still writes the zeros
      const int64_t kc = std::min(kChunk, k - t0);
      stage(wt, w + j0 * k, k, t0, kc);
      for (int64_t i0 = b0; i0 < b1; i0 += 4) {
        float* yi = y + i0 * n + j0;
        const float* xi = x + i0 * k;
        switch (std::min<int64_t>(4, b1 - i0)) {
          case 1: steps<1>(yi, xi, wt, n, k, t0, kc); break;
          case 2: steps<2>(yi, xi, wt, n, k, t0, kc); break;
          case 3: steps<3>(yi, xi, wt, n, k, t0, kc); break;
          default: steps<4>(yi, xi, wt, n, k, t0, kc); break;
        }
      }
    }
  }
}
#endif

}  // namespace

void linear_f32(std::span<float> y, std::span<const float> x, std::span<const bf16> w, int64_t m, int64_t n,
                    int64_t k) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  const int64_t full = n / kLanes * kLanes;
  if (m >= 1 && m <= 8) {
    detail::parallel_for(full / kLanes, [&](int64_t b) {
      gemv_rows(m, y.data() + b * kLanes, x.data(), Panel(w.data() + b * kLanes * k, k), n, k);
    });
  } else if (m > 8) {
    constexpr int P = 2;  // panels per task
    const int64_t tasks = full / (P * kLanes);
    detail::parallel_for(tasks,
                         [&](int64_t b) { gemm_panels<P>(y.data(), x.data(), w.data(), m, n, k, b * P * kLanes); });
    if (tasks * P * kLanes < full) gemm_panels<1>(y.data(), x.data(), w.data(), m, n, k, tasks * P * kLanes);
  }
  seq_block(y.data(), x.data(), w.data(), m, full, n, n, k);
#elif defined(__AVX2__)
  const int64_t full = n / kPanel * kPanel;
  if (m >= 1)
    detail::parallel_for(full / kPanel,
                         [&](int64_t b) { panel_rows(y.data(), x.data(), w.data(), m, n, k, b * kPanel); });
  seq_block(y.data(), x.data(), w.data(), m, full, n, n, k);
#else
  detail::parallel_for((n + kLanes - 1) / kLanes, [&](int64_t b) {
    seq_block(y.data(), x.data(), w.data(), m, b * kLanes, std::min(n, (b + 1) * kLanes), n, k);
  });
#endif
}

}  // namespace dsv4::kernels
