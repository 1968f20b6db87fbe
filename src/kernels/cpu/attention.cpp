// Causal GQA attention on the CPU (declared in ops.h).
//
// Decode (n <= 8 new rows): split-K ("flash decoding"). The keys of each KV
// head are cut into chunks; one work item computes, for every query row of
// that head's group, the chunk's running max, sum of exponentials and
// unnormalised output, and the chunks are merged at the end. Why: with 9
// query heads on 2 cores a loop over heads leaves a core idle a fifth of the
// time, and a long cache needs all cores on one head's keys. The r query
// heads of a group read each key once (4 keys x 3 rows register tiles).
//
// Prefill: blocks of 64 query rows per head; scores and outputs by sgemm
// (single-threaded BLAS inside our own parallel loop), softmax with a vector
// exp, normalisation applied once to the output rows.
#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/simd_math.h"

namespace ckv::cpu {

namespace {

// Key/value rows of a cache (f32 or f16) or of the new tokens (f32, strided):
// row j, element c as 8 floats or one.
struct F32Rows {
  const float* p;
  int64_t ld;  // elements between rows
  __m256 load8(int64_t j, int c) const { return _mm256_loadu_ps(p + j * ld + c); }
  float load1(int64_t j, int c) const { return p[j * ld + c]; }
};
struct F16Rows {
  const uint16_t* p;
  int64_t ld;
  __m256 load8(int64_t j, int c) const {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j * ld + c)));
  }
  float load1(int64_t j, int c) const { return _cvtsh_ss(p[j * ld + c]); }
};

// Sums of the 8 lanes of a[0..3] as one 4-float vector.
inline __m128 reduce4(const __m256 a[4]) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// s[r][j] = scale * q[r] . k_j for RR query rows and nk keys. Each key vector
// feeds RR rows (4 keys x RR rows of accumulators); hd % 8 != 0 goes scalar.
template <int RR, class Rows>
void scores(const float* const* q, Rows k, int nk, int hd, float scale, float* const* s) {
  int j = 0;
  if (hd % 8 == 0) {
    const __m128 vs = _mm_set1_ps(scale);
    for (; j + 4 <= nk; j += 4) {
      __m256 acc[RR][4];
      for (int r = 0; r < RR; ++r)
        for (int t = 0; t < 4; ++t) acc[r][t] = _mm256_setzero_ps();
      for (int c = 0; c < hd; c += 8) {
        __m256 kv[4];
        for (int t = 0; t < 4; ++t) kv[t] = k.load8(j + t, c);
        for (int r = 0; r < RR; ++r) {
          const __m256 qv = _mm256_loadu_ps(q[r] + c);
          for (int t = 0; t < 4; ++t) acc[r][t] = _mm256_fmadd_ps(qv, kv[t], acc[r][t]);
        }
      }
      for (int r = 0; r < RR; ++r) _mm_storeu_ps(s[r] + j, _mm_mul_ps(reduce4(acc[r]), vs));
    }
  }
  for (; j < nk; ++j)
    for (int r = 0; r < RR; ++r) {
      float d = 0;
      for (int c = 0; c < hd; ++c) d += q[r][c] * k.load1(j, c);
      s[r][j] = d * scale;
    }
}

// o[0..hd) = sum_j p[j] * v_j over nk values.
template <class Rows>
void weighted_sum(const float* p, Rows v, int nk, int hd, float* o) {
  if (hd % 8 != 0) {
    for (int c = 0; c < hd; ++c) o[c] = 0;
    for (int j = 0; j < nk; ++j)
      for (int c = 0; c < hd; ++c) o[c] += p[j] * v.load1(j, c);
    return;
  }
  for (int c0 = 0; c0 < hd; c0 += 64) {
    const int w = std::min(64, hd - c0) / 8;
    __m256 acc[8];
    for (int t = 0; t < 8; ++t) acc[t] = _mm256_setzero_ps();
    for (int j = 0; j < nk; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      for (int t = 0; t < w; ++t) acc[t] = _mm256_fmadd_ps(pj, v.load8(j, c0 + 8 * t), acc[t]);
    }
    for (int t = 0; t < w; ++t) _mm256_storeu_ps(o + c0 + 8 * t, acc[t]);
  }
}

