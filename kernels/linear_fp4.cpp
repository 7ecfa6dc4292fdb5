// FP4 expert linear (kernel.py fp4_gemm): e4m3 activations x e2m1 weights, exact 32-wide sub-blocks
// in int32. Units: an e4m3 magnitude is A·2^-9 with A an integer < 2^18; an e2m1 value is W·2^-1
// with W an integer in [-12, 12]. A sub-block sum Σ A·W < 2^26.4 fits int32 exactly; its fp32
// conversion is the kernel's one rounding per sub-block. The SIMD paths split the products into VNNI
// byte products (u8 x s8 -> int32), each its own way: the tiles take W + 12 against three signed base-2^7
// digits of A, the GEMV two exponent-class digits of A against W shifted by a table (see each).
#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/linear.hpp"
#include "kernels/linear_core.hpp"
#include "kernels/parallel.hpp"
#include "kernels/simd.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif


namespace dsv4::kernels {
namespace {

constexpr int kBlk = 128;  // activation scale block
constexpr int kSub = 32;   // weight scale block: the exact-sum unit

// e4m3 magnitude code (0..127) -> A = value·2^9 = ma·2^ea with ma < 16, ea <= 14: an integer below 2^18.
// Code 0x7f (NaN) maps to 0.
struct E4m3Int {
  int ma, ea;
};
constexpr E4m3Int e4m3_split(int c) {
  const int e = c >> 3, man = c & 7;
  return {c == 0x7f ? 0 : e == 0 ? man : (8 | man), e == 0 ? 0 : e - 1};
}
constexpr int e4m3_magnitude(int c) {
  const E4m3Int s = e4m3_split(c);
  return s.ma << s.ea;
}
constexpr std::array<int8_t, 16> kE2m1Twice = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

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

#if defined(__AVX512F__) && defined(__AVX512VBMI__) && defined(__AVX512VNNI__)
// Tiles of up to Mc activation rows x Nt weight rows. The weights are made unsigned, W' = W + 12 in
// [0, 24], so that VNNI (u8 x s8) takes them as its unsigned operand and the activations, signed, as three
// base-2^7 digits (|A| < 2^18): Σ A·W = Σ_d 2^(7d) Σ A_d·W' − 12·Σ A, all exact in int32 (|Σ A·W'| <
// 32·2^17.8·24 < 2^31). Per K block each weight row's 32 k-quads are transposed so that one vector holds a
// k-quad of 16 rows (lanes along n) and the activation digits of that k-quad are a broadcast: a 4 x 16
// micro-tile runs 12 VNNI chains with no horizontal sums, and each (row, col, sub-block) sum lands in one
// lane, in ascending sub-block order.
constexpr int Nt = 32, Mc = 64, kMr = 4;
static_assert(Mc % kMr == 0 && Nt % 16 == 0, "micro-tiles must fill a tile");

// e4m3 magnitude code -> A as three 7-bit digits (code 0x7f, NaN, maps to 0 as in the GEMV).
struct E4m3Digits7 {
  std::array<uint8_t, 128> d[3]{};
};
constexpr E4m3Digits7 make_digits7() {
  E4m3Digits7 t;
  for (int c = 0; c < 128; ++c)
    for (int d = 0; d < 3; ++d) t.d[d][c] = uint8_t((e4m3_magnitude(c) >> (7 * d)) & 0x7f);
  return t;
}
// Nibble -> W + 12 (the tiles' unsigned weight operand), repeated for each 128-bit lane's byte shuffle.
constexpr std::array<uint8_t, 16> make_offset_weights() {
  std::array<uint8_t, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = uint8_t(kE2m1Twice[i] + 12);
  return t;
}
constexpr std::array<uint8_t, 16> kOffsetWeights = make_offset_weights();
constexpr E4m3Digits7 kDigits7 = make_digits7();

// A 128-entry byte table as the two sources of vpermi2b: looked up by the 7 low bits of each byte (an e4m3
// code's magnitude; the sign bit is ignored).
struct ByteTable128 {
  __m512i lo, hi;
  explicit ByteTable128(const std::array<uint8_t, 128>& t)
      : lo(_mm512_loadu_si512(t.data())), hi(_mm512_loadu_si512(t.data() + 64)) {}
  __m512i operator()(__m512i code) const { return _mm512_permutex2var_epi8(lo, code, hi); }
};

void fp4_tile(const Fp4Args& a, int64_t n0, int64_t m0) {
  const int nv = int(std::min<int64_t>(Nt, a.n - n0)), mv = int(std::min<int64_t>(Mc, a.m - m0));
  const int mr = (mv + kMr - 1) / kMr * kMr;  // rows past mv recompute the last row and are dropped
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kOffsetWeights.data())));
  const ByteTable128 dig[3] = {ByteTable128(kDigits7.d[0]), ByteTable128(kDigits7.d[1]), ByteTable128(kDigits7.d[2])};
  const __m512i ones = _mm512_set1_epi8(1);

  alignas(64) float acc[Mc][Nt];
  alignas(64) uint32_t wt[Nt / 16][32][16];  // [half][k-quad][row]: 4 bytes W' of one row, one k-quad
  alignas(64) float sbv[Nt / 16][4][16];     // [half][sub-block][row]: weight scales
  alignas(64) int8_t ad[Mc][3][kBlk];        // activation digits, signed, in k order
  alignas(64) int32_t corr[Mc][4];           // 12·Σ A per sub-block
  for (int i = 0; i < mr; ++i) std::fill(acc[i], acc[i] + Nt, 0.f);
  const uint8_t* wrow[Nt];
  for (int j = 0; j < Nt; ++j) wrow[j] = a.w + (n0 + std::min(j, nv - 1)) * (a.k / 2);  // tail: recompute

  for (int64_t kb = 0; kb < a.kblocks; ++kb) {
    for (int hf = 0; hf < Nt / 16; ++hf) {
      __m512i r[16], t[16];
      for (int g = 0; g < 2; ++g) {  // k-quads 16g .. 16g+15 of the 16 rows
        for (int j = 0; j < 16; ++j) {
          const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow[16 * hf + j] + kb * 64 + 32 * g));
          const __m512i w = _mm512_cvtepu8_epi16(b);  // byte i -> word i: k = 2i (low nibble), 2i+1 (high)
          const __m512i nb = _mm512_or_si512(_mm512_and_si512(w, _mm512_set1_epi16(0x0f)),
                                             _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0xf0)), 4));
          r[j] = _mm512_shuffle_epi8(lut, nb);  // W' of k = 64g + 0..63, in k order
        }
        simd::transpose16(r, t);
        for (int q = 0; q < 16; ++q) _mm512_store_si512(wt[hf][16 * g + q], t[q]);
      }
      for (int j = 0; j < 16; ++j)
        for (int s = 0; s < 4; ++s)
          sbv[hf][s][j] = e8m0_to_f32(a.ws[(n0 + std::min(16 * hf + j, nv - 1)) * a.sblocks + kb * 4 + s]);
    }
    for (int i = 0; i < mr; ++i) {
      const uint8_t* c = a.xq + (m0 + std::min(i, mv - 1)) * a.k + kb * kBlk;
      __m512i sum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};  // dword q: Σ A of k-quad q (·2^-7d)
      for (int h = 0; h < 2; ++h) {
        const __m512i code = _mm512_loadu_si512(c + 64 * h);
        const __mmask64 neg = _mm512_movepi8_mask(code);
        for (int d = 0; d < 3; ++d) {
          __m512i v = dig[d](code);
          v = _mm512_mask_sub_epi8(v, neg, _mm512_setzero_si512(), v);       // the activation's sign
          _mm512_store_si512(ad[i][d] + 64 * h, v);
          sum[h] = _mm512_add_epi32(sum[h], _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, v), 7 * d));
        }
      }
      alignas(64) int32_t qs[32];
      _mm512_store_si512(qs, sum[0]);
      _mm512_store_si512(qs + 16, sum[1]);
      for (int s = 0; s < 4; ++s) {
        int32_t t = 0;
        for (int q = 0; q < 8; ++q) t += qs[8 * s + q];
        corr[i][s] = 12 * t;
      }
    }
    for (int hf = 0; hf < Nt / 16; ++hf)
      for (int i0 = 0; i0 < mr; i0 += kMr) {
        __m512 f[kMr];
        for (int i = 0; i < kMr; ++i) f[i] = _mm512_load_ps(&acc[i0 + i][16 * hf]);
        for (int s = 0; s < 4; ++s) {
          __m512i z[kMr][3];
          for (int i = 0; i < kMr; ++i)
            for (int d = 0; d < 3; ++d) z[i][d] = _mm512_setzero_si512();
#pragma GCC unroll 8
          for (int q = 0; q < 8; ++q) {
            const __m512i w = _mm512_load_si512(wt[hf][8 * s + q]);
            for (int i = 0; i < kMr; ++i)
              for (int d = 0; d < 3; ++d) {
                int32_t x4;
                std::memcpy(&x4, ad[i0 + i][d] + 32 * s + 4 * q, 4);
                z[i][d] = _mm512_dpbusd_epi32(z[i][d], w, _mm512_set1_epi32(x4));
              }
          }
          const __m512 sb = _mm512_load_ps(sbv[hf][s]);
          for (int i = 0; i < kMr; ++i) {
            const __m512i v = _mm512_sub_epi32(
                _mm512_add_epi32(_mm512_add_epi32(z[i][0], _mm512_slli_epi32(z[i][1], 7)), _mm512_slli_epi32(z[i][2], 14)),
                _mm512_set1_epi32(corr[i0 + i][s]));
            const __m512 blk = _mm512_scalef_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(-10.f));  // fp4_gemm: exact
                                                                                               // sub-block dot -> fp32
            const float sa = a.xs[(m0 + std::min(i0 + i, mv - 1)) * a.kblocks + kb];
            f[i] = _mm512_add_ps(f[i], _mm512_mul_ps(blk, _mm512_mul_ps(_mm512_set1_ps(sa), sb)));  // fp4_gemm: fp32
                                                                                                    // accumulation
          }
        }
        for (int i = 0; i < kMr; ++i) _mm512_store_ps(&acc[i0 + i][16 * hf], f[i]);
      }
  }
  for (int i = 0; i < mv; ++i)
    for (int j = 0; j < nv; ++j) a.y[(m0 + i) * a.n + n0 + j] = f32_to_bf16(acc[i][j]);  // fp4_gemm: bf16 out
}
#else
constexpr int Nt = 16, Mc = 16;

