// FP8 linear (kernel.py fp8_gemm): e4m3 activations x e4m3 weights.
//
// Every 128-block dot product is exact in fp64 whatever the order of its terms (linear.hpp), so each
// path lays out its SIMD lanes as its data suits: the GEMV keeps lanes along k (weights as stored,
// activations decoded once per call), the GEMM puts lanes along n (register outer products over a
// weight panel decoded once per K block, no horizontal sums). Only fp8_gemm's fp32 steps round, and
// every path takes them in the same order: block sum -> fp32, × fp32(sa·sb), + fp32 accumulator in
// ascending block order, -> bf16. So GEMV, GEMM and the scalar path give the same bits.
#include <algorithm>
#include <cassert>
#include <limits>

#include "kernels/e4m3_decode.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_core.hpp"
#include "kernels/parallel.hpp"

// The SIMD paths need byte shuffles (VBMI) and byte compares (BW) besides AVX-512F.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
#define DSV4_FP8_SIMD 1
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)  // AVX2 machines: the GEMV for every row count
#define DSV4_FP8_AVX2 1
#include <immintrin.h>
#endif

namespace dsv4::kernels {
namespace {

using detail::kBlk, detail::kGemvMaxK;

struct Fp8Args {
  int64_t m, n, k, kblocks;
  const uint8_t* xq;  // e4m3 [m, k]
  const float* xs;    // fp32 [m, k/128]
  const uint8_t* w;   // e4m3 [n, k]
  const uint8_t* ws;  // e8m0 [ceil(n/128), k/128]
  bf16* y;            // bf16 [m, n]
  float sa(int64_t row, int64_t kb) const { return xs[row * kblocks + kb]; }
  float sb(int64_t col, int64_t kb) const { return e8m0_to_f32(ws[(col / kBlk) * kblocks + kb]); }
  // The SIMD GEMVs' output lanes: lane i (< S·M) of a sub-group of S weight rows from row0 is activation
  // row i % M, weight row row0 + i / M; rows past n are dropped.
  void store_gemv_lanes(const float* o, int64_t row0, int S, int M) const {
    for (int i = 0; i < S * M; ++i)
      if (row0 + i / M < n) y[(i % M) * n + row0 + i / M] = f32_to_bf16(o[i]);  // fp8_gemm: output cast to bf16
  }
};

// fp8_gemm per (row, col, block): the exact block dot rounded once to fp32, times Scale_C = sa·sb (fp32),
// added to the fp32 accumulator.
inline float fp8_step(float acc, double blk, float sa, float sb) { return acc + float(blk) * (sa * sb); }

// The SIMD GEMVs decode their weights in the stream order of e4m3_decode.hpp (gemv_code; for AVX2 the first
// 32 codes of it, q < 4) and the activations to match. Any order gives the same block sums, which are exact.
using detail::gemv_code;

#ifndef DSV4_FP8_SIMD
// Portable path: exact block sums in fp64 (products of e4m3 values are exact, and so is every partial sum).
void fp8_portable(const Fp8Args& a) {
  detail::parallel_for(a.n, [&](int64_t j) {
    for (int64_t i = 0; i < a.m; ++i) {
      float acc = 0.f;
      for (int64_t kb = 0; kb < a.kblocks; ++kb) {
        const uint8_t* x = a.xq + i * a.k + kb * kBlk;
        const uint8_t* w = a.w + j * a.k + kb * kBlk;
        double s = 0.0;
        for (int t = 0; t < kBlk; ++t) s += double(e4m3_to_f32(x[t])) * double(e4m3_to_f32(w[t]));
        acc = fp8_step(acc, s, a.sa(i, kb), a.sb(j, kb));
      }
      a.y[i * a.n + j] = f32_to_bf16(acc);  // fp8_gemm: output cast to bf16
    }
  });
}
#endif

#ifdef DSV4_FP8_AVX2
// ---- AVX2 (no byte permutes, no mask registers): the GEMV of the AVX-512 path in 4-lane vectors, used
// for every row count in passes of up to 4 rows, with the same weight decode (Words32, e4m3_decode.hpp).
// The patterns hold the values times 2^-1016; activations are decoded times 2^500, so the exact block sums
// carry 2^-516.
using detail::Words32, detail::prepare_words32, detail::decode_word32, detail::has_nan_lo;
// Lane i = the sum of the i-th argument's lanes (exact sums: any order).
inline __m256d hsum4(__m256d a, __m256d b, __m256d c, __m256d d) {
  const __m256d ab = _mm256_hadd_pd(a, b), cd = _mm256_hadd_pd(c, d);
  return _mm256_add_pd(_mm256_permute2f128_pd(ab, cd, 0x20), _mm256_permute2f128_pd(ab, cd, 0x31));
}

// One K block of S weight rows x M activation rows (S·M <= 4): the exact block sums (times 2^-516) in
// lanes r·M + mm, and in nan_rows bit r when row r's block holds a NaN code. Two accumulators per pair
// keep 8 FMA chains in flight for M = 1.
template <int M, int S>
__attribute__((noinline)) __m256d gemv_block_avx2(const uint8_t* const* wr, const uint8_t* prefetch, int64_t k0,
                                                  const double (*x)[kGemvMaxK], const __m256i (&mid)[2],
                                                  int& nan_rows) {
  static_assert(S * M <= 4);
  __m256d part[S * M][2];
  for (auto& p : part) p[0] = p[1] = _mm256_setzero_pd();
  __m256i lo_max = _mm256_setzero_si256();
  for (int c = 0; c < kBlk / 32; ++c)
    for (int r = 0; r < S; ++r) {
      // The next group's 4 rows (4·k contiguous bytes) are fetched 8 lines per block.
      if (c < 2) _mm_prefetch(reinterpret_cast<const char*>(prefetch + (2 * r + c) * 64), _MM_HINT_T0);
      const Words32 w = prepare_words32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + k0 + 32 * c)));
      lo_max = _mm256_max_epu8(lo_max, w.lo);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m256d d = decode_word32(w, j, mid);
        for (int mm = 0; mm < M; ++mm) {
          __m256d& p = part[r * M + mm][j % 2];
          p = _mm256_fmadd_pd(d, _mm256_load_pd(x[mm] + k0 + 32 * c + 4 * j), p);
        }
      }
    }
  if (has_nan_lo(lo_max)) [[unlikely]]
    for (int r = 0; r < S; ++r)
      for (int c = 0; c < kBlk / 32; ++c)
        if (has_nan_lo(prepare_words32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + k0 + 32 * c))).lo))
          nan_rows |= 1 << r;
  __m256d v[4];
  for (int i = 0; i < 4; ++i) v[i] = i < S * M ? _mm256_add_pd(part[i][0], part[i][1]) : _mm256_setzero_pd();
  return hsum4(v[0], v[1], v[2], v[3]);
}

