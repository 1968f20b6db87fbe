// Float register-tile kernels for the matmul of F32 / F16 / BF16 weights (and
// of K-quant weights after dequantising a row block to f32). Internal to
// matmul.cpp; AVX2 + FMA + F16C.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_dot.h"

namespace ckv::cpu::gemmf {

// Row loaders: 8 values at element k as f32, or one value. Rows may sit at any
// 2-byte alignment, so every access is an unaligned load or a memcpy.
struct F32L {
  static __m256 load8(const uint8_t* row, int64_t k) { return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * k)); }
  static float load1(const uint8_t* row, int64_t k) {
    float f;
    std::memcpy(&f, row + 4 * k, 4);
    return f;
  }
};
struct F16L {
  static __m256 load8(const uint8_t* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static float load1(const uint8_t* row, int64_t k) { return qdot::f16(row + 2 * k); }
};
struct BF16L {
  static __m256 load8(const uint8_t* row, int64_t k) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static float load1(const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// 32-element quantised blocks, dequantised 8 values at a time exactly as the
// reference dequantiser does (d*q and d*q + m are exact in f32 here, so the
// FMA gives the same bits): the products stay fp32 end to end.
inline __m256 nibbles8(const uint8_t* qs, int64_t j) {
  // Elements 0..15 are low nibbles of bytes 0..15, 16..31 high nibbles.
  uint64_t v;
  std::memcpy(&v, qs + (j & 15), 8);
  __m128i b = _mm_cvtsi64_si128(static_cast<long long>(v));
  if (j >= 16) b = _mm_srli_epi16(b, 4);
  b = _mm_and_si128(b, _mm_set1_epi8(0x0F));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
}
struct Q8_0L {
  static __m256 load8(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 34;
    uint64_t v;
    std::memcpy(&v, b + 2 + (k & 31), 8);
    const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(static_cast<long long>(v))));
    return _mm256_mul_ps(_mm256_set1_ps(qdot::f16(b)), q);
  }
  static float load1(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 34;
    return qdot::f16(b) * static_cast<float>(static_cast<int8_t>(b[2 + (k & 31)]));
  }
};
struct Q4_0L {
  static __m256 load8(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 18;
    const __m256 q = _mm256_sub_ps(nibbles8(b + 2, k & 31), _mm256_set1_ps(8.0f));
    return _mm256_mul_ps(q, _mm256_set1_ps(qdot::f16(b)));
  }
  static float load1(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 18;
    int j = k & 31;
    int q = j < 16 ? (b[2 + j] & 0x0F) : (b[2 + j - 16] >> 4);
    return static_cast<float>(q - 8) * qdot::f16(b);
  }
};
struct Q4_1L {
  static __m256 load8(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 20;
    return _mm256_fmadd_ps(_mm256_set1_ps(qdot::f16(b)), nibbles8(b + 4, k & 31), _mm256_set1_ps(qdot::f16(b + 2)));
  }
  static float load1(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 20;
    int j = k & 31;
    int q = j < 16 ? (b[4 + j] & 0x0F) : (b[4 + j - 16] >> 4);
    return std::fma(qdot::f16(b), static_cast<float>(q), qdot::f16(b + 2));
  }
};

// R rows x C tokens, dot-product form (both operands contiguous along k):
// each converted weight vector feeds C FMAs and each x vector R FMAs.
// w[r]: row bytes; x: [C][ldx] f32 tokens; y[c * ldy + r] receives the sums.
template <class WL, int R, int C>
inline void tile(const uint8_t* const* w, const float* x, int64_t ldx, int64_t cols, float* y, int64_t ldy) {
  __m256 acc[R][C];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    __m256 wv[R];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) wv[r] = WL::load8(w[r], k);
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) {
      const __m256 xv = _mm256_loadu_ps(x + c * ldx + k);
      _Pragma("GCC unroll 8")
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  _Pragma("GCC unroll 8")
  for (int c = 0; c < C; ++c)
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) {
      float s = qdot::hsum8(acc[r][c]);
      // Explicit fma: with -ffp-contract=fast (gnu++20) the compiler would
      // contract or not depending on inlining, and results would differ
      // between the direct and the buffered path.
      for (int64_t kk = k; kk < cols; ++kk) s = std::fma(WL::load1(w[r], kk), x[c * ldx + kk], s);
      y[c * ldy + r] = s;
    }
}

}  // namespace ckv::cpu::gemmf
