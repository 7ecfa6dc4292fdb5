// Activation quantisation (kernel.py act_quant / fp4_act_quant). AVX-512 path + portable path; both
// compute the same IEEE operations (fp32 divide, clamp, RNE to the grid), so they agree bit for bit.
#include "kernels/quant.hpp"
#include "kernels/parallel.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>

#ifdef __AVX512F__
#include <immintrin.h>
#endif


namespace dsv4::kernels {
namespace {

// kernel.py fast_pow2(fast_log2_ceil(t)), in the same uint32 arithmetic (t = inf gives inf).
inline float round_scale(float t) {
  return std::bit_cast<float>(uint32_t(ceil_log2_bits(t) + 127) << 23);
}

#ifdef __AVX512F__
inline __m512 load_bf16x16(const bf16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
// fp32 -> bf16 RNE for finite values (f32_to_bf16 without the NaN branch).
inline __m256i to_bf16x16(__m512 f) {
  __m512i u = _mm512_castps_si512(f);
  u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                           _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16));
}
inline __m512 abs_max16(const bf16* p, int64_t n) {
  __m512 m = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(load_bf16x16(p + i)));
  return m;
}
// Round |y| (already clamped to the grid's range) to the e4m3 grid, RNE: e = max(floor(log2|y|), -6)
// (subnormals share the 2^-6 binade), q = rne(|y|·2^(3-e)) in 0..16. Returns q and e.
inline void e4m3_grid(__m512 a, __m512& q, __m512& e) {
  e = _mm512_max_ps(_mm512_getexp_ps(a), _mm512_set1_ps(-6.f));
  q = _mm512_roundscale_ps(_mm512_scalef_ps(a, _mm512_sub_ps(_mm512_set1_ps(3.f), e)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline __m512 clamp(__m512 y, float lim) {
  return _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-lim)), _mm512_set1_ps(lim));
}
inline __m512 with_sign_of(__m512 mag, __m512 y) {
  return _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_castps_si512(mag), _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(int(0x80000000u)))));
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
#ifdef __AVX512F__
    const float sc = fp8_block_scale(_mm512_reduce_max_ps(abs_max16(xb, kActQuantBlock)));
    const __m512 sv = _mm512_set1_ps(sc);
    for (int i = 0; i < kActQuantBlock; i += 16) {
      const __m512 y = clamp(_mm512_div_ps(load_bf16x16(xb + i), sv), 448.f);  // act_quant: clamp(x/s)
      __m512 qv, e;
      e4m3_grid(_mm512_abs_ps(y), qv, e);  // act_quant: cast to e4m3, RNE
      // code = (e+7)·8 + q - 8; q == 16 carries into the next binade, as the encoding does
      __m512i code = _mm512_cvtps_epi32(_mm512_fmadd_ps(e, _mm512_set1_ps(8.f), _mm512_add_ps(qv, _mm512_set1_ps(48.f))));
      code = _mm512_or_si512(code, _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(y), 24),
                                                    _mm512_set1_epi32(0x80)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + i), _mm512_cvtepi32_epi8(code));
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
#ifdef __AVX512F__
    const float sc = fp8_block_scale(_mm512_reduce_max_ps(abs_max16(p, block)));
    const __m512 sv = _mm512_set1_ps(sc);
    for (int64_t i = 0; i < block; i += 16) {
      const __m512 y = clamp(_mm512_div_ps(load_bf16x16(p + i), sv), 448.f);
      __m512 qv, e;
      e4m3_grid(_mm512_abs_ps(y), qv, e);
      // act_quant inplace: bf16(fp32(e4m3) · s); the e4m3 value is q·2^(e-3)
      const __m512 deq = with_sign_of(_mm512_scalef_ps(qv, _mm512_sub_ps(e, _mm512_set1_ps(3.f))), y);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), to_bf16x16(_mm512_mul_ps(deq, sv)));
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
#ifdef __AVX512F__
    const float sc = fp4_block_scale(_mm512_reduce_max_ps(abs_max16(p, kFp4Block)));
    const __m512 sv = _mm512_set1_ps(sc);
    for (int i = 0; i < kFp4Block; i += 16) {
      const __m512 y = clamp(_mm512_div_ps(load_bf16x16(p + i), sv), 6.f);  // fp4_quant: clamp(x/s, ±6)
      const __m512 a = _mm512_abs_ps(y);
      // e2m1 grid, RNE: e = max(floor(log2|y|), 0), value = rne(|y|·2^(1-e))·2^(e-1)
      const __m512 e = _mm512_max_ps(_mm512_getexp_ps(a), _mm512_setzero_ps());
      const __m512 qv = _mm512_roundscale_ps(_mm512_scalef_ps(a, _mm512_sub_ps(_mm512_set1_ps(1.f), e)),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512 deq = with_sign_of(_mm512_scalef_ps(qv, _mm512_sub_ps(e, _mm512_set1_ps(1.f))), y);
      // fp4_quant inplace: bf16(fp32(e2m1) · s)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), to_bf16x16(_mm512_mul_ps(deq, sv)));
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