template <int M>
void fp8_gemv_avx2(const Fp8Args& a) {
  constexpr int S = M == 1 ? 4 : M == 2 ? 2 : 1, G = 4 / S;
  const int64_t groups = (a.n + 3) / 4;
  detail::parallel_region(groups, [&](detail::WorkShare& ws) {
    alignas(32) double x[M][kGemvMaxK];
    for (int mm = 0; mm < M; ++mm)
      for (int64_t c0 = 0; c0 < a.k; c0 += 32)
        for (int j = 0; j < 8; ++j)
          for (int q = 0; q < 4; ++q)
            x[mm][c0 + 4 * j + q] = double(e4m3_to_f32(a.xq[mm * a.k + c0 + gemv_code(j, q)])) * 0x1p500;
    const __m256i mid[2] = {detail::mid_word_ctrl32(1), detail::mid_word_ctrl32(2)};
    ws.for_each([&](int64_t g) {
      const int64_t n0 = 4 * g;
      const uint8_t* wr[4];
      for (int r = 0; r < 4; ++r) wr[r] = a.w + std::min<int64_t>(n0 + r, a.n - 1) * a.k;  // tail: recompute
      __m128 acc[G];
      for (int sg = 0; sg < G; ++sg) acc[sg] = _mm_setzero_ps();
      for (int64_t kb = 0; kb < a.kblocks; ++kb) {
        alignas(16) float sa[4] = {};
        for (int i = 0; i < S * M; ++i) sa[i] = a.sa(i % M, kb);
        const __m128 scale = _mm_mul_ps(_mm_load_ps(sa), _mm_set1_ps(a.sb(n0, kb)));  // Scale_C of lane r·M + mm
        for (int sg = 0; sg < G; ++sg) {
          int nan_rows = 0;
          __m256d blk = _mm256_mul_pd(gemv_block_avx2<M, S>(wr + sg * S, wr[0] + 4 * a.k + (kb * 8 + 2 * sg * S) * 64,
                                                           kb * kBlk, x, mid, nan_rows),
                                      _mm256_set1_pd(0x1p516));  // exact: the true block sums
          if (nan_rows) [[unlikely]] {
            alignas(32) double b[4];
            _mm256_store_pd(b, blk);
            for (int i = 0; i < S * M; ++i)
              if (nan_rows >> (i / M) & 1) b[i] = std::numeric_limits<double>::quiet_NaN();
            blk = _mm256_load_pd(b);
          }
          acc[sg] = _mm_add_ps(acc[sg], _mm_mul_ps(_mm256_cvtpd_ps(blk), scale));  // fp8_step on 4 lanes
        }
      }
      for (int sg = 0; sg < G; ++sg) {
        alignas(16) float o[4];
        _mm_store_ps(o, acc[sg]);
        a.store_gemv_lanes(o, n0 + sg * S, S, M);
      }
    });
  });
}
#endif

