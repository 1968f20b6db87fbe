// Observation-window scoring shared by CompressKV (arXiv 2508.02401) and
// SnapKV (arXiv 2404.14469): the prompt scored by the attention of its last
// `window` queries; DESIGN.md 2.1 steps 3-8.
#include "kernels/cpu/window_score.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "press/press.h"

namespace ckv::cpu {

namespace {

// q . k over head_dim, four partial sums (keeps the FP pipes busy; the order
// differs from a BLAS dot only in the last bits).
inline float dot(const float* a, const float* b, int n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

void window_mass(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd, int h, float* logits,
                 float* out) {
  const int r = n_heads / n_kv;
  const int kvh = h / r;  // query head h reads KV head h / r (reference HF code)
  const int n = T - w;    // selectable positions
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // logits[i][j] for window row i (position T-w+i) and key j <= T-w+i: [w][T].
  // One pass over the keys serves all w rows.
  for (int j = 0; j < T; ++j) {
    const float* kj = k + (static_cast<size_t>(j) * n_kv + kvh) * hd;
    for (int i = std::max(0, j - n); i < w; ++i)  // causal: j <= n + i
      logits[static_cast<size_t>(i) * T + j] = dot(qw + (static_cast<size_t>(i) * n_heads + h) * hd, kj, hd) * scale;
  }
  std::fill(out, out + n, 0.0f);
  for (int i = 0; i < w; ++i) {
    float* row = logits + static_cast<size_t>(i) * T;
    const int len = n + i + 1;  // visible keys 0 .. T-w+i
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < len; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int j = 0; j < len; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = 0; j < n; ++j) out[j] += row[j] * inv;
  }
}

void pool1d(const float* in, float* out, int n, int kernel, Pool pool) {
  const int half = kernel / 2;
  for (int j = 0; j < n; ++j) {
    const int lo = std::max(0, j - half), hi = std::min(n - 1, j + half);
    if (pool == Pool::Avg) {
      float s = 0;
      for (int t = lo; t <= hi; ++t) s += in[t];
      out[j] = s / static_cast<float>(kernel);  // zero padding, divisor always k
    } else {
      float m = in[lo];
      for (int t = lo + 1; t <= hi; ++t) m = std::max(m, in[t]);
      out[j] = m;
    }
  }
}

void window_scores(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd,
                   std::span<const std::vector<int>> groups, int kernel, Pool pool, float* scratch, float* out) {
  const int n = T - w;
  for (size_t a = 0; a < groups.size(); ++a) {
    float* row = out + a * n;
    std::fill(row, row + n, 0.0f);
    const auto& heads = groups[a];
    // Heads in parallel, pooled masses added in head order afterwards.
    const int nh = static_cast<int>(heads.size());
    for (int b0 = 0; b0 < nh; b0 += omp_get_max_threads()) {
      const int nb = std::min(omp_get_max_threads(), nh - b0);
#pragma omp parallel for schedule(static, 1) num_threads(nb)
      for (int b = 0; b < nb; ++b) {
        float* s = scratch + static_cast<size_t>(b) * (w + 2) * T;
        window_mass(qw, k, T, w, n_heads, n_kv, hd, heads[b0 + b], s, s + static_cast<size_t>(w) * T);
        pool1d(s + static_cast<size_t>(w) * T, s, n, kernel, pool);  // pooled into the (spent) logits
      }
      for (int b = 0; b < nb; ++b) {
        const float* s = scratch + static_cast<size_t>(b) * (w + 2) * T;
        for (int j = 0; j < n; ++j) row[j] += s[j];
      }
    }
    const float inv = 1.0f / static_cast<float>(nh);
    for (int j = 0; j < n; ++j) row[j] *= inv;
  }
}

std::vector<int32_t> top_k_positions(const float* score, int n, int k) {
  k = std::clamp(k, 0, n);
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [score](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace ckv::cpu
