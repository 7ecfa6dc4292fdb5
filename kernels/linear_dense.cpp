// BF16 linears (weights_proj, the grouped wo_a einsum on FP8-stored weights): exact products, fp64 sums in the
// canonical order of linear_core.hpp, one rounding (via fp32, as the reference's bf16 GEMMs).
#include <bit>
#include <cassert>
#include <limits>
#include <type_traits>

#include "kernels/e4m3_decode.hpp"
#include "kernels/exact.hpp"  // f64_to_bf16: one rounding of an fp64 value
#include "kernels/linear.hpp"
#include "kernels/linear_core.hpp"


namespace dsv4::kernels {
namespace {

using detail::kBlk;

#ifdef __AVX512F__
// 64 bf16 -> 8 vectors of fp64 (exact), natural order.
inline void decode_bf16_64(const bf16* p, __m512d d[8]) {
  for (int q = 0; q < 4; ++q) {
    const __m512 f = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 * q))), 16));
    d[2 * q] = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    d[2 * q + 1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
  }
}
inline void decode_bf16_128(const bf16* p, double* out) {
  __m512d d[8];
  for (int h = 0; h < 2; ++h) {
    decode_bf16_64(p + 64 * h, d);
    for (int j = 0; j < 8; ++j) _mm512_store_pd(out + 64 * h + 8 * j, d[j]);
  }
}
#elif defined(__AVX2__) && defined(__FMA__)
// 4 bf16 -> fp64 (exact).
inline __m256d bf16x4_to_f64(const bf16* p) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(v), 16)));
}
inline void decode_bf16_128(const bf16* p, double* out) {
  for (int i = 0; i < kBlk; i += 4) _mm256_store_pd(out + i, bf16x4_to_f64(p + i));
}
#else
inline void decode_bf16_128(const bf16* p, double* out) {
  for (int i = 0; i < kBlk; ++i) out[i] = bf16_to_f32(p[i]);
}
#endif

// bf16 x bf16 with bf16 [n, k] weights, fp64 accumulation (exact sum, one rounding).
template <class X, class Y>
struct DenseProblem {
  int64_t m, n, k;
  const X* x;     // [m, k], row stride ldx (bf16 or fp32)
  int64_t ldx;
  const bf16* w;  // bf16 [n, k], row stride k
  Y* y;           // [m, n], row stride ldy (bf16 or fp32)
  int64_t ldy;
  static constexpr int kWeightBytes = sizeof(bf16);
  const char* row_address(int64_t r) const { return reinterpret_cast<const char*>(w + r * k); }
  void decode_a(int64_t r, int64_t kb, double* out) const {
    decode_bf16_128(x + r * ldx + kb * kBlk, out);
  }
  void decode_b(int64_t r, int64_t kb, double* out) const { decode_bf16_128(w + r * k + kb * kBlk, out); }
#ifdef __AVX512F__
  using B64 = const bf16*;
  B64 load_b64(int64_t r, int64_t kb, int h) const { return w + r * k + kb * kBlk + 64 * h; }
  static __m512d get_b8(B64 b, int q) {  // 8 bf16 -> fp64 (exact)
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 8 * q));
    return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)));
  }
#elif defined(__AVX2__) && defined(__FMA__)
  using B32 = const bf16*;
  B32 load_b32(int64_t r, int64_t kb, int c) const { return w + r * k + kb * kBlk + 32 * c; }
  static __m256d get_b4(B32 b, int e) { return bf16x4_to_f64(b + 4 * e); }
#endif
  void store(int64_t r, int64_t c, double acc) const {
    y[r * ldy + c] = f64_to_bf16_via_f32(acc);  // bf16 GEMM: exact sum -> fp32 -> bf16
  }
};

using Bf16Problem = DenseProblem<bf16, bf16>;

// The FP8-weight problem computes in a scaled domain so that the AVX-512 weight decode can be a few shifts,
// ANDs and byte shuffles: a decoded weight is its e4m3 value times 2^-1016 (the code's bits placed in the top
// of an fp64: e4m3 subnormals become fp64 subnormals of the same scale), an activation is its bf16 value times
// 2^500, and each block sum is multiplied by 2^(516 + e) for the block scale 2^e. Every product is then a
// normal fp64 (|x| >= 2^-133, |w| >= 2^-9 give >= 2^-658; at most 2^128 * 448 * 2^-516) and exact, so every
// fp64 rounding of the canonical sum happens at the same relative place as on the true values: the same bits.
inline constexpr double kWeightScale = 0x1p-1016, kActScale = 0x1p500;
inline constexpr int kBlockScaleLog2 = 516;  // = 1016 - 500