inline int32_t e4m3_int(uint8_t c) {  // signed value·2^9
  const int32_t a = e4m3_magnitude(c & 0x7f);
  return (c & 0x80) ? -a : a;
}

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

#if defined(__AVX512F__) || defined(__AVX2__)
// A GEMV group of both SIMD GEMVs: weight rows n0 .. n0+3 (past n: the last row again, recomputed and
// dropped), their scale bytes per K block, and the output store.
struct Fp4GemvRows {
  const Fp4Args& a;
  int64_t n0;
  const uint8_t* w[4];
  const uint8_t* s[4];
  Fp4GemvRows(const Fp4Args& args, int64_t first) : a(args), n0(first) {
    for (int r = 0; r < 4; ++r) {
      const int64_t row = std::min<int64_t>(n0 + r, a.n - 1);
      w[r] = a.w + row * (a.k / 2);
      s[r] = a.ws + row * a.sblocks;
    }
  }
  __m128i scale_bytes(int64_t kb) const {  // row r's 4 sub-block scales in dword r
    uint32_t b[4];
    for (int r = 0; r < 4; ++r) std::memcpy(&b[r], s[r] + kb * 4, 4);
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
  }
  void store(int mm, __m128 acc) const {  // activation row mm's 4 outputs
    alignas(16) float o[4];
    _mm_store_ps(o, acc);
    for (int r = 0; r < 4 && n0 + r < a.n; ++r) a.y[mm * a.n + n0 + r] = f32_to_bf16(o[r]);  // fp4_gemm: bf16 out
  }
};
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
constexpr int64_t kGemvMaxKb = detail::kGemvMaxK / kBlk;  // stack scratch for the prepared activations

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

