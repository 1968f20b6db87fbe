#include "kernels/cpu/ops.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <mutex>

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

void Rope::apply(float* x, const int32_t* pos, int64_t n, int n_heads) const {
  int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    float p = static_cast<float>(pos[t]) * pos_scale;
    float cs[512], sn[512];
    for (int i = 0; i < half; ++i) {
      float a = p * inv_freq[i];
      cs[i] = std::cos(a);
      sn[i] = std::sin(a);
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

// q.k over hd floats; AVX2 when hd is a multiple of 8 (the compiler may not
// reassociate a float reduction on its own).
static inline float dot(const float* a, const float* b, int hd) {
  if (hd % 8 == 0) {
    __m256 acc = _mm256_setzero_ps();
    for (int c = 0; c < hd; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), acc);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  float d = 0;
  for (int c = 0; c < hd; ++c) d += a[c] * b[c];
  return d;
}

// One query row against keys: softmax(q.k / sqrt(d)) v, over a prefix of
// plen keys and nnew new keys (new keys strided by kstride floats).
static void attend_row(const float* q, const float* pk, const float* pv, int plen, const float* nk,
                       const float* nv, int nnew, int kstride, int hd, float scale, float* s, float* out) {
  float mx = -INFINITY;
  for (int j = 0; j < plen; ++j) {
    s[j] = dot(q, pk + static_cast<int64_t>(j) * hd, hd) * scale;
    mx = std::max(mx, s[j]);
  }
  for (int j = 0; j < nnew; ++j) {
    s[plen + j] = dot(q, nk + static_cast<int64_t>(j) * kstride, hd) * scale;
    mx = std::max(mx, s[plen + j]);
  }
  float sum = 0;
  for (int j = 0; j < plen + nnew; ++j) sum += (s[j] = std::exp(s[j] - mx));
  float inv = 1.0f / sum;
  for (int c = 0; c < hd; ++c) out[c] = 0;
  for (int j = 0; j < plen; ++j) {
    const float* v = pv + static_cast<int64_t>(j) * hd;
    float p = s[j] * inv;
    for (int c = 0; c < hd; ++c) out[c] += p * v[c];
  }
  for (int j = 0; j < nnew; ++j) {
    const float* v = nv + static_cast<int64_t>(j) * kstride;
    float p = s[plen + j] * inv;
    for (int c = 0; c < hd; ++c) out[c] += p * v[c];
  }
}

void attention(const float* q, const float* k_new, const float* v_new, int64_t n, const AttnPrefix& prefix,
               int n_heads, int n_kv, int hd, float* out) {
  const int r = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int kstride = n_kv * hd, qstride = n_heads * hd;
  int max_plen = 0;
  for (int g = 0; g < n_kv; ++g) max_plen = std::max(max_plen, prefix.len.empty() ? 0 : prefix.len[g]);

  if (n <= 8) {
    // Decode: a few rows, plain loops, parallel over heads.
#pragma omp parallel
    {
      std::vector<float> s(max_plen + n);
#pragma omp for collapse(2) schedule(static)
      for (int h = 0; h < n_heads; ++h)
        for (int64_t i = 0; i < n; ++i) {
          int g = h / r;
          int plen = prefix.len.empty() ? 0 : prefix.len[g];
          attend_row(q + i * qstride + h * hd, plen ? prefix.k[g] : nullptr, plen ? prefix.v[g] : nullptr, plen,
                     k_new + g * hd, v_new + g * hd, static_cast<int>(i + 1), kstride, hd, scale, s.data(),
                     out + i * qstride + h * hd);
        }
    }
    return;
  }

  init_blas();
  // Prefill: blocks of query rows; scores and outputs by sgemm (single-threaded
  // BLAS inside our own parallel loop over heads and blocks).
  const int64_t B = 64;
  const int64_t nblocks = (n + B - 1) / B;
#pragma omp parallel
  {
    std::vector<float> S(B * (max_plen + n));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int h = 0; h < n_heads; ++h)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        int g = h / r;
        int64_t i0 = (nblocks - 1 - blk) * B;  // longest blocks first
        int64_t nb = std::min(B, n - i0);
        int plen = prefix.len.empty() ? 0 : prefix.len[g];
        int64_t nk = i0 + nb;  // new keys visible to the block's last row
        int64_t ld = plen + nk;
        const float* qb = q + i0 * qstride + h * hd;
        float* Sb = S.data();
        if (plen)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, plen, hd, scale, qb, qstride, prefix.k[g], hd,
                      0.0f, Sb, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, hd, scale, qb, qstride, k_new + g * hd,
                    kstride, 0.0f, Sb + plen, ld);
        for (int64_t i = 0; i < nb; ++i) {
          float* row = Sb + i * ld;
          int64_t visible = plen + i0 + i + 1;
          float mx = -INFINITY;
          for (int64_t j = 0; j < visible; ++j) mx = std::max(mx, row[j]);
          float sum = 0;
          for (int64_t j = 0; j < visible; ++j) sum += (row[j] = std::exp(row[j] - mx));
          float inv = 1.0f / sum;
          for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
          for (int64_t j = visible; j < ld; ++j) row[j] = 0.0f;
        }
        float* ob = out + i0 * qstride + h * hd;
        if (plen)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, plen, 1.0f, Sb, ld, prefix.v[g], hd, 0.0f,
                      ob, qstride);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, nk, 1.0f, Sb + plen, ld, v_new + g * hd,
                    kstride, plen ? 1.0f : 0.0f, ob, qstride);
      }
  }
}

}  // namespace ckv::cpu