// e4m3 code -> value x 2^-1016 (NaN codes -> NaN): the portable decode, and the gather of AVX-512 without VBMI.
struct E4m3Scaled {
  alignas(64) double value[256];
};
const E4m3Scaled& e4m3_scaled() {
  static const E4m3Scaled t = [] {
    E4m3Scaled r{};
    for (int c = 0; c < 256; ++c) r.value[c] = double(e4m3_to_f32(uint8_t(c))) * kWeightScale;
    return r;
  }();
  return t;
}

// Whether 128 e4m3 codes hold a NaN code (S.1111.111). The SIMD decodes turn those into finite values, so
// the block's scale becomes NaN instead: the outputs it reaches are NaN either way.
inline bool has_nan_code(const uint8_t* p) {
#if defined(__AVX512BW__)
  const __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + 64);
  return detail::nan_lo(_mm512_max_epu8(_mm512_add_epi8(a, a), _mm512_add_epi8(b, b))) != 0;
#elif defined(__AVX2__)
  __m256i lo_max = _mm256_setzero_si256();
  for (int i = 0; i < kBlk; i += 32) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    lo_max = _mm256_max_epu8(lo_max, _mm256_add_epi8(c, c));
  }
  return detail::has_nan_lo(lo_max);
#else
  bool nan = false;
  for (int i = 0; i < kBlk; ++i) nan |= (p[i] & 0x7f) == 0x7f;
  return nan;
#endif
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
// The AVX-512 decode streams the weights as the FP8 GEMV does (e4m3_decode.hpp). Its order puts code
// gemv_code(j, l) in lane l of decode j; one byte permute of each 64 codes first makes that code 8j + l, the
// natural order that the canonical lanes need.
struct Fp8wShuffles {
  __m512i order, mid_word[2] = {detail::mid_word_ctrl(1), detail::mid_word_ctrl(2)};
  Fp8wShuffles() {
    alignas(64) uint8_t b[64];
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 8; ++l) b[detail::gemv_code(j, l)] = uint8_t(8 * j + l);
    order = _mm512_load_si512(b);
  }
};
const Fp8wShuffles& fp8w_shuffles() {
  static const Fp8wShuffles t;
  return t;
}
#elif defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
// AVX2: the same with Words32, whose order puts code gemv_code(j, l) in lane l (< 4) of decode j; code 4j + l
// is wanted there. No byte permute crosses the 128-bit halves, so each half takes an in-lane shuffle of the
// codes from its own half and one from the other (the halves exchanged), ORed.
struct Fp8wShuffles {
  __m256i same_half, other_half, mid_word[2] = {detail::mid_word_ctrl32(1), detail::mid_word_ctrl32(2)};
  Fp8wShuffles() {
    alignas(32) int8_t b[2][32];
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 4; ++l) {
        const int to = detail::gemv_code(j, l), from = 4 * j + l, same = to / 16 == from / 16;
        b[0][to] = same ? int8_t(from % 16) : int8_t(-128);
        b[1][to] = same ? int8_t(-128) : int8_t(from % 16);
      }
    same_half = _mm256_load_si256(reinterpret_cast<const __m256i*>(b[0]));
    other_half = _mm256_load_si256(reinterpret_cast<const __m256i*>(b[1]));
  }
};
const Fp8wShuffles& fp8w_shuffles() {
  static const Fp8wShuffles t;
  return t;
}
#endif

// bf16 activations x FP8 weights with 128x128 e8m0 block scales, in the BF16 linear's numerics: the weight is
// its dequantised value e4m3 x 2^(s-127), exact in fp64 (and in bf16, which the converter checks), so this is
// Bf16Problem on the dequantised weight, without storing it at twice the bytes. Values are scaled (above).
struct Fp8wProblem {
  int64_t m, n, k;
  const bf16* x;        // [m, k], row stride ldx
  int64_t ldx;
  const uint8_t* w;     // e4m3 [n, k], row stride k
  const uint8_t* ws;    // e8m0 scales of the whole weight: [ceil(rows / 128), k / 128]
  int64_t row0;         // row of w[0] in the whole weight (a group's first row)
  bf16* y;              // [m, n], row stride ldy
  int64_t ldy;
  const E4m3Scaled* t = &e4m3_scaled();
#if (defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)) || \
    (defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__))
  const Fp8wShuffles* sh = &fp8w_shuffles();
