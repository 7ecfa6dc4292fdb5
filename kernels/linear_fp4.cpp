// FP4 expert linear (kernel.py fp4_gemm): e4m3 activations x e2m1 weights, exact 32-wide sub-blocks
// in int32. Units: an e4m3 magnitude is A·2^-9 with A an integer < 2^18; an e2m1 value is W·2^-1
// with W an integer in [-12, 12]. A sub-block sum Σ A·W < 2^26.4 fits int32 exactly; its fp32
// conversion is the kernel's one rounding per sub-block. A is split into three bytes d0 + d1·2^8 +
// d2·2^16 so that VNNI (u8 x s8 -> int32) multiplies exactly; the activation sign moves onto W.
#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/linear.hpp"

#ifdef __AVX512F__
#include <immintrin.h>
#endif


namespace dsv4::kernels {
namespace {

constexpr int kBlk = 128;  // activation scale block
constexpr int kSub = 32;   // weight scale block: the exact-sum unit

// e4m3 magnitude code -> A (value·2^9, an integer), as three bytes. Code 0x7f (NaN) maps to 0.
struct E4m3Digits {
  std::array<uint8_t, 128> d[3]{};
};
constexpr E4m3Digits make_digits() {
  E4m3Digits t;
  for (int c = 0; c < 127; ++c) {
    const int e = c >> 3, man = c & 7;
    const int a = e == 0 ? man : (8 | man) << (e - 1);  // value·2^9
    t.d[0][c] = uint8_t(a & 0xff);
    t.d[1][c] = uint8_t((a >> 8) & 0xff);
    t.d[2][c] = uint8_t(a >> 16);
  }
  return t;
}
constexpr E4m3Digits kDigits = make_digits();
constexpr std::array<int8_t, 16> kE2m1Twice = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

inline int32_t e4m3_int(uint8_t c) {  // signed value·2^9
  const int32_t a = kDigits.d[0][c & 0x7f] | (kDigits.d[1][c & 0x7f] << 8) | (kDigits.d[2][c & 0x7f] << 16);
  return (c & 0x80) ? -a : a;
}

struct Fp4Args {
  int64_t m, n, k, kblocks, sblocks;
  const uint8_t* xq;  // e4m3 [m, k]
  const float* xs;    // fp32 [m, k/128]
  const uint8_t* w;   // packed e2m1 [n, k/2]
  const uint8_t* ws;  // e8m0 [n, k/32]
  bf16* y;            // bf16 [m, n]
};

// fp4_gemm per (row, col, sub-block): exact int sum -> fp32 (one rounding), ×2^-10 (exact), × sa·sb
// (fp32, exact powers of two), added to the fp32 accumulator in ascending sub-block order.
inline float fp4_step(float acc, int32_t isum, float sa, float sb) {
  const float blk = std::ldexp(float(isum), -10);  // fp4_gemm: exact sub-block dot -> fp32
  return acc + blk * (sa * sb);                     // fp4_gemm: fp32 accumulation
}

#ifdef __AVX512F__
constexpr int Nt = 16, Mc = 16;

void fp4_tile(const Fp4Args& a, int64_t n0, int64_t m0) {
  const int nv = int(std::min<int64_t>(Nt, a.n - n0)), mv = int(std::min<int64_t>(Mc, a.m - m0));
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kE2m1Twice.data())));
  const __m512i nib = _mm512_set1_epi8(0x0f);
  __m512i dig[3][2];
  for (int d = 0; d < 3; ++d)
    for (int h = 0; h < 2; ++h) dig[d][h] = _mm512_loadu_si512(kDigits.d[d].data() + 64 * h);
  alignas(64) uint8_t ev_idx[64], od_idx[64];  // deinterleave 128 codes into even / odd k
  for (int j = 0; j < 64; ++j) {
    ev_idx[j] = uint8_t(2 * j < 64 ? 2 * j : 64 | (2 * j - 64));
    od_idx[j] = uint8_t(2 * j + 1 < 64 ? 2 * j + 1 : 64 | (2 * j + 1 - 64));
  }
  const __m512i iev = _mm512_load_si512(ev_idx), iod = _mm512_load_si512(od_idx);

  alignas(64) float acc[Mc][Nt] = {};
  alignas(64) int8_t wlo[Nt][64], whi[Nt][64];   // decoded weights of one K block: even / odd k
  alignas(64) uint8_t ad[Mc][2][3][64];          // activation digits: [even/odd][digit]
  __mmask64 asg[Mc][2];                          // activation signs: [even/odd]
  alignas(64) float sbv[Nt / 4][16];             // lane s*4+r: weight scale of row r, sub-block s
  alignas(16) uint32_t sbw[Nt];                  // raw e8m0 bytes of the K block, one dword per row
  const __m128i tr4 = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  // Each row's scales are a separate short run (k/32 bytes): touch them all up front so their cache
  // misses overlap instead of stalling one by one inside the K loop.
  for (int j = 0; j < nv; ++j)
    for (int64_t off = 0; off < a.sblocks; off += 64) _mm_prefetch(reinterpret_cast<const char*>(a.ws + (n0 + j) * a.sblocks + off), _MM_HINT_T0);
  for (int64_t kb = 0; kb < a.kblocks; ++kb) {
    for (int j = 0; j < Nt; ++j) {
      const int64_t row = n0 + std::min(j, nv - 1);
      const __m512i b = _mm512_loadu_si512(a.w + row * (a.k / 2) + kb * 64);
      _mm512_store_si512(wlo[j], _mm512_shuffle_epi8(lut, _mm512_and_si512(b, nib)));  // low nibble: even k
      _mm512_store_si512(whi[j], _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(b, 4), nib)));
      std::memcpy(&sbw[j], a.ws + row * a.sblocks + kb * 4, 4);  // this row's 4 sub-block scales
    }
    for (int g = 0; g < Nt / 4; ++g) {  // e8m0 bytes -> fp32 at lane s*4+r (a 4x4 byte transpose)
      const __m128i t = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sbw + 4 * g)), tr4);
      const __m512i b = _mm512_cvtepu8_epi32(t);
      __m512i f = _mm512_slli_epi32(b, 23);
      f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(b, _mm512_setzero_si512()),
                                _mm512_set1_epi32(0x00400000));  // e8m0 0: 2^-127
      f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(b, _mm512_set1_epi32(255)),
                                _mm512_set1_epi32(0x7fc00000));  // e8m0 0xff: NaN
      _mm512_store_ps(sbv[g], _mm512_castsi512_ps(f));
    }
    for (int i = 0; i < mv; ++i) {
      const uint8_t* c = a.xq + (m0 + i) * a.k + kb * kBlk;
      const __m512i c0 = _mm512_loadu_si512(c), c1 = _mm512_loadu_si512(c + 64);
      const __m512i eo[2] = {_mm512_permutex2var_epi8(c0, iev, c1), _mm512_permutex2var_epi8(c0, iod, c1)};
      for (int h = 0; h < 2; ++h) {
        asg[i][h] = _mm512_movepi8_mask(eo[h]);
        for (int d = 0; d < 3; ++d)
          _mm512_store_si512(ad[i][h][d], _mm512_permutex2var_epi8(dig[d][0], eo[h], dig[d][1]));
      }
    }
    for (int g = 0; g < Nt / 4; ++g) {
      const __m512 sb = _mm512_load_ps(sbv[g]);
      for (int i = 0; i < mv; ++i) {
        __m512i v[4];
        for (int r = 0; r < 4; ++r) {
          const int j = 4 * g + r;
          __m512i wv[2] = {_mm512_load_si512(wlo[j]), _mm512_load_si512(whi[j])};
          __m512i s[3] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
          for (int h = 0; h < 2; ++h) {
            wv[h] = _mm512_mask_sub_epi8(wv[h], asg[i][h], _mm512_setzero_si512(), wv[h]);  // sign of x
            for (int d = 0; d < 3; ++d)
              s[d] = _mm512_dpbusd_epi32(s[d], _mm512_load_si512(ad[i][h][d]), wv[h]);
          }
          v[r] = _mm512_add_epi32(_mm512_add_epi32(s[0], _mm512_slli_epi32(s[1], 8)), _mm512_slli_epi32(s[2], 16));
        }
        // 128-bit lane s of v[r] holds sub-block s of row r in 4 dwords; reduce to lane s*4+r.
        const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
        const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
        const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
        const __m512 blk = _mm512_scalef_ps(_mm512_cvtepi32_ps(u), _mm512_set1_ps(-10.f));  // fp4_gemm: exact
                                                                                           // sub-block dot -> fp32
        const __m512 p = _mm512_mul_ps(blk, _mm512_mul_ps(_mm512_set1_ps(a.xs[(m0 + i) * a.kblocks + kb]), sb));
        __m128 ac = _mm_load_ps(acc[i] + 4 * g);
        // fp4_gemm: fp32 accumulation in ascending sub-block order
        ac = _mm_add_ps(ac, _mm512_extractf32x4_ps(p, 0));
        ac = _mm_add_ps(ac, _mm512_extractf32x4_ps(p, 1));
        ac = _mm_add_ps(ac, _mm512_extractf32x4_ps(p, 2));
        ac = _mm_add_ps(ac, _mm512_extractf32x4_ps(p, 3));
        _mm_store_ps(acc[i] + 4 * g, ac);
      }
    }
  }
  for (int i = 0; i < mv; ++i)
    for (int j = 0; j < nv; ++j) a.y[(m0 + i) * a.n + n0 + j] = f32_to_bf16(acc[i][j]);  // fp4_gemm: bf16 out
}
#else
constexpr int Nt = 16, Mc = 16;

