// Float register-tile kernels for the small-n matmul: F32 / F16 / BF16 weights
// (and K-quants after dequantising a row block to f32) through tile<>, and
// Q8_0 / Q4_0 / Q4_1 read in place a whole block at a time through qtile<>.
// Internal to matmul.cpp; AVX2 + FMA + F16C.
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

// ---- Whole-block loaders for the decode path (Q8_0 / Q4_0 / Q4_1) ---------
//
// Why per 32-element block rather than per 8 values (the loaders above): the
// f16 scale(s) are converted once per block instead of once per 8 values, the
// 16 nibble bytes come in with one load and two in-lane shuffles, and there is
// no per-8 address arithmetic or low/high-nibble branch. Each load() returns
// the block's 32 weights as 4 x 8 f32, bit-identical to dequantize_row:
// - Q8_0: d*q is exact (11-bit d times 8-bit q fits the 24-bit mantissa).
// - Q4_1: fma(q, d, m) = round(d*q + m) = the reference's d*q + m, since d*q
//   is exact whether or not the compiler contracts the reference.
// - Q4_0: fma(q, d, -8d) = (q - 8)*d exactly (both sides are multiples of d's
//   ulp and fit 24 bits), which saves widening the "-8" into each lane.
// Exact weights keep the whole product in fp32 (no activation quantisation).

// The 32 nibbles of a Q4 block (elements 0..15 = low nibbles of bytes 0..15,
// 16..31 = high nibbles) as 4 x 8 f32, q[i] = elements 8i..8i+7.
inline void nibbles32(const uint8_t* qs, __m256 q[4]) {
  // Both 128-bit lanes hold the 16 bytes; vpshufb (in-lane) then zero-extends
  // bytes 0..7 (m0) or 8..15 (m1) to the 8 dword lanes. A dword then holds a
  // single byte, so >> 4 gives the high nibble without another mask.
  const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m256i m0 = _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1, -1, -1,  //
                                      4, -1, -1, -1, 5, -1, -1, -1, 6, -1, -1, -1, 7, -1, -1, -1);
  const __m256i m1 = _mm256_setr_epi8(8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1, -1, -1,  //
                                      12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, 15, -1, -1, -1);
  const __m256i p0 = _mm256_shuffle_epi8(b, m0), p1 = _mm256_shuffle_epi8(b, m1);
  const __m256i lo = _mm256_set1_epi32(0x0F);
  q[0] = _mm256_cvtepi32_ps(_mm256_and_si256(p0, lo));
  q[1] = _mm256_cvtepi32_ps(_mm256_and_si256(p1, lo));
  q[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(p0, 4));
  q[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(p1, 4));
}
struct Q8_0B {
  static constexpr int64_t kBytes = 34;
  static constexpr int kForm = 1;  // factorised, scale only (see qtile)
  // Raw quants q and the scale d broadcast.
  static void raw(const uint8_t* row, int64_t b, __m256 q[4], __m256& d, __m256&) {
    const uint8_t* blk = row + b * kBytes;
    d = _mm256_set1_ps(qdot::f16(blk));
    for (int i = 0; i < 4; ++i)
      q[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * i))));
  }
  static void load(const uint8_t* blk, __m256 w[4]) {
    const __m256 d = _mm256_set1_ps(qdot::f16(blk));
    for (int i = 0; i < 4; ++i) {
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * i));
      w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), d);
    }
  }
};
struct Q4_0B {
  static constexpr int64_t kBytes = 18;
  static constexpr int kForm = 0;  // dequantise in registers (see qtile)
  static void raw(const uint8_t*, int64_t, __m256*, __m256&, __m256&) {}
  static void load(const uint8_t* blk, __m256 w[4]) {
    const float df = qdot::f16(blk);
    const __m256 d = _mm256_set1_ps(df), m = _mm256_set1_ps(-8.0f * df);
    nibbles32(blk + 2, w);
    for (int i = 0; i < 4; ++i) w[i] = _mm256_fmadd_ps(w[i], d, m);
  }
};
struct Q4_1B {
  static constexpr int64_t kBytes = 20;
  static constexpr int kForm = 2;  // factorised, scale and min (see qtile)
  // Raw nibbles q, d broadcast, and dm = [d, m, d, m, ...] from one 4-byte
  // load and one conversion (both f16 scales sit side by side).
  static void raw(const uint8_t* row, int64_t b, __m256 q[4], __m256& d, __m256& dm) {
    const uint8_t* blk = row + b * kBytes;
    uint32_t u;
    std::memcpy(&u, blk, 4);
    const __m128 s = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(u)));  // [d, m, 0, 0]
    d = _mm256_broadcastss_ps(s);
    dm = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(s)));
    nibbles32(blk + 4, q);
  }
  static void load(const uint8_t* blk, __m256 w[4]) {
    const __m256 d = _mm256_set1_ps(qdot::f16(blk)), m = _mm256_set1_ps(qdot::f16(blk + 2));
    nibbles32(blk + 4, w);
    for (int i = 0; i < 4; ++i) w[i] = _mm256_fmadd_ps(w[i], d, m);
  }
};

// Q4_K / Q5_K read in place, 32-value sub-block b % 8 of super-block b / 8
// at a time, in the factorised form of Q4_1: weight = dl * q - ml with
// dl = d * scale, ml = dmin * min (both exact in f32), so d = dl and the
// offset is -ml. kBytes is the average per 32 values (prefetch distance).
inline void bytes32_to_f32(__m256i v, __m256 q[4]) {
  const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}