#ifdef DSV4_FP8_SIMD
// ---- e4m3 -> fp64 (the patterns of e4m3_decode.hpp). One masked two-source byte shuffle builds 8 patterns
// from 64 prepared codes in any order; the GEMV's weights take the stream decode (Words64).
using detail::Codes64, detail::prepare_codes, detail::Words64, detail::prepare_words, detail::decode_word;
using detail::nan_lo, detail::nan_codes;
inline __mmask8 nan_patterns(__m512d p) {  // lanes of decoded patterns that came from NaN codes
  const __m512i lo_byte = _mm512_set1_epi64(int64_t(0xFEull << 48));
  return _mm512_cmpeq_epi64_mask(_mm512_and_si512(_mm512_castpd_si512(p), lo_byte), lo_byte);
}
inline __m512d decode8(const Codes64& c, __m512i idx) {
  return _mm512_castsi512_pd(_mm512_maskz_permutex2var_epi8(0xC0C0C0C0C0C0C0C0ull, c.lo, idx, c.hi));
}
// Shuffle controls: along_k[j] puts codes 8j..8j+7 in lanes 0..7 (lanes along k); across[t] puts codes t,
// t+8, ..., t+56 in lanes 0..7 (64 codes = 8 rows x 8 k: lanes along the rows); gemv_order[j] puts codes
// gemv_code(j, 0..7) in lanes 0..7; mid_word serves decode_word.
struct ShuffleIdx {
  __m512i along_k[8], across[8], gemv_order[8];
  __m512i mid_word[2] = {detail::mid_word_ctrl(1), detail::mid_word_ctrl(2)};
  ShuffleIdx() {
    for (int j = 0; j < 8; ++j) {
      alignas(64) uint8_t b[3][64] = {};
      for (int q = 0; q < 8; ++q) {
        const int along = 8 * j + q, acr = j + 8 * q, gemv = gemv_code(j, q);
        b[0][8 * q + 6] = uint8_t(along), b[0][8 * q + 7] = uint8_t(64 | along);
        b[1][8 * q + 6] = uint8_t(acr), b[1][8 * q + 7] = uint8_t(64 | acr);
        b[2][8 * q + 6] = uint8_t(gemv), b[2][8 * q + 7] = uint8_t(64 | gemv);
      }
      along_k[j] = _mm512_load_si512(b[0]);
      across[j] = _mm512_load_si512(b[1]);
      gemv_order[j] = _mm512_load_si512(b[2]);
    }
  }
};
const ShuffleIdx& shuffle_idx() {
  static const ShuffleIdx t;
  return t;
}
// Scales: decode8 gives values times 2^-1016. Both operands get rescaled so that every product is a normal
// fp64 (then exact): the GEMV keeps its streamed weights as decoded and takes activations times 2^500
// (products carry 2^-516), the GEMM rescales both operands to their true values.
inline __m512d rescale(__m512d d, double log2) { return _mm512_scalef_pd(d, _mm512_set1_pd(log2)); }
inline __m512d nan8() { return _mm512_set1_pd(std::numeric_limits<double>::quiet_NaN()); }

// k activation codes -> values times 2^log2_extra (NaN codes -> NaN); out[64b + 8j + q] takes code 64b +
// (the code order[j] puts in lane q).
void decode_activations(double* out, const uint8_t* x, int64_t k, const __m512i (&order)[8], double log2_extra) {
  for (int64_t k0 = 0; k0 < k; k0 += 64) {
    const __m512i c = _mm512_loadu_si512(x + k0);
    const Codes64 cd = prepare_codes(c);
    const bool any_nan = nan_codes(c) != 0;
    for (int j = 0; j < 8; ++j) {
      const __m512d p = decode8(cd, order[j]);
      __m512d d = rescale(p, 1016.0 + log2_extra);
      if (any_nan) [[unlikely]] d = _mm512_mask_mov_pd(d, nan_patterns(p), nan8());
      _mm512_store_pd(out + k0 + 8 * j, d);
    }
  }
}

