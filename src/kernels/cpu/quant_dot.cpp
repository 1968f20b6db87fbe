#include "kernels/cpu/quant_dot.h"

namespace ckv::cpu::qdot {

namespace {

// One 32-value block: d = max|x| / 127, q = round(x / d), s = d * sum(q).
// The scale stays f32 (ggml's q8_1 stores f16): it costs nothing here and
// keeps the activation error at the int8 rounding alone.
inline void quantize_block(const float* x, int8_t* q, float* d, float* s) {
  __m256 v[4];
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float am = _mm_cvtss_f32(m);
  const float dd = am / 127.0f;
  const __m256 id = _mm256_set1_ps(am != 0.0f ? 127.0f / am : 0.0f);
  __m256i iv[4];
  for (int i = 0; i < 4; ++i)
    iv[i] = _mm256_cvtps_epi32(
        _mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256i sum4 = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum4), _mm256_extracti128_si256(sum4, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  // packs work within 128-bit lanes; the permute restores element order.
  const __m256i p01 = _mm256_packs_epi32(iv[0], iv[1]);
  const __m256i p23 = _mm256_packs_epi32(iv[2], iv[3]);
  __m256i p = _mm256_packs_epi16(p01, p23);
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
  *d = dd;
  *s = dd * float(_mm_cvtsi128_si32(s4));
}

}  // namespace

void quantize_acts(const float* x, int64_t n, int64_t cols, Q8Acts& a) {
  a.n = n;
  a.nb = cols / QB;
  a.nbp = (a.nb + 7) / 8 * 8;
  const int64_t nb = a.nb, nbp = a.nbp;
  // Grow only: the buffers are reused call after call (thread_local owner).
  if (a.qs.size() < size_t(n * cols)) a.qs.resize(size_t(n * cols));
  if (a.d.size() < size_t(n * nbp)) {
    a.d.resize(size_t(n * nbp));
    a.s.resize(size_t(n * nbp));
  }
#pragma omp parallel for schedule(static) if (n * cols >= 16384)
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * cols;
    int8_t* qt = a.qs.data() + t * cols;
    float* dt = a.d.data() + t * nbp;
    float* st = a.s.data() + t * nbp;
    for (int64_t b = 0; b < nb; ++b) quantize_block(xt + b * QB, qt + b * QB, dt + b, st + b);
    for (int64_t b = nb; b < nbp; ++b) dt[b] = st[b] = 0.0f;
  }
}

}  // namespace ckv::cpu::qdot