void fp4_tile(const Fp4Args& a, int64_t n0, int64_t m0) {
  const int nv = int(std::min<int64_t>(Nt, a.n - n0)), mv = int(std::min<int64_t>(Mc, a.m - m0));
  for (int i = 0; i < mv; ++i)
    for (int j = 0; j < nv; ++j) {
      const uint8_t* x = a.xq + (m0 + i) * a.k;
      const uint8_t* w = a.w + (n0 + j) * (a.k / 2);
      float acc = 0.f;
      for (int64_t sbk = 0; sbk < a.sblocks; ++sbk) {
        int32_t s = 0;
        for (int64_t kk = sbk * kSub; kk < (sbk + 1) * kSub; ++kk)
          s += e4m3_int(x[kk]) * kE2m1Twice[(w[kk / 2] >> (4 * (kk & 1))) & 0xf];
        acc = fp4_step(acc, s, a.xs[(m0 + i) * a.kblocks + sbk / 4],
                       e8m0_to_f32(a.ws[(n0 + j) * a.sblocks + sbk]));
      }
      a.y[(m0 + i) * a.n + n0 + j] = f32_to_bf16(acc);
    }
}
#endif

#if defined(__AVX512F__) && defined(__AVX512VBMI__) && defined(__AVX512VNNI__)
// GEMV (m <= 4): weights streamed once, 4 rows at a time, nothing stored. The activation side is
// prepared once per call so that a weight byte needs one table lookup per nibble and the exact
// sub-block sum needs 2 VNNI digits instead of 3: an activation magnitude A = Ma·2^Ea (Ma < 16,
// Ea <= 14) is split as Ea = 8c + ed + ew with ed <= 4, ew <= 3, so A·W = (Ma·2^ed)·(W·2^ew)·2^(8c):
// Ma·2^ed <= 240 is an unsigned byte digit in class c (0 or 1), and W·2^ew (|W| <= 12, so <= 96)
// with the product's sign is a signed byte read from a 64-entry table at index ew·16 + nibble, the
// nibble's sign bit flipped by the activation's sign. Integer sums are exact, so this gives the
// tile path's bits.
constexpr int kGemvMaxRows = 4;
constexpr int64_t kGemvMaxKb = 64;  // k <= 8192 (stack scratch for the prepared activation)

