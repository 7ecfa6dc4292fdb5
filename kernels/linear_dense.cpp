// BF16 linears (weights_proj, the grouped wo_a einsum on FP8-stored weights): exact products, fp64 sums in the
// canonical order of linear_core.hpp, one rounding (via fp32, as the reference's bf16 GEMMs).
#include <bit>
#include <cassert>
#include <cstring>
#include <limits>
#include <type_traits>

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
  int64_t row_bytes() const { return k * int64_t(sizeof(bf16)); }
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
  __m256d get_b4(int64_t r, int64_t kb, int e) const { return bf16x4_to_f64(w + r * k + kb * kBlk + 4 * e); }
#endif
  void store(int64_t r, int64_t c, double acc) const {
    y[r * ldy + c] = f64_to_bf16_via_f32(acc);  // bf16 GEMM: exact sum -> fp32 -> bf16
  }
};

using Bf16Problem = DenseProblem<bf16, bf16>;

// e4m3 code -> its value as fp64 (NaN codes -> NaN); and, for the byte-shuffle decode, the two top bytes of
// that fp64 for the 128 non-negative codes (an e4m3 value has 4 significant bits, so the other 6 bytes are
// zero; e4m3 subnormals are fp64 normals).
struct E4m3F64 {
  alignas(64) double value[256];
  alignas(64) uint8_t byte6[128], byte7[128];
};
const E4m3F64& e4m3_f64() {
  static const E4m3F64 t = [] {
    E4m3F64 r{};
    for (int c = 0; c < 256; ++c) r.value[c] = e4m3_to_f32(uint8_t(c));
    for (int c = 0; c < 128; ++c) {
      const uint64_t b = std::bit_cast<uint64_t>(r.value[c]);
      r.byte6[c] = uint8_t(b >> 48), r.byte7[c] = uint8_t(b >> 56);
    }
    return r;
  }();
  return t;
}

// e8m0 byte -> 2^(b-127) as fp64 (0xFF is NaN).
inline double e8m0_to_f64(uint8_t b) {
  return b == 0xff ? std::numeric_limits<double>::quiet_NaN() : std::bit_cast<double>(uint64_t(b + 1023 - 127) << 52);
}

// bf16 activations x FP8 weights with 128x128 e8m0 block scales, in the BF16 linear's numerics: the weight is
// its dequantised value e4m3 x 2^(s-127), exact in fp64 (and in bf16, which the converter checks), so this is
// Bf16Problem on the dequantised weight, without storing it at twice the bytes.
struct Fp8wProblem {
  int64_t m, n, k;
  const bf16* x;        // [m, k], row stride ldx
  int64_t ldx;
  const uint8_t* w;     // e4m3 [n, k], row stride k
  const uint8_t* ws;    // e8m0 scales of the whole weight: [ceil(rows / 128), k / 128]
  int64_t row0;         // row of w[0] in the whole weight (a group's first row)
  bf16* y;              // [m, n], row stride ldy
  int64_t ldy;
  const E4m3F64* t = &e4m3_f64();
  int64_t row_bytes() const { return k; }
  const char* row_address(int64_t r) const { return reinterpret_cast<const char*>(w + r * k); }
  double block_scale(int64_t r, int64_t kb) const { return e8m0_to_f64(ws[(row0 + r) / kBlk * (k / kBlk) + kb]); }
  void decode_a(int64_t r, int64_t kb, double* out) const { decode_bf16_128(x + r * ldx + kb * kBlk, out); }
  void decode_b(int64_t r, int64_t kb, double* out) const {  // the SIMD decodes below, times the block scale
    const double s = block_scale(r, kb);
#ifdef __AVX512F__
    for (int h = 0; h < 2; ++h) {
      const B64 b = load_b64(r, kb, h);
      for (int q = 0; q < 8; ++q) _mm512_store_pd(out + 64 * h + 8 * q, _mm512_mul_pd(get_b8(b, q), _mm512_set1_pd(s)));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    for (int e = 0; e < kBlk / 4; ++e) _mm256_store_pd(out + 4 * e, _mm256_mul_pd(get_b4(r, kb, e), _mm256_set1_pd(s)));
#else
    const uint8_t* c = w + r * k + kb * kBlk;
    for (int i = 0; i < kBlk; ++i) out[i] = t->value[c[i]] * s;
#endif
  }
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
  // The two top bytes of each code's fp64 by a 128-entry table lookup (the sign bit ORed back), then per 8
  // codes one byte shuffle into the top of 8 qwords: natural order, as the canonical lanes need.
  struct B64 {
    __m512i b6, b7;
  };
  B64 load_b64(int64_t r, int64_t kb, int h) const {
    const __m512i c = _mm512_loadu_si512(w + r * k + kb * kBlk + 64 * h);
    const auto tab = [](const uint8_t* p, __m512i i) {
      return _mm512_permutex2var_epi8(_mm512_load_si512(p), i, _mm512_load_si512(p + 64));
    };
    return {tab(t->byte6, c),
            _mm512_or_si512(tab(t->byte7, c), _mm512_and_si512(c, _mm512_set1_epi8(char(0x80))))};
  }
  static __m512d get_b8(const B64& b, int q) {
    // Qword l takes byte 8q + l of b6 into its byte 6 and of b7 (indices 64..127) into its byte 7.
    const __m512i base = _mm512_set_epi64(0x4707, 0x4606, 0x4505, 0x4404, 0x4303, 0x4202, 0x4101, 0x4000);
    const __m512i idx = _mm512_slli_epi64(_mm512_add_epi64(base, _mm512_set1_epi64(0x101 * 8 * q)), 48);
    return _mm512_castsi512_pd(_mm512_maskz_permutex2var_epi8(0xC0C0C0C0C0C0C0C0ull, b.b6, idx, b.b7));
  }
#elif defined(__AVX512F__)
  using B64 = const uint8_t*;
  B64 load_b64(int64_t r, int64_t kb, int h) const { return w + r * k + kb * kBlk + 64 * h; }
  __m512d get_b8(B64 b, int q) const {
    return _mm512_i64gather_pd(_mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 8 * q))),
                               t->value, 8);
  }
#elif defined(__AVX2__) && defined(__FMA__)
  __m256d get_b4(int64_t r, int64_t kb, int e) const {
    int32_t c4;
    std::memcpy(&c4, w + r * k + kb * kBlk + 4 * e, 4);
    return _mm256_i32gather_pd(t->value, _mm_cvtepu8_epi32(_mm_cvtsi32_si128(c4)), 8);
  }
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
