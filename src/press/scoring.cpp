// Observation-window scores through the backend, the top-k + window
// selection and the settings checks shared by every press. CompressKV (arXiv
// 2508.02401) and SnapKV (arXiv 2404.14469) score the prompt with the
// attention of its last `window` queries; DESIGN.md 2.1 steps 3-8.
#include "press/scoring.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "kernels/backend.h"
#include "kernels/comm.h"
#include "kernels/cpu/window_score.h"
#include "util/error.h"

namespace ckv::press {

namespace {

// The window's queries: the last `w` of the view's rows.
const float* window_queries(const LayerView& lv, int w) {
  if (lv.q_rows < w)
    throw Error("press: the layer view holds " + std::to_string(lv.q_rows) + " query rows, the window needs " +
                std::to_string(w));
  return lv.q + static_cast<size_t>(lv.q_rows - w) * lv.n_heads * lv.head_dim;
}

void scores_into(const LayerView& lv, const PressParams& p, std::span<const std::vector<int>> groups, float* out) {
  lv.backend->window_scores(window_queries(lv, p.window), lv.k, lv.T, p.window, lv.n_heads, lv.n_kv_heads,
                            lv.head_dim, groups, p.kernel, p.pool, out);
}

std::vector<std::vector<int>> kv_groups(int H, int G) {
  const int r = H / G;
  std::vector<std::vector<int>> groups(G, std::vector<int>(r));
  for (int g = 0; g < G; ++g) std::iota(groups[g].begin(), groups[g].end(), r * g);  // r*g .. r*g+r-1
  return groups;
}

}  // namespace

// Scratch rows ([.][n] each): a split view keeps the whole model's KV-head
// rows first (its own at kv_head0), then the rows of heads().
const float* LayerScores::kv_heads() {
  if (!kv_) {
    float* out = lv_.scratch + (lv_.split() ? static_cast<size_t>(lv_.kv_head0) * n() : 0);
    scores_into(lv_, p_, kv_groups(lv_.n_heads, lv_.n_kv_heads), out);
    kv_ = out;
  }
  return kv_;
}

const float* LayerScores::kv_heads_all() {
  if (!lv_.split()) return kv_heads();
  if (!kv_all_) {
    kv_heads();
    const int64_t n = this->n(), mine0 = int64_t(lv_.kv_head0) * n, mine1 = mine0 + int64_t(lv_.n_kv_heads) * n;
    const int64_t total = int64_t(lv_.total_kv_heads) * n;
    lv_.backend->fill(lv_.scratch, mine0, 0.0f);
    lv_.backend->fill(lv_.scratch + mine1, total - mine1, 0.0f);
    lv_.comm->all_reduce_sum(lv_.scratch, total);
    kv_all_ = lv_.scratch;
  }
  return kv_all_;
}

const float* LayerScores::heads(const std::vector<int>& heads) {
  if (heads_) return heads_;
  if (!lv_.split()) {
    float* out = lv_.scratch + static_cast<size_t>(lv_.n_kv_heads) * n();  // after kv_heads()'s rows
    const std::vector<int> groups[] = {heads};
    scores_into(lv_, p_, groups, out);
    heads_ = out;
    return heads_;
  }
  const int64_t n = this->n(), k = static_cast<int64_t>(heads.size());
  float* rows = lv_.scratch + int64_t(lv_.total_kv_heads) * n;  // [k][n], then the sum [n]
  float* out = rows + k * n;
  Backend& b = *lv_.backend;
  b.fill(rows, k * n, 0.0f);
  for (int64_t i = 0; i < k; ++i) {
    const int h = heads[i] - lv_.head0;
    if (h < 0 || h >= lv_.n_heads) continue;  // another rank's head
    const std::vector<int> one[] = {{h}};
    scores_into(lv_, p_, one, rows + i * n);
  }
  lv_.comm->all_reduce_sum(rows, k * n);
  b.fill(out, n, 0.0f);
  for (int64_t i = 0; i < k; ++i) b.add(out, rows + i * n, n);
  heads_ = out;
  return heads_;
}

std::vector<int> Allocation::head_budgets(LayerScores& s, int B) { return std::vector<int>(s.view().n_kv_heads, B); }

KeptPositions top_plus_window(const LayerView& lv, const float* score, int rows, std::span<const int> budgets,
                              int window) {
  const int n = lv.T - window;
  std::vector<int> k(rows);
  for (int r = 0; r < rows; ++r) k[r] = std::clamp(budgets[r] - window, 0, n);
  KeptPositions kept = lv.backend->top_k(score, rows, n, k);
  for (auto& v : kept)
    for (int j = n; j < lv.T; ++j) v.push_back(j);
  return kept;
}

std::vector<int32_t> all_positions(int T) {
  std::vector<int32_t> v(std::max(T, 0));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

std::vector<int32_t> top_k_positions(const float* score, int n, int k) { return cpu::top_k_positions(score, n, k); }

std::vector<int32_t> top_plus_window(const float* score, int T, int window, int budget) {
  if (T <= budget || T <= window) return all_positions(T);
  const int n = T - window;
  std::vector<int32_t> kept = top_k_positions(score, n, budget - window);
  for (int j = n; j < T; ++j) kept.push_back(j);
  return kept;
}

void pool1d(const float* in, float* out, int n, int kernel, Pool pool) { cpu::pool1d(in, out, n, kernel, pool); }

std::vector<float> mean_window_score(const LayerView& lv, const std::vector<int>& heads, int window, int kernel,
                                     Pool pool) {
  PressParams p;
  p.window = window, p.kernel = kernel, p.pool = pool;
  const std::vector<int> groups[] = {heads};
  std::vector<float> host(lv.T - window);
  scores_into(lv, p, groups, lv.scratch);
  lv.backend->download(host.data(), lv.scratch, host.size() * sizeof(float));
  return host;
}

std::vector<std::vector<float>> kv_head_scores(const LayerView& lv, int window, int kernel, Pool pool) {
  PressParams p;
  p.window = window, p.kernel = kernel, p.pool = pool;
  LayerScores s(lv, p);
  const float* dev = s.kv_heads();
  std::vector<std::vector<float>> res(lv.n_kv_heads, std::vector<float>(s.n()));
  for (int g = 0; g < lv.n_kv_heads; ++g)
    lv.backend->download(res[g].data(), dev + static_cast<size_t>(g) * s.n(), s.n() * sizeof(float));
  return res;
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