// The split per magnitude code (0..127): the class-0 and class-1 digits and ew·16 (NaN codes count as 0,
// as in the tile path), read with 128-entry byte lookups: the prepared row costs a few vector operations
// per K block instead of a scalar split per element (about 4 us per call at k = 2048).
struct Fp4GemvSplit {
  std::array<uint8_t, 128> dig[2]{}, ew16{};
};
constexpr Fp4GemvSplit make_fp4_gemv_split() {
  Fp4GemvSplit t;
  for (int code = 0; code < 128; ++code) {
    const auto [ma, ea] = e4m3_split(code);
    const int c = ea >= 8, r = ea - 8 * c, ed = std::min(r, 4), ew = r - ed;
    t.dig[c][code] = uint8_t(ma << ed);
    t.ew16[code] = uint8_t(ew * 16);
  }
  return t;
}
constexpr Fp4GemvSplit kFp4GemvSplit = make_fp4_gemv_split();

void prepare_fp4_gemv_act(Fp4GemvAct* out, const uint8_t* x, int64_t kblocks) {
  const ByteTable128 dig0(kFp4GemvSplit.dig[0]), dig1(kFp4GemvSplit.dig[1]), ew16(kFp4GemvSplit.ew16);
  alignas(64) uint8_t pick[2][64];  // the even and the odd codes of a 128-code block
  for (int j = 0; j < 64; ++j) pick[0][j] = uint8_t(2 * j), pick[1][j] = uint8_t(2 * j + 1);
  const __m512i sign_to_8 = _mm512_set1_epi8(8);
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    const __m512i a = _mm512_loadu_si512(x + kb * kBlk), b = _mm512_loadu_si512(x + kb * kBlk + 64);
    for (int h = 0; h < 2; ++h) {
      const __m512i code = _mm512_permutex2var_epi8(a, _mm512_load_si512(pick[h]), b);
      _mm512_store_si512(out[kb].dig[0][h], dig0(code));
      _mm512_store_si512(out[kb].dig[1][h], dig1(code));
      // ew·16 | 8·sign: the sign bit (7) shifted to bit 3 within each byte
      _mm512_store_si512(out[kb].flip[h],
                         _mm512_ternarylogic_epi32(ew16(code), _mm512_srli_epi16(code, 4), sign_to_8, 0xF8));
    }
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
  detail::parallel_for(groups, [&](int64_t g) {
    const __m512i tbl = _mm512_loadu_si512(kFp4ShiftTable.data());
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const Fp4GemvRows rows(a, 4 * g);
    const uint8_t* const* wr = rows.w;
    if constexpr (M == 1) detail::prefetch_pages_ahead(wr[0], 4 * ldw);
    __m128 acc[M];
    for (int mm = 0; mm < M; ++mm) acc[mm] = _mm_setzero_ps();
    // The fp32 steps of a block (convert, scale, 4 dependent adds) run one block late, after the next
    // block's integer sums: in program order the long-latency tail then sits behind independent work.
    __m512i u_prev[M];
    __m512 scale_prev[M];
    const auto fp32_steps = [&](const __m512i (&u)[M], const __m512 (&scale)[M]) {
      for (int mm = 0; mm < M; ++mm) {
        const __m512 blk = _mm512_scalef_ps(_mm512_cvtepi32_ps(u[mm]), _mm512_set1_ps(-10.f));  // fp4_gemm: exact
                                                                                              // sub-block dot -> fp32
        const __m512 p = _mm512_mul_ps(blk, scale[mm]);
        // fp4_gemm: fp32 accumulation in ascending sub-block order
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 0));
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 1));
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 2));
        acc[mm] = _mm_add_ps(acc[mm], _mm512_extractf32x4_ps(p, 3));
      }
    };
    for (int64_t kb = 0; kb < a.kblocks; ++kb) {
      const __m512 sb = e8m0_4x4(rows.scale_bytes(kb));
      __m512i b[4], bh[4];
      for (int r = 0; r < 4; ++r) {
        // The group after next (4 rows, 4·k/2 contiguous bytes) is fetched one line per row per block.
        _mm_prefetch(reinterpret_cast<const char*>(wr[0] + 2 * 4 * ldw + (kb * 4 + r) * 64), _MM_HINT_T0);
        b[r] = _mm512_loadu_si512(wr[r] + kb * 64);
        bh[r] = _mm512_srli_epi16(b[r], 4);
      }
      __m512i u[M];
      __m512 scale[M];
      // One activation row at a time over the 4 weight rows: few live registers for any M.
      for (int mm = 0; mm < M; ++mm) {
        const Fp4GemvAct& x = act[mm][kb];
        __m512i v[4];
        for (int r = 0; r < 4; ++r) {
          const __m512i ie = _mm512_ternarylogic_epi32(b[r], nib, _mm512_load_si512(x.flip[0]), 0x6A);  // (b&15)^f
          const __m512i io = _mm512_ternarylogic_epi32(bh[r], nib, _mm512_load_si512(x.flip[1]), 0x6A);
          const __m512i we = _mm512_permutexvar_epi8(ie, tbl), wo = _mm512_permutexvar_epi8(io, tbl);
          __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(x.dig[0][0]), we);
          __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(x.dig[1][0]), we);
          s0 = _mm512_dpbusd_epi32(s0, _mm512_load_si512(x.dig[0][1]), wo);
          s1 = _mm512_dpbusd_epi32(s1, _mm512_load_si512(x.dig[1][1]), wo);
          v[r] = _mm512_add_epi32(s0, _mm512_slli_epi32(s1, 8));
        }
        // 128-bit lane s of v[r] holds sub-block s of row r in 4 dwords; reduce to lane s*4+r.
        const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
        const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
        u[mm] = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
        scale[mm] = _mm512_mul_ps(_mm512_set1_ps(a.xs[mm * a.kblocks + kb]), sb);
      }
      if (kb > 0) fp32_steps(u_prev, scale_prev);
      for (int mm = 0; mm < M; ++mm) u_prev[mm] = u[mm], scale_prev[mm] = scale[mm];
    }
    if (a.kblocks > 0) fp32_steps(u_prev, scale_prev);
    for (int mm = 0; mm < M; ++mm) rows.store(mm, acc[mm]);
  });
}

