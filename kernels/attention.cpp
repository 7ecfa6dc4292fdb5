// Bit-exactness needs every fp32 product rounded on its own, as torch's kernels do: no FMA contraction.
#pragma GCC optimize("fp-contract=off")
#include "kernels/attention.hpp"
#include "kernels/parallel.hpp"
#include "kernels/simd.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace dsv4::kernels {

namespace {
constexpr int kBlock = 64;  // kernel.py sparse_attn_kernel: block = 64 indices
constexpr int kMaxD = 1024;
constexpr int kGroup = 16;  // heads sharing one transposed key block (same token => same index list)

// Portable SIMD via GCC vector extensions (lowered to whatever the target ISA offers).
typedef double v8d __attribute__((vector_size(64)));
using simd::v8f;

using simd::load_bf16x8;
inline v8d loadu_d(const double* p) {
  v8d v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeu_d(double* p, v8d v) { std::memcpy(p, &v, sizeof v); }

// Per-head online-softmax state.
struct HeadState {
  float m, sum;
  float acc[kMaxD];
};
}  // namespace

void sparse_attn(std::span<bf16> o, std::span<const bf16> q, std::span<const bf16> kv, std::span<const float> sink,
                 std::span<const int32_t> idx, int heads, int d, int k, float scale) {
  const int64_t tokens = int64_t(q.size()) / (int64_t(heads) * d);
  const float ninf = -std::numeric_limits<float>::infinity();
  const int groups = (heads + kGroup - 1) / kGroup;
  const int64_t items = tokens * groups;
  // Work item = (token, group of heads). Every head's arithmetic is exactly the scalar per-head sequence: each
  // q·k dot product is accumulated in double in dimension order (one SIMD lane per key), each P·V output dim
  // in key order (one SIMD lane per dim); only independent values share a vector.
  detail::parallel_for(items, [&](int64_t it) {
    const int64_t t = it / groups;
    const int h0 = int(it % groups) * kGroup, h1 = std::min(heads, h0 + kGroup);
    const int32_t* ix = idx.data() + t * k;
    alignas(64) static thread_local float kt[kMaxD * kBlock];  // transposed key block: kt[c][j]
    alignas(64) static thread_local HeadState st[kGroup];
    alignas(64) double pv[kMaxD];
    for (int h = h0; h < h1; ++h) {
      HeadState& s = st[h - h0];
      s.m = ninf;
      s.sum = 0.0f;
      for (int c = 0; c < d; ++c) s.acc[c] = 0.0f;
    }
    for (int b0 = 0; b0 < k; b0 += kBlock) {
      const int nb = std::min(kBlock, k - b0);
      // A block of masked / padding keys only changes no state (its probabilities are all 0: the running
      // max stays, alpha = exp(0) = 1, sum and acc get + 0), so skipping it is exact. Short contexts are
      // mostly such blocks: a 32-token prompt has keys in 2 of the 10 blocks of a CSA layer's 640 indices.
      bool any = false;
      for (int j = 0; j < nb && !any; ++j) any = ix[b0 + j] >= 0;
      if (!any) continue;
      // Transpose the block's key rows (bf16 -> fp32 is exact); masked / padding keys are zero rows.
      for (int j = 0; j < kBlock; ++j) {
        const int32_t id = j < nb ? ix[b0 + j] : -1;
        if (id < 0) {
          for (int c = 0; c < d; ++c) kt[c * kBlock + j] = 0.0f;
        } else {
          const bf16* kr = kv.data() + int64_t(id) * d;
          for (int c = 0; c < d; ++c) kt[c * kBlock + j] = bf16_to_f32(kr[c]);
        }
      }
      for (int h = h0; h < h1; ++h) {
        HeadState& hs = st[h - h0];
        const bf16* qv = q.data() + (t * heads + h) * d;
        // dot[j] = Σ_c q[c]·k_j[c] in double, c ascending (bf16·bf16 products are exact; rounded once to fp32).
        v8d a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
        for (int c = 0; c < d; ++c) {
          const double qd = double(bf16_to_f32(qv[c]));
          const v8d qb = {qd, qd, qd, qd, qd, qd, qd, qd};
          const float* r = kt + c * kBlock;
          v8f f;
          std::memcpy(&f, r + 0, 32), a0 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 8, 32), a1 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 16, 32), a2 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 24, 32), a3 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 32, 32), a4 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 40, 32), a5 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 48, 32), a6 += qb * __builtin_convertvector(f, v8d);
          std::memcpy(&f, r + 56, 32), a7 += qb * __builtin_convertvector(f, v8d);
        }
        alignas(64) double dot[kBlock];
        storeu_d(dot + 0, a0), storeu_d(dot + 8, a1), storeu_d(dot + 16, a2), storeu_d(dot + 24, a3);
        storeu_d(dot + 32, a4), storeu_d(dot + 40, a5), storeu_d(dot + 48, a6), storeu_d(dot + 56, a7);
        float s[kBlock];
        float bmax = hs.m;
        for (int j = 0; j < nb; ++j) {
          if (ix[b0 + j] < 0) {
            s[j] = ninf;
            continue;
          }
          s[j] = float(dot[j]) * scale;
          bmax = std::max(bmax, s[j]);
        }
        if (bmax == ninf) continue;  // block fully masked and nothing seen yet
        const float alpha = std::exp(hs.m - bmax);  // rescale of the running sums (0 on the first block)
        hs.m = bmax;
        double bsum = 0.0;  // block row sum of the fp32 probabilities (order-free: accumulated in double)
        for (int c = 0; c < d; ++c) pv[c] = 0.0;
        for (int j = 0; j < nb; ++j) {
          if (s[j] == ninf) continue;
          const float p = std::exp(s[j] - hs.m);
          bsum += p;
          const double pb = double(round_bf16(p));  // P cast to bf16 before the P·V GEMM
          const v8d pbv = {pb, pb, pb, pb, pb, pb, pb, pb};
          const bf16* kr = kv.data() + int64_t(ix[b0 + j]) * d;
          int c = 0;
          for (; c + 8 <= d; c += 8)
            storeu_d(pv + c, loadu_d(pv + c) + pbv * __builtin_convertvector(load_bf16x8(kr + c), v8d));
          for (; c < d; ++c) pv[c] += pb * double(bf16_to_f32(kr[c]));
        }
        hs.sum = hs.sum * alpha + float(bsum);
        for (int c = 0; c < d; ++c) hs.acc[c] = hs.acc[c] * alpha + float(pv[c]);
      }
    }
    for (int h = h0; h < h1; ++h) {
      HeadState& hs = st[h - h0];
      const float sum = hs.sum + std::exp(sink[h] - hs.m);  // the sink enters the denominator only
      bf16* ov = o.data() + (t * heads + h) * d;
      for (int c = 0; c < d; ++c) ov[c] = f32_to_bf16(hs.acc[c] / sum);  // o: bf16
    }
  });
}

}  // namespace dsv4::kernels
