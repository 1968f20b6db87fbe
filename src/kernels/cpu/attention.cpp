// Causal GQA attention on the CPU (declared in attention.h).
//
// Decode: split-K ("flash decoding") over the paged caches of a whole batch.
// The keys of each (sequence, KV head) are cut into chunks of 256; one work
// item computes, for every query row of that head's group, the chunk's
// running max, sum of exponentials and unnormalised output, and the chunks
// are merged at the end. Why: with 9 query heads on 2 cores a loop over heads
// leaves a core idle a fifth of the time, and a long cache needs all cores on
// one head's keys. The r query heads of a group read each key once (4 keys x
// 3 rows register tiles). A chunk spans several pages, read page by page.
//
// Prefill: blocks of 64 query rows per head over dense K/V; scores and
// outputs by sgemm (single-threaded BLAS inside our own parallel loop),
// softmax with a vector exp, normalisation applied once to the output rows.
#include "kernels/cpu/attention.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/kv_pages.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/simd_math.h"
#include "util/error.h"

namespace ckv::cpu {

namespace {

// Key/value rows of a page (f32 or f16): row j, element c as 8 floats or one.
struct F32Rows {
  const float* p;
  int64_t ld;  // elements between rows
  static F32Rows at(const uint8_t* b, int64_t ld) { return {reinterpret_cast<const float*>(b), ld}; }
  __m256 load8(int64_t j, int c) const { return _mm256_loadu_ps(p + j * ld + c); }
  float load1(int64_t j, int c) const { return p[j * ld + c]; }
};
struct F16Rows {
  const uint16_t* p;
  int64_t ld;
  static F16Rows at(const uint8_t* b, int64_t ld) { return {reinterpret_cast<const uint16_t*>(b), ld}; }
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

// o[0..hd) += sum_j p[j] * v_j over nk values.
template <class Rows>
void weighted_sum(const float* p, Rows v, int nk, int hd, float* o) {
  if (hd % 8 != 0) {
    for (int j = 0; j < nk; ++j)
      for (int c = 0; c < hd; ++c) o[c] += p[j] * v.load1(j, c);
    return;
  }
  for (int c0 = 0; c0 < hd; c0 += 64) {
    const int w = std::min(64, hd - c0) / 8;
    __m256 acc[8];
    for (int t = 0; t < w; ++t) acc[t] = _mm256_loadu_ps(o + c0 + 8 * t);
    for (int j = 0; j < nk; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      for (int t = 0; t < w; ++t) acc[t] = _mm256_fmadd_ps(pj, v.load8(j, c0 + 8 * t), acc[t]);
    }
    for (int t = 0; t < w; ++t) _mm256_storeu_ps(o + c0 + 8 * t, acc[t]);
  }
}

// Partial result of one row over one chunk of keys: running max, sum of
// exponentials, the probe's span sum and argmax row, then hd output values.
constexpr int kPart = 4;

// One decode work item: for `rows` query rows (token t = i / r) over the keys
// [j0, j0 + nk) of one KV head's pages, the partial of each row into
// part[i * (hd + kPart)]. Token t sees keys < visible0 + t.
// One KV head's pages: page i's keys at base + pages[i] * page_bytes, its
// values voff bytes further; P rows a page.
struct PagedHead {
  const uint8_t* base;
  const int32_t* pages;
  size_t page_bytes, voff, row_bytes;
  int P;
  const uint8_t* key(int j) const { return base + pages[j / P] * page_bytes + (j % P) * row_bytes; }
  const uint8_t* value(int j) const { return key(j) + voff; }
};

template <class Rows>
void partial(const float* const* qr, float* const* sr, int rows, int r, const PagedHead& ph, int j0, int nk,
             int visible0, int hd, float scale, const AttnProbeOut* probe, float* part) {
  const int P = ph.P;
  // Scores page by page into each row's contiguous buffer.
  for (int j = 0; j < nk;) {
    const int cnt = std::min(P - (j0 + j) % P, nk - j);
    const Rows k = Rows::at(ph.key(j0 + j), hd);
    float* sj[kMaxRows];
    for (int i = 0; i < rows; ++i) sj[i] = sr[i] + j;
    int i = 0;
    for (; i + 3 <= rows; i += 3) scores<3>(&qr[i], k, cnt, hd, scale, &sj[i]);
    for (; i < rows; ++i) scores<1>(&qr[i], k, cnt, hd, scale, &sj[i]);
    j += cnt;
  }
  for (int i = 0; i < rows; ++i) {
    const int visible = std::clamp(visible0 + i / r - j0, 0, nk);
    float* pr = part + static_cast<int64_t>(i) * (hd + kPart);
    std::fill(pr + kPart, pr + kPart + hd, 0.0f);
    if (visible == 0) {
      pr[0] = -INFINITY, pr[1] = 0.0f, pr[2] = 0.0f, pr[3] = -1.0f;
      continue;
    }
    float* s = sr[i];
    if (probe) {
      int am = 0;
      for (int j = 1; j < visible; ++j)
        if (s[j] > s[am]) am = j;
      pr[3] = static_cast<float>(j0 + am);
    }
    pr[0] = simd::max_of(s, visible);
    pr[1] = simd::exp_sub_sum(s, visible, pr[0]);
    if (probe) {
      double span = 0;
      for (int j = std::max(probe->lo - j0, 0); j < std::min(probe->hi - j0, visible); ++j) span += s[j];
      pr[2] = static_cast<float>(span);
    }
    for (int j = 0; j < visible;) {
      const int cnt = std::min(P - (j0 + j) % P, visible - j);
      weighted_sum(s + j, Rows::at(ph.value(j0 + j), hd), cnt, hd, pr + kPart);
      j += cnt;
    }
  }
}

}  // namespace

void attention_decode(const float* q, std::span<const DecodeItem> seqs, int layer, int n_heads, int n_kv, int hd,
                      DecodeScratch& ws, float* out, const AttnProbeOut* probe) {
  const int r = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int qstride = n_heads * hd;
  const int64_t stride = hd + kPart;

  // Work items: (sequence, KV head, chunk of keys).
  ws.items.clear();
  ws.first.clear();
  for (size_t si = 0; si < seqs.size(); ++si)
    for (int g = 0; g < n_kv; ++g) {
      ws.first.push_back(static_cast<int>(ws.items.size()));
      const int len = seqs[si].cache->len(layer, g);
      for (int j0 = 0; j0 < len; j0 += kChunk)
        ws.items.push_back({static_cast<int>(si), g, j0, std::min(kChunk, len - j0)});
    }
  ws.first.push_back(static_cast<int>(ws.items.size()));
  int max_rows = 0;
  for (const auto& sq : seqs) max_rows = std::max(max_rows, sq.n * r);
  const size_t need = ws.items.size() * max_rows * stride;
  if (need > ws.part.size() || max_rows > kMaxRows)
    throw Error("decode attention: the batch exceeds the context's scratch (" + std::to_string(need) +
                " floats for " + std::to_string(ws.items.size()) + " work items)");

#pragma omp parallel
  {
    const int t = omp_get_thread_num();
    float* s = ws.scores.data() + static_cast<size_t>(t) * kMaxRows * kChunk;
    const float* qr[kMaxRows];
    float* sr[kMaxRows];
#pragma omp for schedule(dynamic, 1)
    for (size_t it = 0; it < ws.items.size(); ++it) {
      const DecodeScratch::Item& item = ws.items[it];
      const DecodeItem& sq = seqs[item.seq];
      const KvCache& kc = *sq.cache;
      const KvPool& pool = kc.pool();
      const int g = item.g, rows = sq.n * r;
      for (int i = 0; i < rows; ++i) {
        qr[i] = q + static_cast<int64_t>(sq.row0 + i / r) * qstride + (g * r + i % r) * hd;
        sr[i] = s + static_cast<int64_t>(i) * kChunk;
      }
      float* pr = &ws.part[it * max_rows * stride];
      const int visible0 = kc.len(layer, g) - sq.n + 1;
      const PagedHead ph{pool.base(),      kc.pages(layer, g).data(), pool.page_bytes(),
                         pool.page_rows() * pool.row_bytes(), pool.row_bytes(), pool.page_rows()};
      if (kc.type() == KvType::F16)
        partial<F16Rows>(qr, sr, rows, r, ph, item.j0, item.nk, visible0, hd, scale, probe, pr);
      else
        partial<F32Rows>(qr, sr, rows, r, ph, item.j0, item.nk, visible0, hd, scale, probe, pr);
    }
  }

  // Merge the chunks of each row: rescale to the global max and normalise.
  for (size_t si = 0; si < seqs.size(); ++si) {
    const DecodeItem& sq = seqs[si];
    for (int g = 0; g < n_kv; ++g) {
      const int a = ws.first[si * n_kv + g], b = ws.first[si * n_kv + g + 1];
      for (int i = 0; i < sq.n * r; ++i) {
        float mx = -INFINITY;
        for (int it = a; it < b; ++it) mx = std::max(mx, ws.part[(it * max_rows + i) * stride]);
        float* o = out + static_cast<int64_t>(sq.row0 + i / r) * qstride + (g * r + i % r) * hd;
        std::fill(o, o + hd, 0.0f);
        float sum = 0.0f, span = 0.0f, best = -INFINITY;
        int arg = -1;
        for (int it = a; it < b; ++it) {
          const float* pr = &ws.part[(it * max_rows + i) * stride];
          if (pr[1] == 0.0f) continue;
          const float w = std::exp(pr[0] - mx);
          sum += w * pr[1];
          span += w * pr[2];
          if (pr[0] > best) best = pr[0], arg = static_cast<int>(pr[3]);
          for (int c = 0; c < hd; ++c) o[c] += w * pr[kPart + c];
        }
        const float inv = 1.0f / sum;
        for (int c = 0; c < hd; ++c) o[c] *= inv;
        if (probe) {
          probe->mass[g * r + i % r] = span * inv;
          probe->argmax[g * r + i % r] = arg;
        }
      }
    }
  }
}

void attention_prefill(const float* q, int64_t i0, int64_t nq, const DenseKV& kv, int n_heads, int n_kv, int hd,
                       PrefillScratch& ws, float* out) {
  init_blas();
  const int r = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int kstride = n_kv * hd, qstride = n_heads * hd;
  const int64_t B = kPrefillBlock;
  const int64_t nblocks = (nq + B - 1) / B;
  const int64_t P = kv.first_new;  // row of the first new token
  if ((P + i0 + nq) * B > static_cast<int64_t>(ws.row_floats))
    throw Error("prefill attention: " + std::to_string(P + i0 + nq) + " keys exceed the context's scratch");
#pragma omp parallel
  {
    float* S = ws.scores.data() + static_cast<size_t>(omp_get_thread_num()) * ws.row_floats;
    float inv[kPrefillBlock];
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int h = 0; h < n_heads; ++h)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int g = h / r;
        const int64_t b0 = (nblocks - 1 - blk) * B;  // longest blocks first
        const int64_t nb = std::min(B, nq - b0);
        const int64_t start = kv.start.empty() ? P : kv.start[g];
        const int64_t last = P + i0 + b0 + nb;  // keys visible to the block's last row: [start, last)
        const int64_t ld = last - start;
        const float* qb = q + b0 * qstride + h * hd;
        const float* kb = kv.k + start * kstride + g * hd;
        const float* vb = kv.v + start * kstride + g * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, ld, hd, scale, qb, qstride, kb, kstride, 0.0f, S,
                    ld);
        for (int64_t i = 0; i < nb; ++i) {
          float* row = S + i * ld;
          const int64_t visible = P + i0 + b0 + i + 1 - start;
          inv[i] = 1.0f / simd::exp_sub_sum(row, visible, simd::max_of(row, visible));
          std::fill(row + visible, row + ld, 0.0f);
        }
        float* ob = out + b0 * qstride + h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, ld, 1.0f, S, ld, vb, kstride, 0.0f, ob,
                    qstride);
        for (int64_t i = 0; i < nb; ++i)
          for (int c = 0; c < hd; ++c) ob[i * qstride + c] *= inv[i];
      }
  }
}

void DecodeScratch::reserve(int max_seqs, int64_t max_ctx, int n_kv, int r, int max_tokens, int hd, int threads) {
  if (max_tokens * r > kMaxRows)
    throw Error("decode attention: " + std::to_string(max_tokens) + " tokens x " + std::to_string(r) +
                " query heads per KV head exceed " + std::to_string(kMaxRows) + " rows");
  const int64_t n_items = int64_t(max_seqs) * n_kv * ((max_ctx + kChunk - 1) / kChunk + 1);
  items.reserve(n_items);
  first.reserve(int64_t(max_seqs) * n_kv + 1);
  part.resize(n_items * max_tokens * r * (hd + kPart));
  scores.resize(static_cast<size_t>(threads) * kMaxRows * kChunk);
}

size_t DecodeScratch::bytes() const {
  return items.capacity() * sizeof(Item) + first.capacity() * sizeof(int) +
         (part.size() + scores.size()) * sizeof(float);
}

void PrefillScratch::reserve(int64_t max_ctx, int threads) {
  row_floats = static_cast<size_t>(kPrefillBlock) * max_ctx;
  scores.resize(row_floats * threads);
}

}  // namespace ckv::cpu