bool try_fp4_gemv(const Fp4Args& a) {
  if (a.m > detail::kGemvChunkedRows || a.kblocks > kGemvMaxKb) return false;
  detail::gemv_in_row_chunks(a, [](auto rows, const Fp4Args& c) { fp4_gemv<rows()>(c); });
  return true;
}
#elif defined(__AVX2__)
// AVX2 GEMV, for every row count in passes of up to 4 rows (no VNNI, no 64-entry byte permutes). As in
// the AVX-512 GEMV the weight nibble, its sign bit flipped by the activation's sign, is looked up as the
// signed byte W (a 16-entry in-lane shuffle), and the activation side carries the exponent: A = Ma·2^Ea
// with Ea = 5c + r (r <= 4) gives per class c the unsigned digit Ma·2^r <= 240 (0 outside the class).
// vpmaddubsw sums byte pairs of digit × W into int16 (at most 2·240·12 per pair, 4 terms when the even
// and odd nibbles are added: no saturation), vpmaddwd widens to int32, and the classes are added with
// their 2^(5c): exact integer sums again, so the bits of the tiles.
constexpr int64_t kChunkK = 64;  // k per 32-byte weight load
constexpr int64_t kGemvMaxChunks = detail::kGemvMaxK / kChunkK;

struct Fp4GemvAct2 {  // one activation row, one 64-k chunk; byte j covers k = 2j (even) and 2j+1 (odd)
  alignas(32) uint8_t dig[3][2][32];  // [class c][even/odd]: Ma·2^r where the element is in class c
  alignas(32) uint8_t flip[2][32];    // [even/odd]: 8 (the nibble's sign bit) when the activation is negative
};

