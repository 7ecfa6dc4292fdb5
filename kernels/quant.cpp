// Activation quantisation (kernel.py act_quant / fp4_act_quant). The SIMD path (AVX-512 or AVX2) and the
// portable path compute the same IEEE operations (fp32 divide, clamp, RNE to the grid): the same bits.
#include "kernels/quant.hpp"
#include "kernels/parallel.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif


namespace dsv4::kernels {
namespace {

// kernel.py fast_pow2(fast_log2_ceil(t)), in the same uint32 arithmetic (t = inf gives inf).
inline float round_scale(float t) {
  return std::bit_cast<float>(uint32_t(ceil_log2_bits(t) + 127) << 23);
}

// The SIMD paths, written once over a vector F of kL floats (Fi: the same lanes as int32) with the
// helpers below: AVX-512 or AVX2.
#if defined(__AVX512F__)
#define DSV4_QUANT_SIMD 1
using F = __m512;
using Fi = __m512i;
constexpr int kL = 16;
inline F load_bf16(const bf16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline F set1(float v) { return _mm512_set1_ps(v); }
inline F vabs(F a) { return _mm512_abs_ps(a); }
inline F vmax(F a, F b) { return _mm512_max_ps(a, b); }
inline F vmin(F a, F b) { return _mm512_min_ps(a, b); }
inline F vdiv(F a, F b) { return _mm512_div_ps(a, b); }
inline F vmul(F a, F b) { return _mm512_mul_ps(a, b); }
inline F vadd(F a, F b) { return _mm512_add_ps(a, b); }
inline F vsub(F a, F b) { return _mm512_sub_ps(a, b); }
inline float reduce_max(F a) { return _mm512_reduce_max_ps(a); }
inline F floor_log2(F a) { return _mm512_getexp_ps(a); }   // a > 0; 0 and subnormals: below -126
inline F scale2(F a, F e) { return _mm512_scalef_ps(a, e); }  // a·2^e, e integral
inline F round_ne(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline Fi to_int(F a) { return _mm512_cvtps_epi32(a); }
inline Fi bits(F a) { return _mm512_castps_si512(a); }
inline F from_bits(Fi a) { return _mm512_castsi512_ps(a); }
inline Fi iset1(int v) { return _mm512_set1_epi32(v); }
inline Fi iand(Fi a, Fi b) { return _mm512_and_si512(a, b); }
inline Fi ior(Fi a, Fi b) { return _mm512_or_si512(a, b); }
inline Fi iadd(Fi a, Fi b) { return _mm512_add_epi32(a, b); }
inline Fi isrl(Fi a, int n) { return _mm512_srli_epi32(a, n); }
inline void store_u8(uint8_t* p, Fi v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v)); }
inline void store_u16(bf16* p, Fi v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
}
#elif defined(__AVX2__)
#define DSV4_QUANT_SIMD 1
using F = __m256;
using Fi = __m256i;
constexpr int kL = 8;
inline F load_bf16(const bf16* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline F set1(float v) { return _mm256_set1_ps(v); }
inline F vabs(F a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
inline F vmax(F a, F b) { return _mm256_max_ps(a, b); }
inline F vmin(F a, F b) { return _mm256_min_ps(a, b); }
inline F vdiv(F a, F b) { return _mm256_div_ps(a, b); }
inline F vmul(F a, F b) { return _mm256_mul_ps(a, b); }
inline F vadd(F a, F b) { return _mm256_add_ps(a, b); }
inline F vsub(F a, F b) { return _mm256_sub_ps(a, b); }
inline float reduce_max(F a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
inline F floor_log2(F a) {  // a >= 0: the biased exponent field - 127 (0 and subnormals: -127)
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(a), 23), _mm256_set1_epi32(127)));
}
inline F scale2(F a, F e) {  // a·2^e, e integral in [-126, 127]: exact while the result is normal
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(e), _mm256_set1_epi32(127));
  return _mm256_mul_ps(a, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
}
inline F round_ne(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline Fi to_int(F a) { return _mm256_cvtps_epi32(a); }
inline Fi bits(F a) { return _mm256_castps_si256(a); }
inline F from_bits(Fi a) { return _mm256_castsi256_ps(a); }
inline Fi iset1(int v) { return _mm256_set1_epi32(v); }
inline Fi iand(Fi a, Fi b) { return _mm256_and_si256(a, b); }
inline Fi ior(Fi a, Fi b) { return _mm256_or_si256(a, b); }
inline Fi iadd(Fi a, Fi b) { return _mm256_add_epi32(a, b); }
inline Fi isrl(Fi a, int n) { return _mm256_srli_epi32(a, n); }
inline __m128i pack_u16(Fi v) {  // lanes in [0, 65535]
  return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}
inline void store_u8(uint8_t* p, Fi v) {
  const __m128i w = pack_u16(v);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
}
inline void store_u16(bf16* p, Fi v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), pack_u16(v)); }
#endif

#ifdef DSV4_QUANT_SIMD
// fp32 -> bf16 RNE for finite values (f32_to_bf16 without the NaN branch).
inline void store_bf16(bf16* p, F f) {
  const Fi u = bits(f);
  store_u16(p, isrl(iadd(u, iadd(iset1(0x7fff), iand(isrl(u, 16), iset1(1)))), 16));
}
inline F abs_max(const bf16* p, int64_t n) {
  F m = set1(0.f);
  for (int64_t i = 0; i < n; i += kL) m = vmax(m, vabs(load_bf16(p + i)));
  return m;
}
// Round |y| (already clamped to the grid's range) to the e4m3 grid, RNE: e = max(floor(log2|y|), -6)
// (subnormals share the 2^-6 binade), q = rne(|y|·2^(3-e)) in 0..16. Returns q and e.
inline void e4m3_grid(F a, F& q, F& e) {
  e = vmax(floor_log2(a), set1(-6.f));
  q = round_ne(scale2(a, vsub(set1(3.f), e)));
}
inline F clamp(F y, float lim) { return vmin(vmax(y, set1(-lim)), set1(lim)); }
inline F with_sign_of(F mag, F y) {
  return from_bits(ior(bits(mag), iand(bits(y), iset1(int(0x80000000u)))));
}
#endif

}  // namespace

