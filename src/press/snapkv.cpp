// SnapKV (Li et al., "SnapKV: LLM Knows What You Are Looking for Before
// Generation", arXiv 2404.14469), as a CompressKV baseline (arXiv 2508.02401;
// DESIGN.md 3): every query head scores with the observation window (DESIGN.md
// 2.1 steps 3-6), and each KV head g keeps its own top B - w positions by the
// mean over the r query heads that read it (r*g .. r*g+r-1 -- the GQA-correct
// grouping, not the reference code's reshape), plus the window.
#include "press/scoring.h"

namespace ckv::press {

namespace {

class SnapKVPress : public Press {
 public:
  explicit SnapKVPress(const PressParams& p) : p_(p) {}
  std::string name() const override { return "snapkv"; }
  KeptPositions select(const LayerView& lv) override {
    if (lv.T <= p_.budget) return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
    auto scores = kv_head_scores(lv, p_.window, p_.kernel, p_.pool);  // [G][T-w]
    KeptPositions kept(lv.n_kv_heads);
    for (int g = 0; g < lv.n_kv_heads; ++g) kept[g] = top_plus_window(scores[g].data(), lv.T, p_.window, p_.budget);
    return kept;
  }
  int layer_budget(int) const override { return p_.budget; }

 private:
  PressParams p_;
};

}  // namespace

std::unique_ptr<Press> make_snapkv(const PressParams& p, const PressShape& s, const Profile*) {
  check_shape(s);
  check_budget_window(p);
  check_kernel(p);
  return std::make_unique<SnapKVPress>(p);
}

}  // namespace ckv::press