struct Fp4GemvAct {  // one activation row, one K block; byte j covers k = 2j (even) and 2j+1 (odd)
  alignas(64) uint8_t dig[2][2][64];  // [class c][even/odd]: Ma·2^ed where the element is in class c
  alignas(64) uint8_t flip[2][64];    // [even/odd]: ew·16 + 8·sign, XORed into the weight nibble
};

constexpr std::array<int8_t, 64> make_fp4_shift_table() {
  std::array<int8_t, 64> t{};
  for (int ew = 0; ew < 4; ++ew)
    for (int nib = 0; nib < 16; ++nib) t[ew * 16 + nib] = int8_t(kE2m1Twice[nib] * (1 << ew));
  return t;
}
constexpr std::array<int8_t, 64> kFp4ShiftTable = make_fp4_shift_table();

void prepare_fp4_gemv_act(Fp4GemvAct* out, const uint8_t* x, int64_t kblocks) {
  for (int64_t kb = 0; kb < kblocks; ++kb)
    for (int j = 0; j < 64; ++j)
      for (int h = 0; h < 2; ++h) {
        const uint8_t code = x[kb * kBlk + 2 * j + h];
        const int e = (code >> 3) & 0xf, man = code & 7;
        const bool nan = (code & 0x7f) == 0x7f;  // NaN codes count as 0, as in the tile path
        const int ma = nan ? 0 : e == 0 ? man : (8 | man), ea = e == 0 ? 0 : e - 1;
        const int c = ea >= 8, r = ea - 8 * c, ed = std::min(r, 4), ew = r - ed;
        out[kb].dig[c][h][j] = uint8_t(ma << ed);
        out[kb].dig[1 - c][h][j] = 0;
        out[kb].flip[h][j] = uint8_t(ew * 16 + ((code & 0x80) ? 8 : 0));
      }
}

