// K-quant blocks (256 values) to f32 with AVX2, bit-identical to
// dequantize_row: every product of a scale and a quant is exact in f32 (an
// f16 scale times a 6-bit sub-scale times a 4..6-bit quant fits 24 bits), so
// fmsub(dl, q, ml) rounds once, exactly where dl*q - ml does. Why: the
// scalar reference made K-quant matmuls 20-30x slower per weight than Q4_1.
// Internal to matmul.cpp.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/quant_dot.h"
#include "model/quant_blocks.h"

namespace ckv::cpu::kq {

// 32 unsigned bytes -> 4 x 8 f32 at y.
inline void u8x32_to_f32(__m256i b, float* y) {
  const __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
  _mm256_storeu_ps(y, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)));
  _mm256_storeu_ps(y + 8, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))));
  _mm256_storeu_ps(y + 16, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)));
  _mm256_storeu_ps(y + 24, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))));
}

// y[0..32) = dl * y - ml in place.
inline void scale32(float* y, float dl, float ml) {
  const __m256 d = _mm256_set1_ps(dl), m = _mm256_set1_ps(ml);
  for (int i = 0; i < 4; ++i) _mm256_storeu_ps(y + 8 * i, _mm256_fmsub_ps(d, _mm256_loadu_ps(y + 8 * i), m));
}

// 6-bit scale and min of sub-block j (of 8) packed in 12 bytes.
inline void scale_min(int j, const uint8_t* q, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K and Q5_K: sub-block s (32 values) is the low (s even) or high nibble
// of qs[32 * (s / 2) ...]; Q5_K adds bit s of qh[l] as the fifth bit.
template <bool kFifth>
inline void q45_k(const uint8_t* blk, float* y) {
  using B = std::conditional_t<kFifth, block_q5_K, block_q4_K>;
  const B* b = reinterpret_cast<const B*>(blk);
  const float d = qdot::f16(reinterpret_cast<const uint8_t*>(&b->d));
  const float dmin = qdot::f16(reinterpret_cast<const uint8_t*>(&b->dmin));
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256i qh = _mm256_setzero_si256();
  if constexpr (kFifth) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh));
  for (int s = 0; s < 8; ++s) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * (s / 2)));
    __m256i q = _mm256_and_si256(s & 1 ? _mm256_srli_epi16(v, 4) : v, m4);
    if constexpr (kFifth) {
      // Bit s of each qh byte: a 16-bit shift moves each byte's bit s to bit 0 of that byte.
      const __m256i h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(s)), one);
      q = _mm256_or_si256(q, _mm256_slli_epi16(h, 4));
    }
    int sc, mn;
    scale_min(s, b->scales, sc, mn);
    u8x32_to_f32(q, y + 32 * s);
    scale32(y + 32 * s, d * float(sc), dmin * float(mn));
  }
}

// Q6_K: two halves of 128; in half h, quarter t (32 values) takes the low
// (t < 2) or high nibble of ql[64h + 32(t % 2) ...] and bits 2t..2t+1 of
// qh[32h ...]; quant - 32 times d * scales[value / 16].
inline void q6_k(const uint8_t* blk, float* y) {
  const block_q6_K* b = reinterpret_cast<const block_q6_K*>(blk);
  const float d = qdot::f16(reinterpret_cast<const uint8_t*>(&b->d));
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), c32 = _mm256_set1_epi8(32);
  for (int h = 0; h < 2; ++h) {
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h));
    for (int t = 0; t < 4; ++t) {
      const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + 64 * h + 32 * (t % 2)));
      const __m256i lo = _mm256_and_si256(t < 2 ? l : _mm256_srli_epi16(l, 4), m4);
      const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * t)), m2);
      const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), c32);  // -32..31
      const int e0 = 128 * h + 32 * t;
      const __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
      const __m128i part[4] = {q0, _mm_srli_si128(q0, 8), q1, _mm_srli_si128(q1, 8)};
      for (int i = 0; i < 4; ++i) {
        const __m256 dl = _mm256_set1_ps(d * float(b->scales[(e0 + 8 * i) / 16]));
        _mm256_storeu_ps(y + e0 + 8 * i, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[i]))));
      }
    }
  }
}

}  // namespace ckv::cpu::kq
