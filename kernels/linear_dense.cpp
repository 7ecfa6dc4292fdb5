// BF16 linears (weights_proj, the grouped wo_a einsum): exact products, fp64 sums in the canonical order of
// linear_core.hpp, one rounding (via fp32, as the reference's bf16 GEMMs).
#include <cassert>
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

enum class Path { kAuto, kGemv, kGemm };

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

void linear_bf16_grouped(std::span<bf16> y, std::span<const bf16> x, std::span<const bf16> w, int64_t m,
                         int64_t groups, int64_t n, int64_t k) {
  assert(int64_t(y.size()) >= m * groups * n && int64_t(x.size()) >= m * groups * k &&
         int64_t(w.size()) >= groups * n * k);
  for (int64_t g = 0; g < groups; ++g)  // einsum "bsgd,grd->bsgr": one independent linear per group
    run(Bf16Problem{m, n, k, x.data() + g * k, groups * k, w.data() + g * n * k, y.data() + g * n, groups * n},
        Path::kAuto);
}

}  // namespace dsv4::kernels
