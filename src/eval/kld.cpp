#include "eval/kld.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/sampler.h"
#include "util/error.h"

namespace ckv::eval {

namespace {

// log-softmax of logits [V] into out [V].
void log_softmax(const float* x, int V, float* out) {
  double mx = x[0];
  for (int i = 1; i < V; ++i) mx = std::max<double>(mx, x[i]);
  double s = 0;
  for (int i = 0; i < V; ++i) s += std::exp(x[i] - mx);
  const double lse = mx + std::log(s);
  for (int i = 0; i < V; ++i) out[i] = static_cast<float>(x[i] - lse);
}

// KL(P || Q) with P given as log-probabilities and Q as logits.
double kl_from_logp(const float* logp, const float* q_logits, int V) {
  double mx = q_logits[0];
  for (int i = 1; i < V; ++i) mx = std::max<double>(mx, q_logits[i]);
  double s = 0;
  for (int i = 0; i < V; ++i) s += std::exp(q_logits[i] - mx);
  const double lse = mx + std::log(s);
  double kl = 0;
  for (int i = 0; i < V; ++i) {
    const double lp = logp[i];
    if (lp > -700) kl += std::exp(lp) * (lp - (q_logits[i] - lse));
  }
  return std::max(0.0, kl);
}

}  // namespace

double kl_divergence(const float* ref_logits, const float* logits, int V) {
  std::vector<float> lp(V);
  log_softmax(ref_logits, V, lp.data());
  return kl_from_logp(lp.data(), logits, V);
}

double quantile(std::vector<double> v, double p) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double x = p * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(x));
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (x - static_cast<double>(i)) * (v[i + 1] - v[i]);
}

nlohmann::json KlStats::to_json() const {
  return {{"kl_mean", mean}, {"kl_median", median}, {"kl_p99", p99}, {"kl_max", max}, {"top1_agreement", top1}};
}

KlStats kl_stats(const std::vector<double>& kl, int top1_agree) {
  KlStats s;
  if (kl.empty()) return s;
  double sum = 0;
  for (double x : kl) sum += x, s.max = std::max(s.max, x);
  s.mean = sum / static_cast<double>(kl.size());
  s.median = quantile(kl, 0.5);
  s.p99 = quantile(kl, 0.99);
  s.top1 = static_cast<double>(top1_agree) / static_cast<double>(kl.size());
  return s;
}

void check_kld_input(const Model& m, const std::vector<int>& tokens, const std::string& source,
                     const KldOptions& opt) {
  if (opt.n_ctx < 1) throw Error("--n-ctx must be at least 1");
  if (opt.n_eval < 1) throw Error("--n-eval must be at least 1");
  const int64_t need = static_cast<int64_t>(opt.n_ctx) + opt.n_eval;
  if (static_cast<int64_t>(tokens.size()) < need)
    throw file_error(source, "has " + std::to_string(tokens.size()) + " tokens, --n-ctx " + std::to_string(opt.n_ctx) +
                                 " + --n-eval " + std::to_string(opt.n_eval) + " needs " + std::to_string(need));
  if (need - 1 > m.config.context)
    throw Error("--n-ctx " + std::to_string(opt.n_ctx) + " + --n-eval " + std::to_string(opt.n_eval) +
                " exceeds the model's context of " + std::to_string(m.config.context) + " positions");
}

Results run_kld(const Model& m, const std::vector<int>& tokens, const std::string& source,
                const std::vector<Cell>& cells, const SessionOptions& base, const KldOptions& opt,
                const std::function<void(size_t)>& on_cell) {
  check_kld_input(m, tokens, source, opt);
  const int V = m.config.vocab_size, N = opt.n_eval;
  const std::vector<int> prompt(tokens.begin(), tokens.begin() + opt.n_ctx);
  const std::vector<int> forced(tokens.begin() + opt.n_ctx, tokens.begin() + opt.n_ctx + N);
  // FullKV's log-probabilities at every step ([N][V]) and argmax: its steps come first.
  std::vector<Cell> run_cells = cells;
  size_t full_i = run_cells.size();
  for (size_t i = 0; i < run_cells.size(); ++i)
    if (run_cells[i].full()) full_i = i;
  if (full_i == run_cells.size()) run_cells.push_back(Cell{"full", 0});
  std::vector<float> ref(static_cast<size_t>(N) * V);
  std::vector<int> ref_top(N);
  std::vector<std::vector<double>> kl(run_cells.size(), std::vector<double>(N, 0.0));
  std::vector<int> agree(run_cells.size(), 0);
  grid_teacher_force(m, prompt, forced, run_cells, base, [&](size_t ci, int step, const float* lg) {
    float* rs = &ref[static_cast<size_t>(step) * V];
    if (run_cells[ci].full()) {
      log_softmax(lg, V, rs);
      ref_top[step] = Sampler::argmax(lg, V);
    } else {
      kl[ci][step] = kl_from_logp(rs, lg, V);
    }
    agree[ci] += Sampler::argmax(lg, V) == ref_top[step];
  });

  Results r;
  r.task = "kld";
  r.model = m.path;
  std::vector<Row> rows(cells.size());
  for (size_t i = 0; i < cells.size(); ++i) {
    const size_t ci = i;
    Row& row = rows[i];
    row.method = cells[i].method;
    if (!cells[i].full()) row.budget = cells[i].budget;
    row.length = opt.n_ctx;
    row.case_id = source;
    row.tokens = opt.n_ctx;
    row.metrics = kl_stats(kl[ci], agree[ci]).to_json();
    if (on_cell) on_cell(i);
  }
  r.rows = std::move(rows);
  return r;
}

}  // namespace ckv::eval
