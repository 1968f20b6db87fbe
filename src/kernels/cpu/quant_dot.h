// Integer dot-product kernels for 32-element weight blocks (Q4_0, Q4_1,
// Q8_0) against activations quantised to 8 bits per 32-element block.
// Internal to the CPU matmul (matmul.cpp); AVX2 + FMA + F16C.
//
// The activation format follows ggml's q8_1 idea: per 32 values x, a scale
// d = max|x| / 127, int8 quants q = round(x / d), and s = d * sum(q). Then a
// block dot with any weight block of the form  w = dw * u + mw  (u integer) is
//   sum(w * x) ~= dw * d * sum(u * q) + mw * s,
// so the inner loop is pure int8 x int8 work and the "+ mw" part is one scalar
// per block pair. Q4_0 (u = nibble, mw = -8 dw) and Q4_1 (mw = m) both fit it
// with unsigned nibbles, which is what _mm256_maddubs_epi16 wants as its
// unsigned operand; Q8_0 (mw = 0) uses the sign-transfer trick instead.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <vector>

namespace ckv::cpu::qdot {

constexpr int QB = 32;  // elements per activation block

// Activations of n tokens, quantised. nbp = nb rounded up to 8 so that the
// per-block float arrays can be read 8 at a time; the padding is zero.
struct Q8Acts {
  int64_t n = 0, nb = 0, nbp = 0;
  std::vector<int8_t> qs;  // [n][nb * 32]
  std::vector<float> d;    // [n][nbp] block scales
  std::vector<float> s;    // [n][nbp] d * sum(q) of each block
  const int8_t* q(int64_t t) const { return qs.data() + t * nb * QB; }
  const float* dd(int64_t t) const { return d.data() + t * nbp; }
  const float* ss(int64_t t) const { return s.data() + t * nbp; }
};

// x: [n][cols] f32, cols a multiple of 32. Parallel over tokens when n is big
// enough to pay for a parallel region.
void quantize_acts(const float* x, int64_t n, int64_t cols, Q8Acts& a);

// Horizontal sum of 8 floats.
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float f16(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// ---- Weight block formats -------------------------------------------------
// Each: bytes per block, offset of the quants, load() -> 32 integers u as
// int8 lanes, dot(u, q) -> 8 int32 partial sums of u*q, and the per-block
// float scale dw and offset mw (the "w = dw*u + mw" above).

struct Q4_0W {
  static constexpr int kBytes = 18;
  static constexpr bool kHasMin = true;
  static __m256i load(const uint8_t* b) {
    // Low nibbles are elements 0..15, high nibbles 16..31: one 16-byte load
    // feeds both halves of the 256-bit register.
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
  }
  static __m256i dot(__m256i u, __m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
  }
  static float dw(const uint8_t* b) { return f16(b); }
  static float mw(const uint8_t* b) { return -8.0f * f16(b); }
};

struct Q4_1W {
  static constexpr int kBytes = 20;
  static constexpr bool kHasMin = true;
  static __m256i load(const uint8_t* b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
  }
  static __m256i dot(__m256i u, __m256i q) { return Q4_0W::dot(u, q); }
  static float dw(const uint8_t* b) { return f16(b); }
  static float mw(const uint8_t* b) { return f16(b + 2); }
};

struct Q8_0W {
  static constexpr int kBytes = 34;
  static constexpr bool kHasMin = false;
  static __m256i load(const uint8_t* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)); }
  // maddubs needs one unsigned operand: |u| * (q with u's sign). |-128| = 128
  // still fits as unsigned, and 2 * 128 * 127 < 32767, so no saturation.
  // When several tokens share a weight block, the abs() is common and the
  // compiler hoists it out of the token loop.
  static __m256i dot(__m256i u, __m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(q, u)),
                             _mm256_set1_epi16(1));
  }
  static float dw(const uint8_t* b) { return f16(b); }
  static float mw(const uint8_t*) { return 0.0f; }
};

// ---- Register tile --------------------------------------------------------
// R weight rows x C tokens (loops over R and C are force-unrolled: GCC -O2
// would otherwise keep the accumulators in memory). Each weight block is loaded and unpacked once and
// used for C tokens; each activation block is loaded once and used for R rows.
// 2x4 (8 float accumulators + 2 weight + 2 scale registers) is about what the
// 16 ymm registers of AVX2 hold without spilling.
//
// w[r]: row r's blocks; dw[r], mw[r]: its per-block floats ([nbp], zero
// padded); y[c * ldy + r] receives the result for token t0 + c.
template <class WT, int R, int C>
inline void tile(const uint8_t* const* w, const float* const* dw, const float* const* mw, const Q8Acts& a,
                 int64_t t0, float* y, int64_t ldy) {
  const int64_t nb = a.nb;
  __m256 acc[R][C];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const int8_t* xq[C];
  const float* xd[C];
  _Pragma("GCC unroll 8")
  for (int c = 0; c < C; ++c) {
    xq[c] = a.q(t0 + c);
    xd[c] = a.dd(t0 + c);
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i u[R];
    __m256 sw[R];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) {
      u[r] = WT::load(w[r] + b * WT::kBytes);
      sw[r] = _mm256_broadcast_ss(dw[r] + b);
    }
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[c] + b * QB));
      const __m256 sx = _mm256_broadcast_ss(xd[c] + b);
      _Pragma("GCC unroll 8")
      for (int r = 0; r < R; ++r) {
        const __m256 p = _mm256_cvtepi32_ps(WT::dot(u[r], q));
        acc[r][c] = _mm256_fmadd_ps(p, _mm256_mul_ps(sw[r], sx), acc[r][c]);
      }
    }
  }
  if constexpr (WT::kHasMin) {
    // sum_b mw[b] * s[b], 8 blocks at a time over the zero-padded arrays.
    for (int64_t b = 0; b < a.nbp; b += 8)
      _Pragma("GCC unroll 8")
      for (int c = 0; c < C; ++c) {
        const __m256 s = _mm256_loadu_ps(a.ss(t0 + c) + b);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(mw[r] + b), s, acc[r][c]);
      }
  }
  _Pragma("GCC unroll 8")
  for (int c = 0; c < C; ++c)
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) y[c * ldy + r] = hsum8(acc[r][c]);
}

}  // namespace ckv::cpu::qdot
