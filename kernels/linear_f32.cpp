#include "kernels/linear.hpp"

#include <immintrin.h>

#pragma GCC optimize("fp-contract=off")

namespace dsv4::kernels {
namespace {

constexpr int64_t kLanes = 16;  // outputs per vector
constexpr int64_t kRows = 8;    // activation rows sharing one pass over the weights

// Scalar twin / tail: one output at a time, sequential k.
void seq_block(float* y, const float* x, const bf16* w, int64_t m, int64_t n0, int64_t n1, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = n0; j < n1; ++j) {
      float acc = 0.0f;
      for (int64_t t = 0; t < k; ++t) acc += x[i * k + t] * bf16_to_f32(w[j * k + t]);  // exact product, fp32 sum
      y[i * n + j] = acc;
    }
}

}  // namespace

void linear_f32(std::span<float> y, std::span<const float> x, std::span<const bf16> w, int64_t m, int64_t n,
                    int64_t k) {
  const int64_t full = n / kLanes * kLanes;
#if defined(__AVX512F__)
  // 16 consecutive outputs per vector: for each k, gather the 16 weights w[j][k] (as the 32-bit word holding
  // the bf16 pair (k, k+1)), and add x[i][k] * w[j][k] to lane j. Each lane is one output's sequential sum.
  if (k % 2 == 0) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(int(k / 2)));
#pragma omp parallel for schedule(static)
    for (int64_t nb = 0; nb < full; nb += kLanes) {
      const int32_t* base = reinterpret_cast<const int32_t*>(w.data() + nb * k);
      for (int64_t i0 = 0; i0 < m; i0 += kRows) {
        const int64_t r = std::min(kRows, m - i0);
        __m512 acc[kRows];
        for (int64_t i = 0; i < r; ++i) acc[i] = _mm512_setzero_ps();
        for (int64_t t = 0; t < k; t += 2) {
          const __m512i pair = _mm512_i32gather_epi32(rows, base + t / 2, 4);
          const __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16));                          // k = t
          const __m512 w1 = _mm512_castsi512_ps(_mm512_and_si512(pair, _mm512_set1_epi32(int(0xffff0000u))));  // t + 1
          for (int64_t i = 0; i < r; ++i) {
            const float* xi = x.data() + (i0 + i) * k + t;
            acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xi[0]), w0));
            acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xi[1]), w1));
          }
        }
        for (int64_t i = 0; i < r; ++i) _mm512_storeu_ps(y.data() + (i0 + i) * n + nb, acc[i]);
      }
    }
    seq_block(y.data(), x.data(), w.data(), m, full, n, n, k);
    return;
  }
#endif
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < n; nb += kLanes)
    seq_block(y.data(), x.data(), w.data(), m, nb, std::min(n, nb + kLanes), n, k);
}

}  // namespace dsv4::kernels
