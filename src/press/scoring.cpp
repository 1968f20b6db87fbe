// Observation-window scoring, pooling and top-k shared by every press.
// CompressKV (arXiv 2508.02401) and SnapKV (arXiv 2404.14469) score the prompt
// with the attention of its last `window` queries; DESIGN.md 2.1 steps 3-8.
#include "press/scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "util/error.h"

namespace ckv::press {

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

void window_attention_mass(const LayerView& lv, int h, int window, float* out) {
  const int T = lv.T, w = window, hd = lv.head_dim;
  const int r = lv.n_heads / lv.n_kv_heads;
  const int kvh = h / r;  // query head h reads KV head h / r (reference HF code)
  const int n = T - w;    // selectable positions
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // logits[i][j] for window row i (position T-w+i) and key j <= T-w+i: [w][T].
  // One pass over the keys serves all w rows.
  std::vector<float> logits(static_cast<size_t>(w) * T);
  for (int j = 0; j < T; ++j) {
    const float* kj = lv.k + (static_cast<size_t>(j) * lv.n_kv_heads + kvh) * hd;
    for (int i = std::max(0, j - n); i < w; ++i) {  // causal: j <= n + i
      const float* qi = lv.q + (static_cast<size_t>(n + i) * lv.n_heads + h) * hd;
      logits[static_cast<size_t>(i) * T + j] = dot(qi, kj, hd) * scale;
    }
  }
  std::fill(out, out + n, 0.0f);
  for (int i = 0; i < w; ++i) {
    float* row = logits.data() + static_cast<size_t>(i) * T;
    const int len = n + i + 1;  // visible keys 0 .. T-w+i
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < len; ++j) mx = std::max(mx, row[j]);
    float sum = 0;
    for (int j = 0; j < len; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = 1.0f / sum;
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

std::vector<std::vector<float>> head_scores(const LayerView& lv, const std::vector<int>& heads, int window,
                                            int kernel, Pool pool) {
  const int n = lv.T - window;
  std::vector<std::vector<float>> res(heads.size(), std::vector<float>(n));
  std::vector<float> mass(n);
  for (size_t a = 0; a < heads.size(); ++a) {
    window_attention_mass(lv, heads[a], window, mass.data());
    pool1d(mass.data(), res[a].data(), n, kernel, pool);
  }
  return res;
}

std::vector<float> mean_window_score(const LayerView& lv, const std::vector<int>& heads, int window, int kernel,
                                     Pool pool) {
  const int n = lv.T - window;
  std::vector<float> score(n, 0.0f);
  std::vector<float> mass(n), pooled(n);
  for (int h : heads) {
    window_attention_mass(lv, h, window, mass.data());
    pool1d(mass.data(), pooled.data(), n, kernel, pool);
    for (int j = 0; j < n; ++j) score[j] += pooled[j];
  }
  const float inv = 1.0f / static_cast<float>(heads.size());
  for (float& s : score) s *= inv;
  return score;
}

std::vector<std::vector<float>> kv_head_scores(const LayerView& lv, int window, int kernel, Pool pool) {
  const int r = lv.n_heads / lv.n_kv_heads;
  std::vector<std::vector<float>> res(lv.n_kv_heads);
  for (int g = 0; g < lv.n_kv_heads; ++g) {
    std::vector<int> group(r);
    std::iota(group.begin(), group.end(), r * g);  // query heads r*g .. r*g+r-1
    res[g] = mean_window_score(lv, group, window, kernel, pool);
  }
  return res;
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

std::vector<int32_t> top_plus_window(const float* score, int T, int window, int budget) {
  if (T <= budget || T <= window) return all_positions(T);
  const int n = T - window;
  std::vector<int32_t> kept = top_k_positions(score, n, budget - window);
  for (int j = n; j < T; ++j) kept.push_back(j);
  return kept;
}

std::vector<int32_t> all_positions(int T) {
  std::vector<int32_t> v(std::max(T, 0));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

void check_budget_window(const PressParams& p) {
  if (p.window < 1) throw Error("--kv-window " + std::to_string(p.window) + " must be at least 1");
  if (p.budget <= p.window)
    throw Error("--kv-budget " + std::to_string(p.budget) + " must be larger than --kv-window " +
                std::to_string(p.window) + " (the budget counts the window's tokens)");
}

void check_kernel(const PressParams& p) {
  if (p.kernel < 1 || p.kernel % 2 == 0)
    throw Error("--kv-kernel " + std::to_string(p.kernel) + " must be odd and at least 1 (pooling keeps the length)");
}

void check_shape(const PressShape& s) {
  if (s.n_layers < 1 || s.n_heads < 1 || s.n_kv_heads < 1 || s.head_dim < 1 || s.n_heads % s.n_kv_heads != 0)
    throw Error("press: bad model shape " + std::to_string(s.n_layers) + " layers x " + std::to_string(s.n_heads) +
                " heads (" + std::to_string(s.n_kv_heads) + " KV heads, head dim " + std::to_string(s.head_dim) +
                "): heads must be a positive multiple of KV heads");
}

}  // namespace ckv::press
