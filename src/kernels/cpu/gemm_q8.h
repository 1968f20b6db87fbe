// Integer register-tile kernels for the small-n matmul in MatmulMode::Q8:
// activations quantised to 8 bits per 32-block (llama.cpp's Q8_1), weights
// Q8_0 / Q4_0 / Q4_1 read in place, products in int8 x int8 -> int32 by
// vpmaddubsw. About half the vector work of the exact fp32 tiles per weight
// block, at the price of ~0.5 on SmolLM2's logits (the golden tolerance is
// 1e-2), so it is opt-in. Internal to matmul.cpp; AVX2 + FMA + F16C.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_dot.h"

namespace ckv::cpu::gemmq8 {

// One 32-block of a quantised activation row: x ~= d * q, s = d * sum(q).
struct ActBlock {
  float d, s;
  int8_t q[32];
};

// x: [n] f32 (n a multiple of 32) -> n/32 blocks, rounding to nearest even.
inline void quantize_row(const float* x, int64_t n, ActBlock* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + 32 * b;
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float a = _mm_cvtss_f32(m);
    const float d = a / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i qi[4];
    for (int i = 0; i < 4; ++i)
      qi[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // Sum of the quants for s, then pack 4 x 8 int32 -> 32 int8 in order.
    __m256i sum = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    s4 = _mm_hadd_epi32(s4, s4);
    const __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]), p16b = _mm256_packs_epi32(qi[2], qi[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    // packs interleaves the 128-bit lanes: dwords come out as 0 2 4 6 1 3 5 7.
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    out[b].d = d;
    out[b].s = d * float(_mm_cvtsi128_si32(s4));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].q), p8);
  }
}

// Weight blocks: 32 quants as bytes in element order, and the block's scale
// d and offset m (dot = d * dx * sum(q * qx) + m * sx). Unsigned quants go
// straight into vpmaddubsw; signed ones (Q8_0) use the sign trick.
inline __m256i nibbles(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}
struct Q4_0B {
  static constexpr int64_t kBytes = 18;
  static constexpr bool kSigned = false, kOffset = true;
  static __m256i quants(const uint8_t* blk) { return nibbles(blk + 2); }
  static void scales(const uint8_t* blk, float& d, float& m) {
    d = qdot::f16(blk);
    m = -8.0f * d;  // (q - 8) * d
  }
};
struct Q4_1B {
  static constexpr int64_t kBytes = 20;
  static constexpr bool kSigned = false, kOffset = true;
  static __m256i quants(const uint8_t* blk) { return nibbles(blk + 4); }
  static void scales(const uint8_t* blk, float& d, float& m) {
    uint32_t u;
    std::memcpy(&u, blk, 4);
    const __m128 s = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(u)));
    d = _mm_cvtss_f32(s);
    m = _mm_cvtss_f32(_mm_movehdup_ps(s));
  }
};
struct Q8_0B {
  static constexpr int64_t kBytes = 34;
  static constexpr bool kSigned = true, kOffset = false;
  static __m256i quants(const uint8_t* blk) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)); }
  static void scales(const uint8_t* blk, float& d, float& m) {
    d = qdot::f16(blk);
    m = 0.0f;
  }
};

// Sum over the 32 lanes of w * x as 8 int32 (pairs of pairs).
template <bool kSigned>
inline __m256i dot32(__m256i w, __m256i x) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (kSigned) return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
}

// R rows x C tokens over nb 32-blocks. w[r]: row bytes; xa: [C][nb] blocks;
// y[c * ldy + r] receives the sums. pf: prefetch distance in bytes (as in the
// exact tiles: R interleaved row streams outrun the hardware prefetcher).
template <class QB, int R, int C>
inline void tile(const uint8_t* const* w, const ActBlock* xa, int64_t nb, float* y, int64_t ldy, int64_t pf) {
  __m256 acc[R][C];
  float off[R][C];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) {
      acc[r][c] = _mm256_setzero_ps();
      off[r][c] = 0.0f;
    }
  for (int64_t b = 0; b < nb; ++b) {
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * QB::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(blk + pf), _MM_HINT_T0);
      const __m256i q = QB::quants(blk);
      float d, m;
      QB::scales(blk, d, m);
      _Pragma("GCC unroll 8")
      for (int c = 0; c < C; ++c) {
        const ActBlock& a = xa[c * nb + b];
        const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q));
        const __m256 p = _mm256_cvtepi32_ps(dot32<QB::kSigned>(q, xq));
        acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), p, acc[r][c]);
        if constexpr (QB::kOffset) off[r][c] = std::fma(m, a.s, off[r][c]);
      }
    }
  }
  _Pragma("GCC unroll 8")
  for (int c = 0; c < C; ++c)
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) y[c * ldy + r] = qdot::hsum8(acc[r][c]) + off[r][c];
}

}  // namespace ckv::cpu::gemmq8