float fp8_block_scale(float amax) {
  return round_scale(std::max(amax, 1e-4f) * float(1.0 / 448.0));  // act_quant: fp8_max_inv in fp32
}
float fp4_block_scale(float amax) {
  return round_scale(std::max(amax, 6.0f * 0x1p-126f) * float(1.0 / 6.0));  // fp4_quant: fp4_max_inv
}

void act_quant_fp8(std::span<uint8_t> q, std::span<float> s, std::span<const bf16> x, int64_t rows,
                   int64_t cols) {
  assert(cols % kActQuantBlock == 0);
  assert(int64_t(q.size()) >= rows * cols && int64_t(x.size()) >= rows * cols &&
         int64_t(s.size()) >= rows * (cols / kActQuantBlock));
  const int64_t nblk = rows * (cols / kActQuantBlock);  // blocks are contiguous: row-major, cols % 128 == 0
  detail::parallel_for(nblk, [&](int64_t b) {
    const bf16* xb = x.data() + b * kActQuantBlock;
    uint8_t* qb = q.data() + b * kActQuantBlock;
#ifdef DSV4_QUANT_SIMD
    const float sc = fp8_block_scale(reduce_max(abs_max(xb, kActQuantBlock)));
    const F sv = set1(sc);
    for (int i = 0; i < kActQuantBlock; i += kL) {
      const F y = clamp(vdiv(load_bf16(xb + i), sv), 448.f);  // act_quant: clamp(x/s)
      F qv, e;
      e4m3_grid(vabs(y), qv, e);  // act_quant: cast to e4m3, RNE
      // code = (e+7)·8 + q - 8; q == 16 carries into the next binade, as the encoding does
      const Fi code = to_int(vadd(vmul(e, set1(8.f)), vadd(qv, set1(48.f))));
      store_u8(qb + i, ior(code, iand(isrl(bits(y), 24), iset1(0x80))));
    }
#else
    float amax = 0.f;
    for (int i = 0; i < kActQuantBlock; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(xb[i])));
    const float sc = fp8_block_scale(amax);
    for (int i = 0; i < kActQuantBlock; ++i)  // act_quant: e4m3_RNE(clamp(x/s, ±448))
      qb[i] = f32_to_e4m3(std::clamp(bf16_to_f32(xb[i]) / sc, -448.f, 448.f));
#endif
    s[b] = sc;
  }, nblk >= 256);
}