template <bool kFifth>
struct QK45B {
  static constexpr int64_t kSuper = kFifth ? 176 : 144;
  static constexpr int64_t kBytes = kSuper / 8;
  static constexpr int kForm = 2;
  static void raw(const uint8_t* row, int64_t b, __m256 q[4], __m256& d, __m256& dm) {
    const uint8_t* blk = row + (b >> 3) * kSuper;
    const int s = static_cast<int>(b & 7);
    const uint8_t* sc6 = blk + 4;  // 12 bytes of 6-bit scales and mins
    int sc, mn;
    if (s < 4) {
      sc = sc6[s] & 63, mn = sc6[s + 4] & 63;
    } else {
      sc = (sc6[s + 4] & 0xf) | ((sc6[s - 4] >> 6) << 4);
      mn = (sc6[s + 4] >> 4) | ((sc6[s] >> 6) << 4);
    }
    const float dl = qdot::f16(blk) * float(sc), ml = qdot::f16(blk + 2) * float(mn);
    d = _mm256_set1_ps(dl);
    dm = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(_mm_setr_ps(dl, -ml, 0.0f, 0.0f))));
    const uint8_t* qs = blk + (kFifth ? 48 : 16) + 32 * (s / 2);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
    __m256i nib = _mm256_and_si256(s & 1 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
    if constexpr (kFifth) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16));
      const __m256i h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(s)), _mm256_set1_epi8(1));
      nib = _mm256_or_si256(nib, _mm256_slli_epi16(h, 4));
    }
    bytes32_to_f32(nib, q);
  }
};
using Q4_KB = QK45B<false>;
using Q5_KB = QK45B<true>;

// R rows x C tokens over whole 32-blocks (cols = 32 * nb). Each row's block is
// expanded once and feeds C tokens; x is read from L1 as FMA memory operands.
// Two forms, by QB::kForm:
// - 0 (Q4_0): dequantise exactly in registers (4 FMAs per row-block), then
//   4 FMAs per token into the accumulator.
// - 1, 2 (Q8_0, Q4_1): factorise the block dot product,
//     sum_j (d*q_j + m)*x_j = d * sum_j q_j*x_j + m * sum_j x_j,
//   so per row-block there is no scale pass over the 32 weights: each token
//   costs 4 FMAs for sum q*x plus one FMA by d (and one for m). At n = 1
//   this drops ~4 of ~22 vector uops per row-block, and decode here is
//   compute- as much as memory-bound. m * sum(x) uses sx: per token and
//   block 8 floats [0, s/4, 0, s/4, ...] (s = the block's sum of x), so one
//   FMA with dm = [d, m, d, m, ...] adds m*s over the 8 lanes. Only the order
//   of f32 roundings changes vs dequantise-then-multiply (relative ~1e-7).
// A accumulators per (row, token): with C = 1 a single chain would be
// latency-bound, so C = 1 uses A = 2. R*C*A <= 8 leaves registers for the
// 4 weight vectors, scales, temporaries and shuffle constants (16 ymm).
// pf: prefetch distance in bytes. The hardware prefetcher keeps up poorly
// with R interleaved row streams advancing 18..34 bytes per step (the Q8_0
// output head ran at ~3.7 GB/s without, ~8 GB/s with, one thread), so each
// row prefetches the same position a couple of tiles further on.
template <class QB, int R, int C, int A>
inline void qtile(const uint8_t* const* w, const float* x, int64_t ldx, const float* sx, int64_t nb, float* y,
                  int64_t ldy, int64_t pf) {
  __m256 acc[R][C][A];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c)
      _Pragma("GCC unroll 2")
      for (int a = 0; a < A; ++a) acc[r][c][a] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + 32 * b;
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + b * QB::kBytes + pf), _MM_HINT_T0);
      __m256 wv[4];
      if constexpr (QB::kForm == 0) {
        QB::load(w[r] + b * QB::kBytes, wv);
        _Pragma("GCC unroll 8")
        for (int c = 0; c < C; ++c)
          _Pragma("GCC unroll 4")
          for (int s = 0; s < 4; ++s)
            acc[r][c][s % A] = _mm256_fmadd_ps(wv[s], _mm256_loadu_ps(xb + c * ldx + 8 * s), acc[r][c][s % A]);
      } else {
        __m256 d, dm;
        QB::raw(w[r], b, wv, d, dm);
        _Pragma("GCC unroll 8")
        for (int c = 0; c < C; ++c) {
          const float* xc = xb + c * ldx;
          __m256 t = _mm256_mul_ps(wv[0], _mm256_loadu_ps(xc));
          t = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xc + 8), t);
          t = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(xc + 16), t);
          t = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xc + 24), t);
          acc[r][c][0] = _mm256_fmadd_ps(d, t, acc[r][c][0]);
          if constexpr (QB::kForm == 2)
            acc[r][c][A - 1] = _mm256_fmadd_ps(dm, _mm256_loadu_ps(sx + c * nb * 8 + 8 * b), acc[r][c][A - 1]);
        }
      }
    }
  }
  _Pragma("GCC unroll 8")
  for (int c = 0; c < C; ++c)
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) {
      __m256 s = acc[r][c][0];
      if constexpr (A == 2) s = _mm256_add_ps(s, acc[r][c][1]);
      y[c * ldy + r] = qdot::hsum8(s);
    }
}

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