// fp8_gemm's fp32 steps on 8 (row, col) pairs at once: exact block sums -> fp32, × Scale_C, + acc.
inline __m256 fp8_step8(__m256 acc, __m512d blk, __m256 scale) {
  return _mm256_add_ps(acc, _mm256_mul_ps(_mm512_cvtpd_ps(blk), scale));
}

// ---- GEMV (m <= 4; more rows in passes, see kGemvChunkedRows): weights streamed once. A group of 8
// weight rows is split into sub-groups of S rows so that S·M (weight row, activation row) pairs fill the
// 8 accumulators; the 8 block sums come out of one horizontal reduction in lane r·M + mm.
using detail::hsum8;

// One K block of S weight rows x M activation rows: the S·M exact block sums (times 2^-516) in lanes
// r·M + mm. Not inlined: on its own the function keeps its 8 accumulators in registers (inlined into the
// group loop, GCC spilled them and renamed them through copies: m = 4 ran 20% slower).
template <int M, int S>
__attribute__((noinline)) __m512d gemv_block(const uint8_t* const* wr, const uint8_t* prefetch, int64_t k0,
                                             const double (*x)[kGemvMaxK], const ShuffleIdx& t, __mmask8& nan_lanes) {
  __m512d part[8];
  for (int i = 0; i < 8; ++i) part[i] = _mm512_setzero_pd();
  __m512i lo_max = _mm512_setzero_si512();  // NaN check once per block (a byte max is off the FMA pipes)
  for (int h = 0; h < 2; ++h) {
    Words64 c[S];
    for (int r = 0; r < S; ++r) {
      // The next group's 8 rows (8·k contiguous bytes) are fetched 16 lines per block, one per load.
      _mm_prefetch(reinterpret_cast<const char*>(prefetch + (h * S + r) * 64), _MM_HINT_T0);
      const Codes64 cd = prepare_codes(_mm512_loadu_si512(wr[r] + k0 + 64 * h));
      lo_max = _mm512_max_epu8(lo_max, cd.lo);
      c[r] = prepare_words(cd);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      __m512d av[M];
      for (int mm = 0; mm < M; ++mm) av[mm] = _mm512_load_pd(x[mm] + k0 + 64 * h + 8 * j);
#pragma GCC unroll 8
      for (int r = 0; r < S; ++r) {
        const __m512d d = decode_word(c[r], j, t.mid_word);
        for (int mm = 0; mm < M; ++mm) part[r * M + mm] = _mm512_fmadd_pd(d, av[mm], part[r * M + mm]);
      }
    }
  }
  if (nan_lo(lo_max)) [[unlikely]]
    for (int r = 0; r < S; ++r)
      if (nan_codes(_mm512_loadu_si512(wr[r] + k0)) | nan_codes(_mm512_loadu_si512(wr[r] + k0 + 64)))
        nan_lanes |= __mmask8(((1u << M) - 1) << (r * M));
  return hsum8(part);
}

template <int M>
void fp8_gemv(const Fp8Args& a) {
  constexpr int S = M == 1 ? 8 : M == 2 ? 4 : 2, G = 8 / S;
  const ShuffleIdx& t = shuffle_idx();
  const int64_t groups = (a.n + 7) / 8;
  detail::parallel_region(groups, [&](detail::WorkShare& ws) {
    alignas(64) double x[M][kGemvMaxK];
    for (int mm = 0; mm < M; ++mm) decode_activations(x[mm], a.xq + mm * a.k, a.k, t.gemv_order, 500.0);
    ws.for_each([&](int64_t g) {
      const int64_t n0 = 8 * g;
      const uint8_t* wr[8];
      for (int r = 0; r < 8; ++r) wr[r] = a.w + std::min<int64_t>(n0 + r, a.n - 1) * a.k;  // tail: recompute
      if constexpr (M == 1) detail::prefetch_pages_ahead(wr[0], 8 * a.k);
      __m256 acc[G];
      for (int sg = 0; sg < G; ++sg) acc[sg] = _mm256_setzero_ps();
      for (int64_t kb = 0; kb < a.kblocks; ++kb) {
        // Scale_C of lane r·M + mm: sa[mm]·sb (the 8 rows share one 128-row scale block). Lanes past S·M
        // (M = 3) are never stored.
        alignas(32) float sa[8] = {};
        for (int i = 0; i < S * M; ++i) sa[i] = a.sa(i % M, kb);
        const __m256 scale = _mm256_mul_ps(_mm256_load_ps(sa), _mm256_set1_ps(a.sb(n0, kb)));
        for (int sg = 0; sg < G; ++sg) {
          __mmask8 nan_lanes = 0;
          const __m512d sums = gemv_block<M, S>(wr + sg * S, wr[0] + 8 * a.k + (kb * 16 + 2 * sg * S) * 64,
                                                kb * kBlk, x, t, nan_lanes);
          __m512d blk = rescale(sums, 516.0);  // exact: the true block sums
          if (nan_lanes) [[unlikely]] blk = _mm512_mask_mov_pd(blk, nan_lanes, nan8());
          acc[sg] = fp8_step8(acc[sg], blk, scale);
        }
      }
      for (int sg = 0; sg < G; ++sg) {
        alignas(32) float o[8];
        _mm256_store_ps(o, acc[sg]);
        a.store_gemv_lanes(o, n0 + sg * S, S, M);
      }
    });
  });
}