void fp8_round_trip_inplace(std::span<bf16> v, int64_t block) {
  assert(block % 16 == 0 && int64_t(v.size()) % block == 0);
  for (int64_t b0 = 0; b0 < int64_t(v.size()); b0 += block) {
    bf16* p = v.data() + b0;
#ifdef DSV4_QUANT_SIMD
    const float sc = fp8_block_scale(reduce_max(abs_max(p, block)));
    const F sv = set1(sc);
    for (int64_t i = 0; i < block; i += kL) {
      const F y = clamp(vdiv(load_bf16(p + i), sv), 448.f);
      F qv, e;
      e4m3_grid(vabs(y), qv, e);
      // act_quant inplace: bf16(fp32(e4m3) · s); the e4m3 value is q·2^(e-3)
      const F deq = with_sign_of(scale2(qv, vsub(e, set1(3.f))), y);
      store_bf16(p + i, vmul(deq, sv));
    }
#else
    float amax = 0.f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(p[i])));
    const float sc = fp8_block_scale(amax);
    for (int64_t i = 0; i < block; ++i)  // act_quant inplace: bf16(fp32(e4m3(clamp(v/s))) · s)
      p[i] = f32_to_bf16(e4m3_to_f32(f32_to_e4m3(std::clamp(bf16_to_f32(p[i]) / sc, -448.f, 448.f))) * sc);
#endif
  }
}

void fp4_round_trip_inplace(std::span<bf16> v) {
  assert(int64_t(v.size()) % kFp4Block == 0);
  for (int64_t b0 = 0; b0 < int64_t(v.size()); b0 += kFp4Block) {
    bf16* p = v.data() + b0;
#ifdef DSV4_QUANT_SIMD
    const float sc = fp4_block_scale(reduce_max(abs_max(p, kFp4Block)));
    const F sv = set1(sc);
    for (int i = 0; i < kFp4Block; i += kL) {
      const F y = clamp(vdiv(load_bf16(p + i), sv), 6.f);  // fp4_quant: clamp(x/s, ±6)
      const F a = vabs(y);
      // e2m1 grid, RNE: e = max(floor(log2|y|), 0), value = rne(|y|·2^(1-e))·2^(e-1)
      const F e = vmax(floor_log2(a), set1(0.f));
      const F qv = round_ne(scale2(a, vsub(set1(1.f), e)));
      const F deq = with_sign_of(scale2(qv, vsub(e, set1(1.f))), y);
      store_bf16(p + i, vmul(deq, sv));  // fp4_quant inplace: bf16(fp32(e2m1) · s)
    }
#else
    float amax = 0.f;
    for (int i = 0; i < kFp4Block; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(p[i])));
    const float sc = fp4_block_scale(amax);
    for (int i = 0; i < kFp4Block; ++i)  // fp4_quant inplace: bf16(fp32(e2m1(clamp(v/s, ±6))) · s)
      p[i] = f32_to_bf16(e2m1_to_f32(f32_to_e2m1(std::clamp(bf16_to_f32(p[i]) / sc, -6.f, 6.f))) * sc);
#endif
  }
}

}  // namespace dsv4::kernels