// e8m0 bytes of 4 rows x 4 sub-blocks (row r's 4 bytes in dword r) -> fp32 at lane s*4+r.
inline __m512 e8m0_4x4(__m128i rows) {
  const __m128i tr4 = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i b = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(rows, tr4));
  __m512i f = _mm512_slli_epi32(b, 23);
  f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(b, _mm512_setzero_si512()),
                            _mm512_set1_epi32(0x00400000));  // e8m0 0: 2^-127
  f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(b, _mm512_set1_epi32(255)),
                            _mm512_set1_epi32(0x7fc00000));  // e8m0 0xff: NaN
  return _mm512_castsi512_ps(f);
}

template <int M>
void fp4_gemv(const Fp4Args& a) {
  alignas(64) Fp4GemvAct act[M][kGemvMaxKb];
  for (int mm = 0; mm < M; ++mm) prepare_fp4_gemv_act(act[mm], a.xq + mm * a.k, a.kblocks);
  const int64_t groups = (a.n + 3) / 4, ldw = a.k / 2;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups; ++g) {
    const __m512i tbl = _mm512_loadu_si512(kFp4ShiftTable.data());
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const int64_t n0 = 4 * g;
    const uint8_t* wr[4];
    const uint8_t* sr[4];
    for (int r = 0; r < 4; ++r) {
      const int64_t row = std::min<int64_t>(n0 + r, a.n - 1);  // tail: recompute the last row
      wr[r] = a.w + row * ldw;
      sr[r] = a.ws + row * a.sblocks;
    }
    __m128 acc[M];
    for (int mm = 0; mm < M; ++mm) acc[mm] = _mm_setzero_ps();
    for (int64_t kb = 0; kb < a.kblocks; ++kb) {
      uint32_t sbw[4];
      for (int r = 0; r < 4; ++r) std::memcpy(&sbw[r], sr[r] + kb * 4, 4);  // 4 sub-block scales
      const __m512 sb = e8m0_4x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sbw)));
      __m512i v[M][4];
      for (int r = 0; r < 4; ++r) {
        // The next group's 4 rows (4·k/2 contiguous bytes) are fetched a quarter line per row per block.
        _mm_prefetch(reinterpret_cast<const char*>(wr[0] + 4 * ldw + (kb * 4 + r) * 64), _MM_HINT_T0);
        const __m512i b = _mm512_loadu_si512(wr[r] + kb * 64);
        const __m512i bh = _mm512_srli_epi16(b, 4);
        for (int mm = 0; mm < M; ++mm) {
          const Fp4GemvAct& x = act[mm][kb];
          const __m512i ie = _mm512_ternarylogic_epi32(b, nib, _mm512_load_si512(x.flip[0]), 0x6A);   // (b&15)^f
          const __m512i io = _mm512_ternarylogic_epi32(bh, nib, _mm512_load_si512(x.flip[1]), 0x6A);
          const __m512i we = _mm512_permutexvar_epi8(ie, tbl), wo = _mm512_permutexvar_epi8(io, tbl);
          __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(x.dig[0][0]), we);
          __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(x.dig[1][0]), we);
          s0 = _mm512_dpbusd_epi32(s0, _mm512_load_si512(x.dig[0][1]), wo);
          s1 = _mm512_dpbusd_epi32(s1, _mm512_load_si512(x.dig[1][1]), wo);
          v[mm][r] = _mm512_add_epi32(s0, _mm512_slli_epi32(s1, 8));
        }
      }
      for (int mm = 0; mm < M; ++mm) {
        // 128-bit lane s of v[r] holds sub-block s of row r in 4 dwords; reduce to lane s*4+r.
        const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[mm][0], v[mm][1]), _mm512_unpackhi_epi32(v[mm][0], v[mm][1]));
        const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[mm][2], v[mm][3]), _mm512_unpackhi_epi32(v[mm][2], v[mm][3]));
        const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
        const __m512 blk = _mm512_scalef_ps(_mm512_cvtepi32_ps(u), _mm512_set1_ps(-10.f));  // fp4_gemm: exact
                                                                                           // sub-block dot -> fp32
        const __m512 p = _mm512_mul_ps(blk, _mm512_mul_ps(_mm512_set1_ps(a.xs[mm * a.kblocks + kb]), sb));
        // fp4_gemm: fp32 accumulation in ascending sub-block order
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 0));
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 1));
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 2));
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 3));
      }
    }
    for (int mm = 0; mm < M; ++mm) {
      alignas(16) float o[4];
      _mm_store_ps(o, acc[mm]);
      for (int r = 0; r < 4 && n0 + r < a.n; ++r) a.y[mm * a.n + n0 + r] = f32_to_bf16(o[r]);  // fp4_gemm: bf16 out
    }
  }
}