// One decode work item: for `rows` query rows (token t = i / r) over nk keys
// starting at key index j0, the partial (max, sum of exps, unnormalised
// output) of each row into part[i * (hd + 2)]. Token t sees keys < plen + t + 1.
template <class Rows>
void partial(const float* const* qr, float* const* sr, int rows, int r, Rows k, Rows v, int j0, int nk, int plen,
             int hd, float scale, float* part) {
  int i = 0;
  for (; i + 3 <= rows; i += 3) scores<3>(&qr[i], k, nk, hd, scale, &sr[i]);
  for (; i < rows; ++i) scores<1>(&qr[i], k, nk, hd, scale, &sr[i]);
  for (i = 0; i < rows; ++i) {
    const int visible = std::clamp(plen + i / r + 1 - j0, 0, nk);
    float* pr = part + static_cast<int64_t>(i) * (hd + 2);
    if (visible == 0) {
      pr[0] = -INFINITY, pr[1] = 0.0f;
      std::fill(pr + 2, pr + 2 + hd, 0.0f);
      continue;
    }
    pr[0] = simd::max_of(sr[i], visible);
    pr[1] = simd::exp_sub_sum(sr[i], visible, pr[0]);
    weighted_sum(sr[i], v, visible, hd, pr + 2);
  }
}

constexpr int kChunk = 256;  // keys per decode work item

void attention_decode(const float* q, const float* k_new, const float* v_new, int64_t n, const AttnPrefix& prefix,
                      int n_heads, int n_kv, int hd, float* out) {
  const int r = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int kstride = n_kv * hd, qstride = n_heads * hd;
  const int rows = static_cast<int>(n) * r;  // query rows per KV head: token-major, then head in group

  // Work items: (KV head, key range); the prefix in chunks, the new keys last.
  struct Item {
    int g, j0, nk;  // j0: first key as an index into prefix ++ new keys
  };
  std::vector<Item> items;
  std::vector<int> first(n_kv + 1);
  for (int g = 0; g < n_kv; ++g) {
    first[g] = static_cast<int>(items.size());
    const int plen = prefix.len.empty() ? 0 : prefix.len[g];
    for (int j0 = 0; j0 < plen; j0 += kChunk) items.push_back({g, j0, std::min(kChunk, plen - j0)});
    items.push_back({g, plen, static_cast<int>(n)});
  }
  first[n_kv] = static_cast<int>(items.size());
  // Per item and row: max, sum of exponentials, unnormalised output.
  const int64_t stride = hd + 2;
  std::vector<float> part(items.size() * rows * stride);

#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(rows) * std::max<int64_t>(kChunk, n));
    std::vector<const float*> qr(rows);
    std::vector<float*> sr(rows);
#pragma omp for schedule(dynamic, 1)
    for (size_t it = 0; it < items.size(); ++it) {
      const Item& item = items[it];
      const int g = item.g;
      const int plen = prefix.len.empty() ? 0 : prefix.len[g];
      for (int i = 0; i < rows; ++i) {
        qr[i] = q + (i / r) * qstride + (g * r + i % r) * hd;
        sr[i] = s.data() + static_cast<int64_t>(i) * std::max<int64_t>(kChunk, n);
      }
      float* pr = &part[it * rows * stride];
      const int64_t off = static_cast<int64_t>(item.j0) * hd;
      if (item.j0 >= plen)  // the new tokens' keys, strided in k_new / v_new
        partial(qr.data(), sr.data(), rows, r, F32Rows{k_new + g * hd, kstride}, F32Rows{v_new + g * hd, kstride},
                item.j0, item.nk, plen, hd, scale, pr);
      else if (prefix.f16)
        partial(qr.data(), sr.data(), rows, r, F16Rows{static_cast<const uint16_t*>(prefix.k[g]) + off, hd},
                F16Rows{static_cast<const uint16_t*>(prefix.v[g]) + off, hd}, item.j0, item.nk, plen, hd, scale, pr);
      else
        partial(qr.data(), sr.data(), rows, r, F32Rows{static_cast<const float*>(prefix.k[g]) + off, hd},
                F32Rows{static_cast<const float*>(prefix.v[g]) + off, hd}, item.j0, item.nk, plen, hd, scale, pr);
    }
  }

  // Merge the chunks of each row: rescale to the global max and normalise.
  for (int g = 0; g < n_kv; ++g)
    for (int i = 0; i < rows; ++i) {
      float mx = -INFINITY;
      for (int it = first[g]; it < first[g + 1]; ++it) mx = std::max(mx, part[(it * rows + i) * stride]);
      float* o = out + (i / r) * qstride + (g * r + i % r) * hd;
      std::fill(o, o + hd, 0.0f);
      float sum = 0.0f;
      for (int it = first[g]; it < first[g + 1]; ++it) {
        const float* pr = &part[(it * rows + i) * stride];
        if (pr[1] == 0.0f) continue;
        const float w = std::exp(pr[0] - mx);
        sum += w * pr[1];
        for (int c = 0; c < hd; ++c) o[c] += w * pr[2 + c];
      }
      const float inv = 1.0f / sum;
      for (int c = 0; c < hd; ++c) o[c] *= inv;
    }
}