void prepare_fp4_gemv_act2(Fp4GemvAct2* out, const uint8_t* x, int64_t chunks) {
  for (int64_t ch = 0; ch < chunks; ++ch) {
    std::memset(out[ch].dig, 0, sizeof out[ch].dig);
    for (int j = 0; j < 32; ++j)
      for (int h = 0; h < 2; ++h) {
        const uint8_t code = x[ch * kChunkK + 2 * j + h];
        const auto [ma, ea] = e4m3_split(code & 0x7f);  // NaN codes count as 0, as in the tile path
        out[ch].dig[ea / 5][h][j] = uint8_t(ma << (ea % 5));
        out[ch].flip[h][j] = (code & 0x80) ? 8 : 0;
      }
  }
}

// e8m0 bytes of 4 rows x 4 sub-blocks (row r's 4 bytes in dword r) -> fp32, sb[h] lane 4·s' + r for
// sub-block s = 2h + s'.
inline void e8m0_4x4(__m128i rows, __m256 (&sb)[2]) {
  const __m128i t = _mm_shuffle_epi8(rows, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  for (int h = 0; h < 2; ++h) {
    const __m256i b = _mm256_cvtepu8_epi32(h ? _mm_srli_si128(t, 8) : t);
    __m256i f = _mm256_slli_epi32(b, 23);
    f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(b, _mm256_setzero_si256()));  // 2^-127
    f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x7fc00000), _mm256_cmpeq_epi32(b, _mm256_set1_epi32(255)));  // NaN
    sb[h] = _mm256_castsi256_ps(f);
  }
}