#endif
  static constexpr int kWeightBytes = 1;
  const char* row_address(int64_t r) const { return reinterpret_cast<const char*>(w + r * k); }
  // 2^(516 + s - 127), or NaN for the scale byte 0xFF or a NaN code in the block.
  double block_scale(int64_t r, int64_t kb) const {
    const uint8_t s = ws[(row0 + r) / kBlk * (k / kBlk) + kb];
    if (s == 0xff || has_nan_code(w + r * k + kb * kBlk)) return std::numeric_limits<double>::quiet_NaN();
    return std::bit_cast<double>(uint64_t(s - 127 + kBlockScaleLog2 + 1023) << 52);
  }
  void decode_a(int64_t r, int64_t kb, double* out) const {
    decode_bf16_128(x + r * ldx + kb * kBlk, out);
    for (int i = 0; i < kBlk; ++i) out[i] *= kActScale;
  }
  void decode_b(int64_t r, int64_t kb, double* out) const {  // the decodes below, times the block scale
    const double s = block_scale(r, kb);
#ifdef __AVX512F__
    for (int h = 0; h < 2; ++h) {
      const B64 b = load_b64(r, kb, h);
      for (int q = 0; q < 8; ++q) _mm512_store_pd(out + 64 * h + 8 * q, _mm512_mul_pd(get_b8(b, q), _mm512_set1_pd(s)));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    for (int c = 0; c < kBlk / 32; ++c) {
      const B32 b = load_b32(r, kb, c);
      for (int e = 0; e < 8; ++e) _mm256_store_pd(out + 32 * c + 4 * e, _mm256_mul_pd(get_b4(b, e), _mm256_set1_pd(s)));
    }
#else
    const uint8_t* c = w + r * k + kb * kBlk;
    for (int i = 0; i < kBlk; ++i) out[i] = t->value[c[i]] * s;
#endif
  }
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
  using B64 = detail::Words64;
  B64 load_b64(int64_t r, int64_t kb, int h) const {
    const __m512i c = _mm512_loadu_si512(w + r * k + kb * kBlk + 64 * h);
    return detail::prepare_words(detail::prepare_codes(_mm512_permutexvar_epi8(sh->order, c)));
  }
  __m512d get_b8(const B64& b, int q) const { return detail::decode_word(b, q, sh->mid_word); }
#elif defined(__AVX512F__)
  using B64 = const uint8_t*;
  B64 load_b64(int64_t r, int64_t kb, int h) const { return w + r * k + kb * kBlk + 64 * h; }
  __m512d get_b8(B64 b, int q) const {
    return _mm512_i64gather_pd(_mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 8 * q))),
                               t->value, 8);
  }
#elif defined(__AVX2__) && defined(__FMA__)
  using B32 = detail::Words32;
  B32 load_b32(int64_t r, int64_t kb, int c) const {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * k + kb * kBlk + 32 * c));
    const __m256i swapped = _mm256_permute4x64_epi64(v, 0x4E);  // the two 128-bit halves exchanged
    return detail::prepare_words32(
        _mm256_or_si256(_mm256_shuffle_epi8(v, sh->same_half), _mm256_shuffle_epi8(swapped, sh->other_half)));
  }
  __m256d get_b4(const B32& b, int e) const { return detail::decode_word32(b, e, sh->mid_word); }
#endif
  void store(int64_t r, int64_t c, double acc) const { y[r * ldy + c] = f64_to_bf16_via_f32(acc); }
};

using Path = LinearPath;

template <class Prob>
void run(const Prob& p, Path path) {
  assert(p.k % kBlk == 0);
  if (p.m <= 0 || p.n <= 0) return;
  if (path == Path::kGemm) detail::gemm_engine(p);
  else {
    assert(path == Path::kAuto || p.m <= detail::kGemvRows);
    detail::run_linear(p);
  }
}

void bf16_linear(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w, int64_t m, int64_t n,
                 int64_t k, Path path) {
  assert(int64_t(y.size()) >= m * n && int64_t(x.size()) >= m * k && int64_t(w.size()) >= n * k);
  run(Bf16Problem{m, n, k, x.data(), k, w.data(), y.data(), n}, path);
}

}  // namespace

void linear_bf16(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w, int64_t m, int64_t n,
                 int64_t k) {
  bf16_linear(y, x, w, m, n, k, Path::kAuto);
}
void linear_bf16_gemv(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w, int64_t m,
                      int64_t n, int64_t k) {
  bf16_linear(y, x, w, m, n, k, Path::kGemv);
}
void linear_bf16_gemm(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w, int64_t m,
                      int64_t n, int64_t k) {
  bf16_linear(y, x, w, m, n, k, Path::kGemm);
}

void linear_bf16_fp8w_grouped(std::span<bf16> y, std::span<const bf16> x, std::span<const uint8_t> w,
                             std::span<const uint8_t> ws, int64_t m, int64_t groups, int64_t n, int64_t k,
                             LinearPath path) {
  assert(int64_t(y.size()) >= m * groups * n && int64_t(x.size()) >= m * groups * k &&
         int64_t(w.size()) >= groups * n * k && int64_t(ws.size()) >= (groups * n + kBlk - 1) / kBlk * (k / kBlk));
  for (int64_t g = 0; g < groups; ++g)  // einsum "bsgd,grd->bsgr": one independent linear per group
    run(Fp8wProblem{m, n, k, x.data() + g * k, groups * k, w.data() + g * n * k, ws.data(), g * n, y.data() + g * n,
                    groups * n},
        Path(path));
}

}  // namespace dsv4::kernels