void attention_prefill(const float* q, const float* k_new, const float* v_new, int64_t n, const AttnPrefix& prefix,
                       int n_heads, int n_kv, int hd, float* out) {
  init_blas();
  // sgemm wants f32: an f16 cache prefix (a later read on a session) is widened once.
  AttnPrefix wide;
  std::vector<std::vector<float>> buf;
  const AttnPrefix& pre = prefix.f16 ? wide : prefix;
  if (prefix.f16) {
    buf.resize(2 * prefix.len.size());
    for (size_t g = 0; g < prefix.len.size(); ++g) {
      const int64_t ne = static_cast<int64_t>(prefix.len[g]) * hd;
      for (int kv = 0; kv < 2; ++kv) {
        const uint16_t* src = static_cast<const uint16_t*>(kv ? prefix.v[g] : prefix.k[g]);
        std::vector<float>& d = buf[2 * g + kv];
        d.resize(ne);
        for (int64_t e = 0; e < ne; ++e) d[e] = _cvtsh_ss(src[e]);
      }
      wide.k.push_back(buf[2 * g].data());
      wide.v.push_back(buf[2 * g + 1].data());
      wide.len.push_back(prefix.len[g]);
    }
  }
  const int r = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int kstride = n_kv * hd, qstride = n_heads * hd;
  int max_plen = 0;
  for (int g = 0; g < n_kv; ++g) max_plen = std::max(max_plen, pre.len.empty() ? 0 : pre.len[g]);
  const int64_t B = 64;
  const int64_t nblocks = (n + B - 1) / B;
#pragma omp parallel
  {
    std::vector<float> S(B * (max_plen + n));
    std::vector<float> inv(B);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int h = 0; h < n_heads; ++h)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int g = h / r;
        const int64_t i0 = (nblocks - 1 - blk) * B;  // longest blocks first
        const int64_t nb = std::min(B, n - i0);
        const int plen = pre.len.empty() ? 0 : pre.len[g];
        const int64_t nk = i0 + nb;  // new keys visible to the block's last row
        const int64_t ld = plen + nk;
        const float* qb = q + i0 * qstride + h * hd;
        float* Sb = S.data();
        if (plen)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, plen, hd, scale, qb, qstride, static_cast<const float*>(pre.k[g]), hd,
                      0.0f, Sb, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, hd, scale, qb, qstride, k_new + g * hd,
                    kstride, 0.0f, Sb + plen, ld);
        for (int64_t i = 0; i < nb; ++i) {
          float* row = Sb + i * ld;
          const int64_t visible = plen + i0 + i + 1;
          inv[i] = 1.0f / simd::exp_sub_sum(row, visible, simd::max_of(row, visible));
          std::fill(row + visible, row + ld, 0.0f);
        }
        float* ob = out + i0 * qstride + h * hd;
        if (plen)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, plen, 1.0f, Sb, ld, static_cast<const float*>(pre.v[g]), hd, 0.0f,
                      ob, qstride);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, nk, 1.0f, Sb + plen, ld, v_new + g * hd,
                    kstride, plen ? 1.0f : 0.0f, ob, qstride);
        for (int64_t i = 0; i < nb; ++i)
          for (int c = 0; c < hd; ++c) ob[i * qstride + c] *= inv[i];
      }
  }
}

}  // namespace

void attention(const float* q, const float* k_new, const float* v_new, int64_t n, const AttnPrefix& prefix,
               int n_heads, int n_kv, int hd, float* out) {
  if (n <= 8) return attention_decode(q, k_new, v_new, n, prefix, n_heads, n_kv, hd, out);
  attention_prefill(q, k_new, v_new, n, prefix, n_heads, n_kv, hd, out);
}

}  // namespace ckv::cpu
