// Small SIMD helpers shared by the CPU matmul kernels (AVX2 + F16C).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <vector>

namespace ckv::cpu::qdot {

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

}  // namespace ckv::cpu::qdot
