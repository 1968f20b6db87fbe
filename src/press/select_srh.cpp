// Semantic-retrieval-head selection (CompressKV, arXiv 2508.02401): each
// layer keeps the prompt positions its semantic retrieval heads attend to --
// the first n_srh heads of the profile's per-layer SRH ranking score with the
// observation window (DESIGN.md 2.1, normative), and every KV head keeps the
// top positions of that ONE ranking (the same positions when their budgets
// agree, so the cache stays one dense block per layer).
#include <string>

#include "press/scoring.h"
#include "profile/profile.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class SrhSelection : public Selection {
 public:
  explicit SrhSelection(std::vector<std::vector<int>> heads) : heads_(std::move(heads)) {}
  KeptPositions select(LayerScores& s, std::span<const int> budgets) override {
    const LayerView& lv = s.view();
    const float* score = s.heads(heads_.at(lv.layer));  // [T-w]
    const int w = s.params().window;
    bool same = true;
    for (int b : budgets) same &= b == budgets[0];
    if (same) return KeptPositions(budgets.size(), top_plus_window(lv, score, 1, budgets.first(1), w)[0]);
    KeptPositions kept;  // Ada-KV shares (adacompresskv): one ranking, a length per head
    for (size_t g = 0; g < budgets.size(); ++g) kept.push_back(top_plus_window(lv, score, 1, budgets.subspan(g, 1), w)[0]);
    return kept;
  }

 private:
  std::vector<std::vector<int>> heads_;  // [n_layers][n_srh] scoring query heads
};

}  // namespace

std::unique_ptr<Selection> make_select_srh(const PressParams& p, const PressShape& s, const Profile* prof) {
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
  return std::make_unique<SrhSelection>(std::move(heads));
}

}  // namespace ckv::press
