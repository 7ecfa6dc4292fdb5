// Internal to kernels/linear_*.cpp: the fp64 dot-product engine of the BF16 linears (FP8 and FP4 have
// their own engines, as their block sums are exact in any order; they share hsum8 and the GEMV limits).
// Not a public header.
//
// Canonical per-element order (every path, every batch size, the scalar fallback):
//   K is cut into 128-wide blocks, visited in ascending order. Inside a block, lane l (0..7) sums
//   x[k]*w[k] for k = l, l+8, ..., l+120 in ascending k (products are exact in fp64 for every input
//   format used here, so an FMA chain equals "add the exact product"); the 8 lanes are then added as
//   ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). The block sums are added in fp64 in ascending block order.
// Batch invariance follows: a row's result never depends on which other rows are computed with it.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/numerics.hpp"
#include "kernels/parallel.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace dsv4::kernels::detail {

inline constexpr int kBlk = 128;      // K block of the canonical order (= act_quant block)
inline constexpr int kGemvRows = 4;   // at most this many activation rows take the GEMV path

// Scalar canonical block sum of two decoded 128-blocks (the portable path and the tests' twin).
inline double block_dot_canonical(const double* a, const double* b) {
  double lane[8];
  for (int l = 0; l < 8; ++l) {
    double s = 0.0;
    for (int q = 0; q < 16; ++q) s += a[8 * q + l] * b[8 * q + l];  // exact products (see header)
    lane[l] = s;
  }
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

#ifdef __AVX512F__
// Sum each of 8 vectors; lane i of the result = sum of v[i], with the canonical lane tree.
inline __m512d hsum8(const __m512d* v) {
  // Named temporaries, no local arrays: GCC then keeps the 8 inputs in registers (with arrays it stored
  // them to the stack first: 3% of the FP8 GEMV's time).
  const auto pairs = [](__m512d a, __m512d b) {  // (0+1), (2+3), (4+5), (6+7) of a and b, interleaved
    return _mm512_add_pd(_mm512_unpacklo_pd(a, b), _mm512_unpackhi_pd(a, b));
  };
  const auto halves = [](__m512d a, __m512d b) {
    return _mm512_add_pd(_mm512_shuffle_f64x2(a, b, 0x88), _mm512_shuffle_f64x2(a, b, 0xDD));
  };
  const __m512d u0 = halves(pairs(v[0], v[1]), pairs(v[2], v[3]));  // (0+1)+(2+3) and (4+5)+(6+7)
  const __m512d u1 = halves(pairs(v[4], v[5]), pairs(v[6], v[7]));
  return halves(u0, u1);
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2 holds the 8 canonical lanes of a block sum in two 4-lane halves (lanes 0-3, 4-7). Lane i of the
// result = the canonical sum of pair i: ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
inline __m256d hsum4x8(const __m256d lo[4], const __m256d hi[4]) {
  __m256d h[4];
  for (int i = 0; i < 4; ++i) h[i] = _mm256_hadd_pd(lo[i], hi[i]);  // [l0+l1, l4+l5, l2+l3, l6+l7]
  // [A0, B0, A1, B1] and [A2, B2, A3, B3]: A = (l0+l1)+(l2+l3), B = (l4+l5)+(l6+l7)
  const __m256d u01 = _mm256_add_pd(_mm256_permute2f128_pd(h[0], h[1], 0x20), _mm256_permute2f128_pd(h[0], h[1], 0x31));
  const __m256d u23 = _mm256_add_pd(_mm256_permute2f128_pd(h[2], h[3], 0x20), _mm256_permute2f128_pd(h[2], h[3], 0x31));
  return _mm256_permute4x64_pd(_mm256_hadd_pd(u01, u23), 0xD8);  // A+B of pairs 0, 2, 1, 3 -> 0..3
}
#endif

// ---- the two engines. P (a "problem") supplies:
//   int64_t m, n, k;                                 shapes (k % 128 == 0)
//   void decode_a(int64_t row, int64_t kb, double* out128) const;   activation block -> fp64
//   void decode_b(int64_t row, int64_t kb, double* out128) const;   weight block -> fp64
//   AVX-512 only: B64 load_b64(int64_t row, int64_t kb, int half) const;  weight elements
//                 kb*128 + half*64 .. +63 made ready to decode (loaded and pre-shuffled);
//                 __m512d get_b8(const B64&, int q) const;  elements 8q .. 8q+7 of those 64 as fp64
//   AVX2 only:    B32 load_b32(int64_t row, int64_t kb, int c) const;  elements kb*128 + 32c .. +31 made
//                 ready to decode; __m256d get_b4(const B32&, int e) const;  elements 4e .. 4e+3 of those as fp64
//   const char* row_address(int64_t row) const; static constexpr int kWeightBytes;  weight rows, bytes per
//                 weight (prefetching)
//   void store(int64_t row, int64_t col, double acc) const;          final rounding and write
//   optional: double block_scale(int64_t row, int64_t kb) const;  a power of two (or NaN) that the SIMD
//             GEMVs multiply into each block sum: get_b8 / get_b4 give decode_b's values divided by it.
//             Scaling by a power of two commutes with every fp64 rounding of the block sum (as long as no
//             partial sum nears the fp64 range limits), so the bits agree.

// GEMV: up to kGemvRows activation rows (k <= kGemvMaxK); weights are decoded on the fly and streamed
// once. Each thread decodes the activation rows once, then walks groups of 8 weight rows; inside a group,
// sub-groups of S rows keep S*M <= 8 (row, activation-row) pairs in registers for one 8-way reduction,
// and the next group's rows (contiguous) are prefetched a slice per K block.
inline constexpr int64_t kGemvMaxK = 8192;  // activations on each thread's stack: M·k·8 bytes

// Page-ahead prefetch of a weight stream: called at the start of each group of weight rows (contiguous
// bytes), it prefetches one line of every 4 KiB page kPageAhead bytes past the group, so that each page's
// first miss happens long before the dense prefetches of the next group reach it. (What that first miss
// costs is not the guest's TLB walk, as 2 MB pages changed nothing: a host page walk or a DRAM row.) For the
// single-row GEMVs only (bench A/B, Zen 5 VM, one thread: FP4 m = 1 22 -> 28-29 GB/s, FP8 m = 1 +10-24%);
// with 2-4 activation rows the stream is slower and it lost 0-13%, and the compute-bound AVX2 FP8 / FP4
// GEMVs (10-14 GB/s) lost 4-7%, so they do without.
inline constexpr int64_t kPageAhead = 64 << 10;
inline void prefetch_pages_ahead(const void* group, int64_t bytes) {
  const char* p = static_cast<const char*>(group) + kPageAhead;
  for (int64_t off = 0; off < bytes; off += 4096) __builtin_prefetch(p + off);  // never faults past the end
}

// The GEMVs' block scales of pairs i = r*M + mm (weight row rows[r]); 1 past S*M or without a scale. Returned
// by value, so that the vector built from them needs no store and reload (a failed store forward per block).
template <int M, int S, class P>
std::array<double, 8> gemv_block_scales(const P& p, const int64_t* rows, int64_t kb) {
  std::array<double, 8> out;
  out.fill(1.0);
  if constexpr (requires { p.block_scale(rows[0], kb); })
    for (int r = 0; r < S; ++r) {
      const double s = p.block_scale(rows[r], kb);  // once per row
      for (int mm = 0; mm < M; ++mm) out[r * M + mm] = s;
    }
  return out;
}

// The FP8 and FP4 GEMVs also take up to kGemvChunkedRows activation rows, kGemvRows per pass over the
// weights: a decoded weight then serves at most 4 rows, yet up to 8 rows this beats their GEMMs, whose
// weight-panel decode needs many rows to pay off (2048x4096, one thread, 5 and 8 rows: FP8 1.44 and
// 2.29 ms vs 2.71 and 2.71 ms; FP4 0.70 and 1.09 ms vs 1.25 and 1.24 ms).
inline constexpr int64_t kGemvChunkedRows = 8;

// gemv(std::integral_constant<int, M>, chunk) for consecutive chunks of M <= kGemvRows rows of a; Args
// has m, n, k, kblocks and the row-major pointers xq [m, k], xs [m, kblocks], y [m, n].
template <class Args, class Gemv>
void gemv_in_row_chunks(const Args& a, Gemv&& gemv) {
  static_assert(kGemvRows == 4, "the dispatch below covers M = 1..4");
  for (int64_t m0 = 0; m0 < a.m; m0 += kGemvRows) {
    Args c = a;
    c.m = std::min<int64_t>(kGemvRows, a.m - m0);
    c.xq += m0 * a.k, c.xs += m0 * a.kblocks, c.y += m0 * a.n;
    switch (c.m) {
      case 1: gemv(std::integral_constant<int, 1>{}, c); break;
      case 2: gemv(std::integral_constant<int, 2>{}, c); break;
      case 3: gemv(std::integral_constant<int, 3>{}, c); break;
      default: gemv(std::integral_constant<int, 4>{}, c); break;
    }
  }
}

template <int M, class P>
void gemv_engine(const P& p) {
  constexpr int R = 8;                               // weight rows per group
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
  constexpr int S = M == 1 ? 4 : M == 2 ? 2 : 1;     // AVX2: 4 pairs of two half accumulators in 16 registers
#else
  constexpr int S = M == 1 ? 8 : M == 2 ? 4 : 2;     // weight rows per sub-group
#endif
  constexpr int G = R / S;                           // sub-groups per group
  const int64_t kblocks = p.k / kBlk, groups = (p.n + R - 1) / R;
  constexpr int pf_lines = R * kBlk * P::kWeightBytes / 64;  // the next group's lines per K block
  parallel_region(groups, [&](WorkShare& ws) {
    alignas(64) double a[M][kGemvMaxK];
    for (int mm = 0; mm < M; ++mm)
      for (int64_t kb = 0; kb < kblocks; ++kb) p.decode_a(mm, kb, a[mm] + kb * kBlk);
    ws.for_each([&](int64_t g) {
      const int64_t n0 = g * R;
      int64_t rows[R];
      for (int r = 0; r < R; ++r) rows[r] = std::min<int64_t>(n0 + r, p.n - 1);  // tail: recompute
      const char* next = p.row_address(std::min<int64_t>(n0 + R, p.n - 1));
      if constexpr (M == 1) prefetch_pages_ahead(p.row_address(rows[0]), R * p.k * P::kWeightBytes);
      alignas(64) double acc[G][8] = {};  // sub-group sg, pair i = r*M + mm (r within the sub-group)
      for (int64_t kb = 0; kb < kblocks; ++kb) {
#ifndef __AVX512F__
        for (int l = 0; l < pf_lines; ++l) __builtin_prefetch(next + (kb * pf_lines + l) * 64);
#endif
        for (int sg = 0; sg < G; ++sg) {
          const int64_t* rw = rows + sg * S;
#ifdef __AVX512F__
          // Rows are interleaved inside the q loop so that consecutive FMAs are independent (each
          // lane's chain is one (row, activation-row) pair, in ascending k: the canonical order).
          __m512d part[8];
          for (int i = 0; i < 8; ++i) part[i] = _mm512_setzero_pd();
          for (int h = 0; h < 2; ++h) {
            typename P::B64 wb[S];
            for (int r = 0; r < S; ++r) {
              // The next group's slice, spread over the block's 2·R loads: a burst of 16-32 prefetches at the
              // block start filled the miss buffers and stalled the core (a third of wo_a's GEMV time).
              const char* pf = next + (kb * pf_lines + ((sg * 2 + h) * S + r) * P::kWeightBytes) * 64;
              for (int l = 0; l < P::kWeightBytes; ++l) __builtin_prefetch(pf + 64 * l);
              wb[r] = p.load_b64(rw[r], kb, h);
            }
#pragma GCC unroll 8
            for (int q = 0; q < 8; ++q) {  // unrolled: get_b8 may pick its decode by q at compile time
              __m512d av[M];
              for (int mm = 0; mm < M; ++mm) av[mm] = _mm512_load_pd(a[mm] + kb * kBlk + h * 64 + q * 8);
              for (int r = 0; r < S; ++r) {
                const __m512d d = p.get_b8(wb[r], q);
                for (int mm = 0; mm < M; ++mm) part[r * M + mm] = _mm512_fmadd_pd(d, av[mm], part[r * M + mm]);
              }
            }
          }
          const auto sc = gemv_block_scales<M, S>(p, rw, kb);
          const __m512d scale = _mm512_setr_pd(sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7]);
          _mm512_store_pd(acc[sg], _mm512_fmadd_pd(hsum8(part), scale, _mm512_load_pd(acc[sg])));
#elif defined(__AVX2__) && defined(__FMA__)
          __m256d lo[4], hi[4];  // canonical lanes 0-3 and 4-7 of pair i = r*M + mm
          for (int i = 0; i < 4; ++i) lo[i] = hi[i] = _mm256_setzero_pd();
          // A row's 32 weights are decoded and used before the next row's (few registers); the rows'
          // chains are independent, so they still overlap.
          for (int c = 0; c < kBlk / 32; ++c)
            for (int r = 0; r < S; ++r) {
              const typename P::B32 b = p.load_b32(rw[r], kb, c);
#pragma GCC unroll 4
              for (int q = 0; q < 4; ++q) {
                const __m256d b0 = p.get_b4(b, 2 * q), b1 = p.get_b4(b, 2 * q + 1);
                for (int mm = 0; mm < M; ++mm) {
                  const double* x = a[mm] + kb * kBlk + 32 * c + 8 * q;
                  lo[r * M + mm] = _mm256_fmadd_pd(b0, _mm256_load_pd(x), lo[r * M + mm]);
                  hi[r * M + mm] = _mm256_fmadd_pd(b1, _mm256_load_pd(x + 4), hi[r * M + mm]);
                }
              }
            }
          const auto sc = gemv_block_scales<M, S>(p, rw, kb);
          const __m256d scale = _mm256_setr_pd(sc[0], sc[1], sc[2], sc[3]);
          _mm256_store_pd(acc[sg], _mm256_fmadd_pd(hsum4x8(lo, hi), scale, _mm256_load_pd(acc[sg])));
#else
          alignas(64) double b[kBlk];
          for (int r = 0; r < S; ++r) {
            p.decode_b(rw[r], kb, b);
            for (int mm = 0; mm < M; ++mm) acc[sg][r * M + mm] += block_dot_canonical(a[mm] + kb * kBlk, b);
          }
#endif
        }
      }
      for (int r = 0; r < R && n0 + r < p.n; ++r)
        for (int mm = 0; mm < M; ++mm) p.store(mm, n0 + r, acc[r / S][(r % S) * M + mm]);
    });
  });
}

// GEMM: tiles of Mc activation rows x Nt weight rows; each K block of the tile is decoded once to
// fp64 in stack scratch (Mc + Nt rows of 128 doubles) and reused by 4x4 register micro-tiles.
template <class P>
void gemm_engine(const P& p) {
  constexpr int Mc = 32, Nt = 32;  // 32 KiB of decoded A and of B per K block: L1/L2 resident
  const int64_t kblocks = p.k / kBlk;
  const int64_t mt = (p.m + Mc - 1) / Mc, nt = (p.n + Nt - 1) / Nt;
  parallel_for(nt * mt, [&](int64_t tile) {
    const int64_t m0 = tile % mt * Mc, n0 = tile / mt * Nt;
    const int mv = int(std::min<int64_t>(Mc, p.m - m0)), nv = int(std::min<int64_t>(Nt, p.n - n0));
    const int mr = (mv + 3) & ~3, nr = (nv + 3) & ~3;  // rounded to the micro-tile; extra rows
                                                        // recompute the last one and are dropped
    alignas(64) double A[Mc][kBlk];
    alignas(64) double B[Nt][kBlk];
    alignas(64) double acc[Mc][Nt];
    for (int i = 0; i < mr; ++i) std::fill(acc[i], acc[i] + nr, 0.0);
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      for (int i = 0; i < mr; ++i) p.decode_a(m0 + std::min(i, mv - 1), kb, A[i]);
      for (int j = 0; j < nr; ++j) p.decode_b(n0 + std::min(j, nv - 1), kb, B[j]);
      for (int i = 0; i < mr; i += 4)
        for (int j = 0; j < nr; j += 4) {
#ifdef __AVX512F__
          __m512d c[16];
          for (int t = 0; t < 16; ++t) c[t] = _mm512_setzero_pd();
          for (int q = 0; q < 16; ++q) {
            __m512d av[4], bv[4];
            for (int t = 0; t < 4; ++t) av[t] = _mm512_load_pd(A[i + t] + 8 * q);
            for (int t = 0; t < 4; ++t) bv[t] = _mm512_load_pd(B[j + t] + 8 * q);
            for (int ti = 0; ti < 4; ++ti)
              for (int tj = 0; tj < 4; ++tj)
                c[ti * 4 + tj] = _mm512_fmadd_pd(av[ti], bv[tj], c[ti * 4 + tj]);
          }
          for (int half = 0; half < 2; ++half) {  // rows i+2*half, i+2*half+1
            const __m512d blk = hsum8(c + 8 * half);
            const int r0 = i + 2 * half;
            const __m512d old = _mm512_insertf64x4(
                _mm512_castpd256_pd512(_mm256_load_pd(acc[r0] + j)), _mm256_load_pd(acc[r0 + 1] + j), 1);
            const __m512d nw = _mm512_add_pd(old, blk);
            _mm256_store_pd(acc[r0] + j, _mm512_castpd512_pd256(nw));
            _mm256_store_pd(acc[r0 + 1] + j, _mm512_extractf64x4_pd(nw, 1));
          }
#elif defined(__AVX2__) && defined(__FMA__)
          for (int ti = 0; ti < 4; ti += 2)  // 2 x 2 pairs per pass: 8 accumulators
            for (int tj = 0; tj < 4; tj += 2) {
              __m256d lo[4], hi[4];  // pair 2u + v: row i+ti+u, column j+tj+v
              for (int t = 0; t < 4; ++t) lo[t] = hi[t] = _mm256_setzero_pd();
              for (int q = 0; q < kBlk / 8; ++q)
                for (int u = 0; u < 2; ++u) {
                  const double* ar = A[i + ti + u] + 8 * q;
                  const __m256d a0 = _mm256_load_pd(ar), a1 = _mm256_load_pd(ar + 4);
                  for (int v = 0; v < 2; ++v) {
                    lo[2 * u + v] = _mm256_fmadd_pd(a0, _mm256_load_pd(B[j + tj + v] + 8 * q), lo[2 * u + v]);
                    hi[2 * u + v] = _mm256_fmadd_pd(a1, _mm256_load_pd(B[j + tj + v] + 8 * q + 4), hi[2 * u + v]);
                  }
                }
              alignas(32) double blk[4];
              _mm256_store_pd(blk, hsum4x8(lo, hi));
              for (int t = 0; t < 4; ++t) acc[i + ti + t / 2][j + tj + t % 2] += blk[t];
            }
#else
          for (int ti = 0; ti < 4; ++ti)
            for (int tj = 0; tj < 4; ++tj)
              acc[i + ti][j + tj] += block_dot_canonical(A[i + ti], B[j + tj]);
#endif
        }
    }
    for (int i = 0; i < mv; ++i)
      for (int j = 0; j < nv; ++j) p.store(m0 + i, n0 + j, acc[i][j]);
  });
}

// Path choice: GEMV for a few rows, GEMM otherwise. Both give identical bits (canonical order).
template <class P>
void run_linear(const P& p) {
  if (p.m <= 0 || p.n <= 0) return;
  if (p.k > kGemvMaxK) return gemm_engine(p);
  switch (p.m) {
    case 1: gemv_engine<1>(p); return;
    case 2: gemv_engine<2>(p); return;
    case 3: gemv_engine<3>(p); return;
    case 4: gemv_engine<4>(p); return;
    default: gemm_engine(p); return;
  }
}

}  // namespace dsv4::kernels::detail
