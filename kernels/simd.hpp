// Internal to kernels/: small SIMD building blocks shared by several kernels. Not a public header.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/numerics.hpp"

namespace dsv4::kernels::simd {

// GCC vectors (portable: lowered to whatever the target ISA offers). Internal linkage: vector-typed
// signatures have no ABI to keep.
namespace {
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

// 8 / 16 consecutive bf16 -> floats (exact).
inline v8f load_bf16x8(const bf16* p) {
  typedef uint16_t v8u16 __attribute__((vector_size(16)));
  typedef uint32_t v8u32 __attribute__((vector_size(32)));
  v8u16 b;
  std::memcpy(&b, p, sizeof b);
  const v8u32 u = __builtin_convertvector(b, v8u32) << 16;
  v8f f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline v16f load_bf16x16(const bf16* p) {
  return __builtin_shufflevector(load_bf16x8(p), load_bf16x8(p + 8), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                 14, 15);
}
}  // namespace

}  // namespace dsv4::kernels::simd

#ifdef __AVX512F__
#include <immintrin.h>

namespace dsv4::kernels::simd {

// 16x16 dword transpose: r[j] lane t -> out[t] lane j (out may be r: every input is read first).
[[gnu::always_inline]] inline void transpose16(const __m512i r[16], __m512i out[16]) {
  __m512i a[16], b[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // b[4i + c]: rows 4i..4i+3 of column 4L + c in 128-bit lane L
    b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i u0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x88), u1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xDD);
    const __m512i v0 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x88), v1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xDD);
    out[c] = _mm512_shuffle_i32x4(u0, v0, 0x88);
    out[8 + c] = _mm512_shuffle_i32x4(u0, v0, 0xDD);
    out[4 + c] = _mm512_shuffle_i32x4(u1, v1, 0x88);
    out[12 + c] = _mm512_shuffle_i32x4(u1, v1, 0xDD);
  }
}

}  // namespace dsv4::kernels::simd
#endif
