#include "kernels/roofline.hpp"

#include <omp.h>

#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace dsv4::roofline {

// Keeps the compiler from dropping a computed value or a store it cannot see being read.
template <class T>
inline void keep(T& v) {
  asm volatile("" : "+m"(v) : : "memory");
}

void parallel_copy(uint8_t* dst, const uint8_t* src, size_t n) {
#pragma omp parallel
  {
    const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num()), c = n / nt;
    std::memcpy(dst + t * c, src + t * c, c);
  }
  keep(dst);
}

namespace {

// Register-only FMA chains: independent accumulators per thread (cover latency x 2 pipes), in the widest
// vectors the build targets (AVX-512 or AVX2; other builds measure nothing here).
#if defined(__AVX512F__)
inline constexpr int kFmaChains = 16, kVecDoubles = 8;
#elif defined(__AVX2__) && defined(__FMA__)
inline constexpr int kFmaChains = 12, kVecDoubles = 4;  // 16 registers: the chains, x and y
#else
inline constexpr int kFmaChains = 0, kVecDoubles = 0;
#endif

template <class V, class Fma, class Sum>
double fma_chains(V x, V y, V init, Fma fma, Sum sum, int64_t iters) {
  V acc[kFmaChains > 0 ? kFmaChains : 1];
  for (auto& a : acc) a = init;
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kFmaChains; ++c) acc[c] = fma(acc[c], x, y);
  double s = 0;
  for (int c = 0; c < kFmaChains; ++c) s += sum(acc[c]);
  return s;
}

template <bool F64>
double region(int64_t iters) {
  int threads = 1;
#pragma omp parallel
  {
    if (omp_get_thread_num() == 0) threads = omp_get_num_threads();
    [[maybe_unused]] const double init = omp_get_thread_num();
    double s = 0;
#if defined(__AVX512F__)
    if constexpr (F64)
      s = fma_chains(_mm512_set1_pd(0.999999), _mm512_set1_pd(1e-9), _mm512_set1_pd(init),
                     [](__m512d a, __m512d x, __m512d y) { return _mm512_fmadd_pd(a, x, y); },
                     [](__m512d a) { return _mm512_reduce_add_pd(a); }, iters);
    else
      s = fma_chains(_mm512_set1_ps(0.999999f), _mm512_set1_ps(1e-9f), _mm512_set1_ps(float(init)),
                     [](__m512 a, __m512 x, __m512 y) { return _mm512_fmadd_ps(a, x, y); },
                     [](__m512 a) { return double(_mm512_reduce_add_ps(a)); }, iters);
#elif defined(__AVX2__) && defined(__FMA__)
    auto sum_pd = [](__m256d a) {
      alignas(32) double v[4];
      _mm256_store_pd(v, a);
      return v[0] + v[1] + v[2] + v[3];
    };
    if constexpr (F64)
      s = fma_chains(_mm256_set1_pd(0.999999), _mm256_set1_pd(1e-9), _mm256_set1_pd(init),
                     [](__m256d a, __m256d x, __m256d y) { return _mm256_fmadd_pd(a, x, y); }, sum_pd, iters);
    else
      s = fma_chains(_mm256_set1_ps(0.999999f), _mm256_set1_ps(1e-9f), _mm256_set1_ps(float(init)),
                     [](__m256 a, __m256 x, __m256 y) { return _mm256_fmadd_ps(a, x, y); },
                     [&](__m256 a) { return sum_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a))); }, iters);
#endif
    keep(s);
  }
  return double(threads) * double(iters) * kFmaChains * (F64 ? kVecDoubles : 2 * kVecDoubles) * 2;
}

}  // namespace

double fma_region_f64(int64_t iters) { return region<true>(iters); }
double fma_region_f32(int64_t iters) { return region<false>(iters); }

}  // namespace dsv4::roofline