bool try_fp4_gemv(const Fp4Args& a) {
  if (a.m > kGemvMaxRows || a.kblocks > kGemvMaxKb) return false;
  switch (a.m) {
    case 1: fp4_gemv<1>(a); return true;
    case 2: fp4_gemv<2>(a); return true;
    case 3: fp4_gemv<3>(a); return true;
    default: fp4_gemv<4>(a); return true;
  }
}
#else
bool try_fp4_gemv(const Fp4Args&) { return false; }
#endif

}  // namespace

void linear_fp4(std::span<bf16> y, std::span<const uint8_t> xq, std::span<const float> xs,
                std::span<const uint8_t> w, std::span<const uint8_t> ws, int64_t m, int64_t n, int64_t k) {
  assert(k % kBlk == 0);
  assert(int64_t(y.size()) >= m * n && int64_t(xq.size()) >= m * k && int64_t(xs.size()) >= m * (k / kBlk));
  assert(int64_t(w.size()) >= n * (k / 2) && int64_t(ws.size()) >= n * (k / kSub));
  if (m <= 0 || n <= 0) return;
  const Fp4Args a{m, n, k, k / kBlk, k / kSub, xq.data(), xs.data(), w.data(), ws.data(), y.data()};
  if (try_fp4_gemv(a)) return;  // same bits as the tiles (exact integer sub-block sums)
  const int64_t nt = (n + Nt - 1) / Nt, mt = (m + Mc - 1) / Mc;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t tn = 0; tn < nt; ++tn)
    for (int64_t tm = 0; tm < mt; ++tm) fp4_tile(a, tn * Nt, tm * Mc);
}

}  // namespace dsv4::kernels
