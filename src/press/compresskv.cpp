// CompressKV (arXiv 2508.02401): each layer keeps the prompt positions its
// semantic retrieval heads attend to -- the first n_srh heads of the profile's
// per-layer SRH ranking score with the observation window (DESIGN.md 2.1,
// normative), and the SAME positions are kept for every KV head so the cache
// stays one dense block per layer. Layer budgets come from the profile's layer
// error scores (error-aware allocation, DESIGN.md 2.3; budgets.cpp), or are
// uniform without them.
#include <algorithm>
#include <string>

#include "press/budgets.h"
#include "press/scoring.h"
#include "profile/profile.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class CompressKVPress : public Press {
 public:
  CompressKVPress(const PressParams& p, std::vector<std::vector<int>> heads, std::vector<int> budgets)
      : p_(p), heads_(std::move(heads)), budgets_(std::move(budgets)) {}
  std::string name() const override { return "compresskv"; }
  KeptPositions select(const LayerView& lv) override {
    const int B = layer_budget(lv.layer);
    if (lv.T <= B) return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
    auto score = mean_window_score(lv, heads_.at(lv.layer), p_.window, p_.kernel, p_.pool);  // [T-w]
    return KeptPositions(lv.n_kv_heads, top_plus_window(score.data(), lv.T, p_.window, B));
  }
  int layer_budget(int layer) const override { return budgets_.at(layer); }

 private:
  PressParams p_;
  std::vector<std::vector<int>> heads_;  // [n_layers][n_srh] scoring query heads
  std::vector<int> budgets_;             // [n_layers], window included (at least the window)
};

}  // namespace

std::unique_ptr<Press> make_compresskv(const PressParams& p, const PressShape& s, const Profile* prof) {
  check_shape(s);
  check_budget_window(p);
  check_kernel(p);
  if (!prof)
    throw Error(
        "--kv-method compresskv needs a model profile: pass --kv-profile FILE (made by `compresskv profile import` "
        "from the CompressKV authors' published head rankings and layer scores)");
  if (p.n_srh < 1 || p.n_srh > s.n_heads)
    throw Error("--kv-srh " + std::to_string(p.n_srh) + " is out of range [1, " + std::to_string(s.n_heads) +
                "] (query heads per layer)");
  const std::string src = prof->source.empty() ? std::string("profile") : prof->source;
  if (static_cast<int>(prof->srh_ranking.size()) != s.n_layers)
    throw file_error(src, "field \"srh.ranking\" has " + std::to_string(prof->srh_ranking.size()) +
                              " layers, the model has " + std::to_string(s.n_layers));
  std::vector<std::vector<int>> heads(s.n_layers);
  for (int l = 0; l < s.n_layers; ++l) {
    const auto& row = prof->srh_ranking[l];
    if (static_cast<int>(row.size()) < p.n_srh)
      throw file_error(src, "field \"srh.ranking[" + std::to_string(l) + "]\" ranks " + std::to_string(row.size()) +
                                " heads, --kv-srh asks for " + std::to_string(p.n_srh));
    std::vector<bool> seen(s.n_heads, false);
    for (int i = 0; i < p.n_srh; ++i) {
      int h = row[i];
      if (h < 0 || h >= s.n_heads || seen[h])
        throw file_error(src, "field \"srh.ranking[" + std::to_string(l) + "][" + std::to_string(i) + "]\": head " +
                                  std::to_string(h) + " is not a valid unique query head of [0, " +
                                  std::to_string(s.n_heads) + ")");
      seen[h] = true;
      heads[l].push_back(h);
    }
  }
  std::vector<int> budgets(s.n_layers, p.budget);
  if (!prof->layer_scores.empty()) {
    if (static_cast<int>(prof->layer_scores.size()) != s.n_layers)
      throw file_error(src, "field \"layer_scores\" has " + std::to_string(prof->layer_scores.size()) +
                                " entries, the model has " + std::to_string(s.n_layers) + " layers");
    constexpr int kMin = 32;  // DESIGN.md 2.3: m = 32, M = 3B
    if (p.budget < kMin)
      throw Error("--kv-budget " + std::to_string(p.budget) + " is below the error-aware allocator's minimum of " +
                  std::to_string(kMin) + " tokens per layer (DESIGN.md 2.3); use at least " + std::to_string(kMin) +
                  " or a profile without layer scores");
    budgets = error_aware_budgets(prof->layer_scores, p.budget, kMin, 3 * p.budget);
    for (int& b : budgets) b = std::max(b, p.window + 1);  // the window is always kept (window > 32 only)
  }
  return std::make_unique<CompressKVPress>(p, std::move(heads), std::move(budgets));
}

}  // namespace ckv::press
