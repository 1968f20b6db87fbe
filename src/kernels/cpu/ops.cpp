#include "kernels/cpu/ops.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "kernels/cpu/simd_math.h"

namespace ckv::cpu {

void init_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, int dim, float eps) {
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * dim;
    float* yi = y + i * dim;
    float ss = 0.0f;
    for (int j = 0; j < dim; ++j) ss += xi[j] * xi[j];
    float r = 1.0f / std::sqrt(ss / dim + eps);
    for (int j = 0; j < dim; ++j) yi[j] = w[j] * (xi[j] * r);
  }
}

Rope::Rope(const ModelConfig& c) : interleaved(c.rope.interleaved), head_dim(c.head_dim) {
  const RopeConfig& r = c.rope;
  int half = c.head_dim / 2;
  inv_freq.resize(half);
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < half; ++i) {
    // float32 arithmetic as in the reference implementations.
    float f = 1.0f / std::pow(r.theta, static_cast<float>(2 * i) / static_cast<float>(c.head_dim));
    if (!r.freq_factors.empty()) {
      f /= r.freq_factors[i];
    } else if (r.scaling == "llama3") {
      double low_wavelen = r.original_context / r.low_freq_factor;
      double high_wavelen = r.original_context / r.high_freq_factor;
      double wavelen = 2 * pi / f;
      if (wavelen > low_wavelen) {
        f = f / r.factor;
      } else if (wavelen >= high_wavelen) {
        float smooth = (r.original_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1 - smooth) * f / r.factor + smooth * f;
      }
    }
    inv_freq[i] = f;
  }
  if (r.scaling == "linear") pos_scale = 1.0f / r.factor;
}

void Rope::apply(float* x, const int32_t* pos, int64_t n, int n_heads, float* table) const {
  const int half = head_dim / 2;
  std::vector<float> own;
  if (!table) {
    own.resize(static_cast<size_t>(n) * head_dim);
    table = own.data();
  }
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    const float p = static_cast<float>(pos[t]) * pos_scale;
    float* cs = table + t * head_dim;
    float* sn = cs + half;
    for (int i = 0; i < half; ++i) {
      const float a = p * inv_freq[i];
      cs[i] = std::cos(a);
      sn[i] = std::sin(a);
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t n8 = n / 8 * 8;
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (int64_t i = n8; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace ckv::cpu