template <int M>
void fp4_gemv_avx2(const Fp4Args& a) {
  const int64_t chunks = a.k / kChunkK;
  alignas(32) Fp4GemvAct2 act[M][kGemvMaxChunks];
  for (int mm = 0; mm < M; ++mm) prepare_fp4_gemv_act2(act[mm], a.xq + mm * a.k, chunks);
  const int64_t groups = (a.n + 3) / 4, ldw = a.k / 2;
  detail::parallel_for(groups, [&](int64_t g) {
    const __m256i tbl =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kE2m1Twice.data())));
    const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const Fp4GemvRows rows(a, 4 * g);
    const uint8_t* const* wr = rows.w;
    __m128 acc[M];
    for (int mm = 0; mm < M; ++mm) acc[mm] = _mm_setzero_ps();
    for (int64_t kb = 0; kb < a.kblocks; ++kb) {
      __m256 sb[2];
      e8m0_4x4(rows.scale_bytes(kb), sb);
      __m256i lo[4][2], hi[4][2];  // [row][chunk]: the even and odd nibbles
      for (int r = 0; r < 4; ++r) {
        // The group after next (4 rows, 4·k/2 contiguous bytes) is fetched one line per row per block.
        _mm_prefetch(reinterpret_cast<const char*>(wr[0] + 2 * 4 * ldw + (kb * 4 + r) * 64), _MM_HINT_T0);
        for (int h = 0; h < 2; ++h) {
          const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + kb * 64 + 32 * h));
          lo[r][h] = _mm256_and_si256(b, nib);
          hi[r][h] = _mm256_and_si256(_mm256_srli_epi16(b, 4), nib);
        }
      }
      for (int mm = 0; mm < M; ++mm) {
        const __m256 sa = _mm256_set1_ps(a.xs[mm * a.kblocks + kb]);
        for (int h = 0; h < 2; ++h) {  // sub-blocks 2h, 2h + 1
          const Fp4GemvAct2& x = act[mm][2 * kb + h];
          const __m256i fe = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.flip[0]));
          const __m256i fo = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.flip[1]));
          __m256i v[4];
          for (int r = 0; r < 4; ++r) {
            const __m256i we = _mm256_shuffle_epi8(tbl, _mm256_xor_si256(lo[r][h], fe));
            const __m256i wo = _mm256_shuffle_epi8(tbl, _mm256_xor_si256(hi[r][h], fo));
            __m256i sum = _mm256_setzero_si256();
            for (int c = 0; c < 3; ++c) {
              const __m256i d16 = _mm256_add_epi16(
                  _mm256_maddubs_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(x.dig[c][0])), we),
                  _mm256_maddubs_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(x.dig[c][1])), wo));
              sum = _mm256_add_epi32(sum, _mm256_slli_epi32(_mm256_madd_epi16(d16, ones), 5 * c));
            }
            v[r] = sum;  // 128-bit lane s' (sub-block 2h + s') of row r in 4 dwords
          }
          // lane 4s' + r
          const __m256i u = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
          const __m256 blk = _mm256_mul_ps(_mm256_cvtepi32_ps(u), _mm256_set1_ps(0x1p-10f));  // fp4_gemm: exact
                                                                                             // sub-block dot -> fp32
          const __m256 p = _mm256_mul_ps(blk, _mm256_mul_ps(sa, sb[h]));
          // fp4_gemm: fp32 accumulation in ascending sub-block order
          acc[mm] = _mm_add_ps(acc[mm], _mm256_castps256_ps128(p));
          acc[mm] = _mm_add_ps(acc[mm], _mm256_extractf128_ps(p, 1));
        }
      }
    }
    for (int mm = 0; mm < M; ++mm) rows.store(mm, acc[mm]);
  });
}

bool try_fp4_gemv(const Fp4Args& a) {
  if (a.k > detail::kGemvMaxK) return false;
  detail::gemv_in_row_chunks(a, [](auto rows, const Fp4Args& c) { fp4_gemv_avx2<rows()>(c); });
  return true;
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
  detail::parallel_for(nt * mt, [&](int64_t tile) { fp4_tile(a, tile / mt * Nt, tile % mt * Mc); });
}

}  // namespace dsv4::kernels