// ---- GEMM: tiles of up to kMc activation rows x kNt weight rows. Per K block the tile decodes its
// activations once (rows of true values, broadcast from memory) and its weights once, transposed into a
// [128][kNt] panel (lanes along n); kMr x kNt register micro-tiles accumulate outer products, so every
// accumulator lane is one (row, col) block sum and no horizontal reduction is needed.
constexpr int kMr = 4, kNt = 32, kMc = 128;
static_assert(kMc % kMr == 0 && kNt % 8 == 0, "micro-tiles must fill a tile");

void fp8_gemm_tile(const Fp8Args& a, int64_t m0, int64_t n0, const ShuffleIdx& t) {
  const int mv = int(std::min<int64_t>(kMc, a.m - m0)), nv = int(std::min<int64_t>(kNt, a.n - n0));
  const int mr = (mv + kMr - 1) / kMr * kMr;  // rows past mv recompute the last row and are dropped
  alignas(64) double A[kMc][kBlk];
  alignas(64) double B[kBlk][kNt];
  alignas(64) float acc[kMc][kNt];
  alignas(32) float sb[kNt];
  for (int i = 0; i < mr; ++i) std::fill(acc[i], acc[i] + kNt, 0.f);
  const uint8_t* wrow[kNt];
  for (int j = 0; j < kNt; ++j) wrow[j] = a.w + (n0 + std::min(j, nv - 1)) * a.k;  // tail: recompute
  for (int64_t kb = 0; kb < a.kblocks; ++kb) {
    for (int i = 0; i < mr; ++i) {
      const int64_t row = m0 + std::min(i, mv - 1);
      decode_activations(A[i], a.xq + row * a.k + kb * kBlk, kBlk, t.along_k, 0.0);
    }
    // Weights: 8 rows x 8 k gathered into one vector, then 8 shuffles give the 8 k-slices (lanes = rows).
    __mmask8 nan_cols[kNt / 8][16] = {};
    for (int jg = 0; jg < kNt / 8; ++jg) {
      const __m512i offs = _mm512_setr_epi64(wrow[8 * jg] - a.w, wrow[8 * jg + 1] - a.w, wrow[8 * jg + 2] - a.w,
                                             wrow[8 * jg + 3] - a.w, wrow[8 * jg + 4] - a.w, wrow[8 * jg + 5] - a.w,
                                             wrow[8 * jg + 6] - a.w, wrow[8 * jg + 7] - a.w);
      for (int kc = 0; kc < kBlk / 8; ++kc) {
        const __m512i raw = _mm512_i64gather_epi64(offs, a.w + kb * kBlk + 8 * kc, 1);
        const Codes64 c = prepare_codes(raw);
        if (const __mmask64 nan = nan_codes(raw)) [[unlikely]]
          for (int r = 0; r < 8; ++r) nan_cols[jg][kc] |= __mmask8(((nan >> (8 * r)) & 0xff) != 0) << r;
        for (int kk = 0; kk < 8; ++kk) _mm512_store_pd(&B[8 * kc + kk][8 * jg], rescale(decode8(c, t.across[kk]), 1016.0));
      }
    }
    __mmask8 nan_any[kNt / 8] = {};
    for (int jg = 0; jg < kNt / 8; ++jg)
      for (int kc = 0; kc < kBlk / 8; ++kc) nan_any[jg] |= nan_cols[jg][kc];
    for (int j = 0; j < kNt; ++j) sb[j] = a.sb(n0 + std::min(j, nv - 1), kb);
    for (int i0 = 0; i0 < mr; i0 += kMr) {
      __m512d c[kMr][kNt / 8];
      for (int i = 0; i < kMr; ++i)
        for (int jg = 0; jg < kNt / 8; ++jg) c[i][jg] = _mm512_setzero_pd();
#pragma GCC unroll 4
      for (int kk = 0; kk < kBlk; ++kk) {
        __m512d b[kNt / 8];
        for (int jg = 0; jg < kNt / 8; ++jg) b[jg] = _mm512_load_pd(&B[kk][8 * jg]);
        for (int i = 0; i < kMr; ++i) {
          const __m512d av = _mm512_set1_pd(A[i0 + i][kk]);
          for (int jg = 0; jg < kNt / 8; ++jg) c[i][jg] = _mm512_fmadd_pd(av, b[jg], c[i][jg]);
        }
      }
      for (int i = 0; i < kMr; ++i) {
        const __m256 sa = _mm256_set1_ps(a.sa(m0 + std::min(i0 + i, mv - 1), kb));
        for (int jg = 0; jg < kNt / 8; ++jg) {
          __m512d blk = c[i][jg];
          if (nan_any[jg]) [[unlikely]] blk = _mm512_mask_mov_pd(blk, nan_any[jg], nan8());
          float* o = &acc[i0 + i][8 * jg];
          _mm256_store_ps(o, fp8_step8(_mm256_load_ps(o), blk, _mm256_mul_ps(sa, _mm256_load_ps(sb + 8 * jg))));
        }
      }
    }
  }
  for (int i = 0; i < mv; ++i)
    for (int j = 0; j < nv; ++j) a.y[(m0 + i) * a.n + n0 + j] = f32_to_bf16(acc[i][j]);  // fp8_gemm: bf16 out
}

