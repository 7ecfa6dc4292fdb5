// Internal to kernels/linear_*.cpp: the AVX-512 and AVX2 e4m3 -> fp64 stream decodes of weight rows, shared by
// the FP8 GEMVs (linear_fp8.cpp) and the FP8-weight BF16 linear (wo_a, linear_dense.cpp). Not a public header.
//
// With byte 7 of an fp64 pattern = the sign and byte 6 = the magnitude code << 1, the fp64 exponent field
// is the e4m3 exponent field and the top 3 mantissa bits are the e4m3 ones: the pattern holds the code's
// value times 2^-1016 exactly (subnormal codes land on fp64 subnormals with the same scale). NaN codes
// decode to finite patterns: callers check for them separately.
#pragma once

namespace dsv4::kernels::detail {

// The stream decode's order (Words64 below): in each 64 codes, decode j (0..7) puts code gemv_code(j, q) in
// lane q (AVX2: Words32, the first 32 codes and lanes q < 4).
inline constexpr int gemv_code(int j, int q) { return 16 * (q / 2) + 8 * (j / 4) + 4 * (q % 2) + j % 4; }

}  // namespace dsv4::kernels::detail

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>
#endif

// NaN codes S.1111.111 are the codes whose lo byte (code << 1: the sign shifted out) is 0xfe; every other
// code's lo is smaller. The stream decodes build lo anyway, and a byte max over many lo vectors checks them all
// at once. act_quant never makes NaN codes; weights could hold them.
#if defined(__AVX512BW__)
namespace dsv4::kernels::detail {
inline __mmask64 nan_lo(__m512i lo) { return _mm512_cmpge_epu8_mask(lo, _mm512_set1_epi8(char(0xfe))); }
inline __mmask64 nan_codes(__m512i c) { return nan_lo(_mm512_add_epi8(c, c)); }
}  // namespace dsv4::kernels::detail
#endif
#ifdef __AVX2__
namespace dsv4::kernels::detail {
inline bool has_nan_lo(__m256i lo) {
  return _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, _mm256_set1_epi8(char(0xfe)))) != 0;
}
}  // namespace dsv4::kernels::detail
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
namespace dsv4::kernels::detail {

struct Codes64 {  // 64 prepared codes: lo = code << 1, hi = sign
  __m512i lo, hi;
};
inline Codes64 prepare_codes(__m512i c) {
  return {_mm512_add_epi8(c, c), _mm512_and_si512(c, _mm512_set1_epi8(char(0x80)))};
}

// lo and hi interleaved into 16-bit words (the top 16 bits of the fp64 patterns) by two in-lane unpacks per
// 64 codes. A word that already sits at the top of its qword is cut out with an AND, one at the bottom is
// shifted up: neither is a cross-lane shuffle, which on this class of core competes with the FMAs for the
// same pipes (an FMA + shuffle pair takes 0.79 cycles, an FMA + shift or AND pair 0.52-0.54). Only the two
// middle words of each qword take a byte shuffle. So 64 codes cost 2 unpacks, 2 ANDs, 2 shifts and 4
// shuffles instead of 2 unpacks and 8 shuffles, in this order:
//   Words64::w[u], u = 0, 1: word i of qword q (q = 0..7, i = 0..3) = code 16(q/2) + 8u + 4(q%2) + i;
//   decode j = 4u + i gives lane q that code (gemv_code).
struct Words64 {
  __m512i w[2];
};
inline Words64 prepare_words(const Codes64& cd) {
  return {{_mm512_unpacklo_epi8(cd.lo, cd.hi), _mm512_unpackhi_epi8(cd.lo, cd.hi)}};
}
// Byte shuffle control moving word i (1 or 2) of each qword to its top, zeroing the rest (masked below).
inline __m512i mid_word_ctrl(int i) {
  alignas(64) uint8_t b[64] = {};
  for (int q = 0; q < 8; ++q) b[8 * q + 6] = uint8_t(2 * (4 * q + i)), b[8 * q + 7] = uint8_t(2 * (4 * q + i) + 1);
  return _mm512_load_si512(b);
}
// Decode j (0..7) of a Words64: the fp64 patterns of codes gemv_code(j, 0..7); mid = {mid_word_ctrl(1),
// mid_word_ctrl(2)}. Called with j a constant of an unrolled loop, so that one branch remains.
inline __m512d decode_word(const Words64& c, int j, const __m512i (&mid)[2]) {
  const __m512i w = c.w[j / 4];
  const int i = j % 4;
  if (i == 3) return _mm512_castsi512_pd(_mm512_and_si512(w, _mm512_set1_epi64(int64_t(0xFFFFull << 48))));
  if (i == 0) return _mm512_castsi512_pd(_mm512_slli_epi64(w, 48));
  return _mm512_castsi512_pd(_mm512_maskz_permutexvar_epi8(0xC0C0C0C0C0C0C0C0ull, mid[i - 1], w));
}

}  // namespace dsv4::kernels::detail
#endif

#ifdef __AVX2__
namespace dsv4::kernels::detail {

// The same decode of 32 codes in 4-lane vectors: the middle words take an in-lane byte shuffle. lo (= code
// << 1) is kept for NaN checks: NaN codes have lo = 0xfe, every other code less.
struct Words32 {
  __m256i w[2], lo;
};
inline Words32 prepare_words32(__m256i c) {
  const __m256i lo = _mm256_add_epi8(c, c), hi = _mm256_and_si256(c, _mm256_set1_epi8(char(0x80)));
  return {{_mm256_unpacklo_epi8(lo, hi), _mm256_unpackhi_epi8(lo, hi)}, lo};
}
// In-lane byte shuffle moving word i (1 or 2) of each qword to its top, zeroing the rest.
inline __m256i mid_word_ctrl32(int i) {
  alignas(32) int8_t b[32];
  for (int t = 0; t < 32; ++t) {
    const int src = t / 8 % 2 * 8 + 2 * i;  // word i of this qword, within the 128-bit lane
    b[t] = t % 8 == 6 ? int8_t(src) : t % 8 == 7 ? int8_t(src + 1) : -128;
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
}
// Decode j (0..7): lanes q = 0..3 get codes gemv_code(j, q); mid = {mid_word_ctrl32(1), mid_word_ctrl32(2)}.
// j is a constant of an unrolled loop.
inline __m256d decode_word32(const Words32& c, int j, const __m256i (&mid)[2]) {
  const __m256i w = c.w[j / 4];
  const int i = j % 4;
  if (i == 3) return _mm256_castsi256_pd(_mm256_and_si256(w, _mm256_set1_epi64x(int64_t(0xFFFFull << 48))));
  if (i == 0) return _mm256_castsi256_pd(_mm256_slli_epi64(w, 48));
  return _mm256_castsi256_pd(_mm256_shuffle_epi8(w, mid[i - 1]));
}

}  // namespace dsv4::kernels::detail
#endif
