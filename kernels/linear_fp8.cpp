// FP8 linear (kernel.py fp8_gemm): e4m3 activations x e4m3 weights, exact 128-blocks in fp64.
#include <array>
#include <bit>
#include <cassert>
#include <limits>

#include "kernels/linear.hpp"
#include "kernels/linear_core.hpp"


namespace dsv4::kernels {
namespace {

using detail::kBlk;

// e4m3 code -> fp64 bit pattern. Every e4m3 value has <= 4 significant bits, so its fp64 pattern
// is zero below bit 48: the top two bytes (hi: sign+exponent, lo: exponent+mantissa) say it all.
struct E4m3Bytes {
  std::array<uint8_t, 128> hi{}, lo{};  // indexed by the magnitude code (c & 0x7f)
};
constexpr E4m3Bytes make_e4m3_bytes() {
  E4m3Bytes t;
  for (int c = 0; c < 128; ++c) {
    const uint64_t bits = std::bit_cast<uint64_t>(double(e4m3_decode_scalar(uint8_t(c))));
    t.hi[c] = uint8_t(bits >> 56);
    t.lo[c] = uint8_t(bits >> 48);
  }
  return t;
}
constexpr E4m3Bytes kE4m3Bytes = make_e4m3_bytes();

inline double e4m3_f64(uint8_t c) {
  const uint64_t hi = kE4m3Bytes.hi[c & 0x7f] | (c & 0x80);
  return std::bit_cast<double>((hi << 56) | (uint64_t(kE4m3Bytes.lo[c & 0x7f]) << 48));
}

#ifndef __AVX512F__
void decode_e4m3_128_scalar(const uint8_t* c, double* out) {
  for (int i = 0; i < kBlk; ++i) out[i] = e4m3_f64(c[i]);
}
#else
// 64 e4m3 codes -> 8 vectors of fp64 (d[j] lane q = element 8j+q) holding the codes' values times
// 2^-1016, exactly: with byte 7 of the fp64 pattern = the sign and byte 6 = the magnitude code << 1,
// the fp64 exponent field is the e4m3 exponent field and the top 3 mantissa bits are the e4m3 ones
// (subnormal codes land on fp64 subnormals with the same scale). Two cheap byte ops and 8 two-source
// byte shuffles per 64 weights; a 128-entry table lookup costs more than that on current cores.
struct E4m3Idx {
  __m512i idx[8];  // byte shuffles placing (lo, hi) of element 8j+q in bytes 6, 7 of qword q
  E4m3Idx() {
    for (int j = 0; j < 8; ++j) {
      alignas(64) uint8_t b[64] = {};
      for (int q = 0; q < 8; ++q) {
        b[8 * q + 6] = uint8_t(8 * j + q);        // from operand a (code << 1)
        b[8 * q + 7] = uint8_t(64 | (8 * j + q));  // from operand b (sign)
      }
      idx[j] = _mm512_load_si512(b);
    }
  }
};

inline void decode_e4m3_64(const uint8_t* p, const E4m3Idx& t, __m512d d[8]) {
  const __m512i c = _mm512_loadu_si512(p);
  const __m512i lo = _mm512_add_epi8(c, c), hi = _mm512_and_si512(c, _mm512_set1_epi8(char(0x80)));
  for (int j = 0; j < 8; ++j)
    d[j] = _mm512_castsi512_pd(_mm512_maskz_permutex2var_epi8(0xC0C0C0C0C0C0C0C0ull, lo, t.idx[j], hi));
  // NaN codes (S.1111.111; never produced by act_quant's clamp) keep propagating NaN.
  const __mmask64 nan = _mm512_cmpeq_epi8_mask(_mm512_or_si512(c, _mm512_set1_epi8(char(0x80))),
                                               _mm512_set1_epi8(char(0xff)));
  if (nan) [[unlikely]]
    for (int j = 0; j < 8; ++j)
      d[j] = _mm512_mask_mov_pd(d[j], __mmask8(nan >> (8 * j)), _mm512_set1_pd(std::numeric_limits<double>::quiet_NaN()));
}
// Scales of the decoded operands: weights carry 2^-1016 (above), activations are rescaled to carry
// 2^500, so every product is a normal fp64 (|a·w| in [2^-534, 2^-498]) and still exact; the block
// sum is multiplied back by 2^516 (exact) before its fp32 rounding.
inline constexpr double kActRescaleLog2 = 1516;  // applied with scalef (2^1516 is not a double)
inline constexpr double kBlkRescale = 0x1p+516;
#endif

struct Fp8Problem {
  int64_t m, n, k;
  const uint8_t* xq;  // e4m3 [m, k]
  const float* xs;    // fp32 [m, k/128]
  const uint8_t* w;   // e4m3 [n, k]
  const uint8_t* ws;  // e8m0 [ceil(n/128), k/128]
  bf16* y;            // bf16 [m, n]
  int64_t kblocks;
#ifdef __AVX512F__
  E4m3Idx lut;
  void decode_a(int64_t r, int64_t kb, double* out) const {
    __m512d d[8];
    for (int h = 0; h < 2; ++h) {
      decode_e4m3_64(xq + r * k + kb * kBlk + h * 64, lut, d);
      for (int j = 0; j < 8; ++j) _mm512_store_pd(out + h * 64 + j * 8, _mm512_scalef_pd(d[j], _mm512_set1_pd(kActRescaleLog2)));
    }
  }
  void decode_b(int64_t r, int64_t kb, double* out) const {
    __m512d d[8];
    for (int h = 0; h < 2; ++h) {
      decode_e4m3_64(w + r * k + kb * kBlk + h * 64, lut, d);
      for (int j = 0; j < 8; ++j) _mm512_store_pd(out + h * 64 + j * 8, d[j]);
    }
  }
  struct B64 {
    __m512i lo, hi;   // code << 1 and the sign bytes (see decode_e4m3_64)
    __mmask64 nan;    // NaN codes
  };
  B64 load_b64(int64_t r, int64_t kb, int h) const {
    const uint8_t* src = w + r * k + kb * kBlk + h * 64;
    const __m512i c = _mm512_loadu_si512(src);
    return {_mm512_add_epi8(c, c), _mm512_and_si512(c, _mm512_set1_epi8(char(0x80))),
            _mm512_cmpeq_epi8_mask(_mm512_or_si512(c, _mm512_set1_epi8(char(0x80))), _mm512_set1_epi8(char(0xff)))};
  }
  __m512d get_b8(const B64& b, int q) const {
    __m512d d = _mm512_castsi512_pd(_mm512_maskz_permutex2var_epi8(0xC0C0C0C0C0C0C0C0ull, b.lo, lut.idx[q], b.hi));
    if (b.nan) [[unlikely]]
      d = _mm512_mask_mov_pd(d, __mmask8(b.nan >> (8 * q)), _mm512_set1_pd(std::numeric_limits<double>::quiet_NaN()));
    return d;
  }
  static __m512d step8(__m512d acc, __m512d blk, __m512d sc) {
    // fp8_gemm: exact block dot rounded once to fp32 (the rescale by 2^516 is exact)
    const __m256 b = _mm512_cvtpd_ps(_mm512_mul_pd(blk, _mm512_set1_pd(kBlkRescale)));
    const __m256 s = _mm512_cvtpd_ps(sc);   // fp8_gemm: Scale_C = sa·sb in fp32 (exact)
    // fp8_gemm: C_local_accum += C_local · Scale_C, fp32 (the product is exact)
    return _mm512_cvtps_pd(_mm256_add_ps(_mm512_cvtpd_ps(acc), _mm256_mul_ps(b, s)));
  }
#else
  void decode_a(int64_t r, int64_t kb, double* out) const { decode_e4m3_128_scalar(xq + r * k + kb * kBlk, out); }
  void decode_b(int64_t r, int64_t kb, double* out) const { decode_e4m3_128_scalar(w + r * k + kb * kBlk, out); }
#endif
  double sa(int64_t r, int64_t kb) const { return xs[r * kblocks + kb]; }
  double sb(int64_t c, int64_t kb) const { return e8m0_to_f32(ws[(c / kBlk) * kblocks + kb]); }
  static double step(double acc, double blk, double sc) {
    // fp8_gemm: fp32 block dot (one rounding) × fp32 scale, added to the fp32 accumulator
    return double(float(acc) + float(blk) * float(sc));
  }
  void store(int64_t r, int64_t c, double acc) const {
    y[r * n + c] = f32_to_bf16(float(acc));  // fp8_gemm: output cast to bf16
  }
};

Fp8Problem make_problem(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                        std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n,
                        int64_t k) {
  assert(k % kBlk == 0);
  const int64_t kblocks = k / kBlk;
  assert(int64_t(y.size()) >= m * n && int64_t(xq.size()) >= m * k && int64_t(xs.size()) >= m * kblocks);
  assert(int64_t(w.size()) >= n * k && int64_t(ws.size()) >= ((n + kBlk - 1) / kBlk) * kblocks);
  Fp8Problem p;
  p.m = m, p.n = n, p.k = k, p.xq = xq.data(), p.xs = xs.data(), p.w = w.data(), p.ws = ws.data();
  p.y = y.data(), p.kblocks = kblocks;
  return p;
}

}  // namespace

void linear_fp8(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  detail::run_linear(make_problem(y, xq, xs, w, ws, m, n, k));
}

void linear_fp8_gemv(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                     std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  assert(m <= detail::kGemvRows);
  detail::run_linear(make_problem(y, xq, xs, w, ws, m, n, k));
}

void linear_fp8_gemm(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                     std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  if (m > 0 && n > 0) detail::gemm_engine(make_problem(y, xq, xs, w, ws, m, n, k));
}

}  // namespace dsv4::kernels