void fp8_gemm(const Fp8Args& a) {
  const ShuffleIdx& t = shuffle_idx();
  const int64_t nt = (a.n + kNt - 1) / kNt, mt = (a.m + kMc - 1) / kMc;
  detail::parallel_for(nt * mt, [&](int64_t tile) { fp8_gemm_tile(a, tile % mt * kMc, tile / mt * kNt, t); });
}

bool fp8_gemv_fits(const Fp8Args& a) { return a.m <= detail::kGemvChunkedRows && a.k <= kGemvMaxK; }

void fp8_gemv_any(const Fp8Args& a) {
  detail::gemv_in_row_chunks(a, [](auto rows, const Fp8Args& c) { fp8_gemv<rows()>(c); });
}
#endif

Fp8Args make_args(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                  std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  assert(k % kBlk == 0);
  const int64_t kblocks = k / kBlk;
  assert(int64_t(y.size()) >= m * n && int64_t(xq.size()) >= m * k && int64_t(xs.size()) >= m * kblocks);
  assert(int64_t(w.size()) >= n * k && int64_t(ws.size()) >= ((n + kBlk - 1) / kBlk) * kblocks);
  return {m, n, k, kblocks, xq.data(), xs.data(), w.data(), ws.data(), y.data()};
}

enum class Path { Auto, Gemv, Gemm };

void run(const Fp8Args& a, Path path) {
  if (a.m <= 0 || a.n <= 0) return;
#ifdef DSV4_FP8_SIMD
  if (path != Path::Gemm && fp8_gemv_fits(a)) fp8_gemv_any(a);
  else fp8_gemm(a);
#elif defined(DSV4_FP8_AVX2)
  (void)path;
  if (a.k <= kGemvMaxK) detail::gemv_in_row_chunks(a, [](auto rows, const Fp8Args& c) { fp8_gemv_avx2<rows()>(c); });
  else fp8_portable(a);
#else
  (void)path;
  fp8_portable(a);
#endif
}

}  // namespace

void linear_fp8(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  run(make_args(y, xq, xs, w, ws, m, n, k), Path::Auto);
}

void linear_fp8_gemv(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                     std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  assert(m <= detail::kGemvChunkedRows);
  run(make_args(y, xq, xs, w, ws, m, n, k), Path::Gemv);
}

void linear_fp8_gemm(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                     std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  run(make_args(y, xq, xs, w, ws, m, n, k), Path::Gemm);
}

}  // namespace dsv4::kernels
