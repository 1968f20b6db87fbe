// Ada-KV (Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive
// Budget Allocation for Efficient LLM Inference", arXiv 2407.11550) on SnapKV
// scores, as a CompressKV baseline (arXiv 2508.02401; DESIGN.md 3). Within a
// layer the G*(B-w) best (KV head, position) pairs decide each head's share;
// adakv_head_budgets (budgets.cpp) turns shares into head budgets summing to
// G*B. Heads really keep different numbers of positions.
#include <string>

#include "press/budgets.h"
#include "press/scoring.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class AdaKVPress : public Press {
 public:
  explicit AdaKVPress(const PressParams& p) : p_(p) {}
  std::string name() const override { return "adakv"; }
  KeptPositions select(const LayerView& lv) override {
    if (lv.T <= p_.budget) return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
    auto scores = kv_head_scores(lv, p_.window, p_.kernel, p_.pool);  // [G][T-w]
    auto hb = adakv_head_budgets(scores, p_.budget, p_.window, p_.alpha);  // [G], sum G*B
    KeptPositions kept(lv.n_kv_heads);
    for (int g = 0; g < lv.n_kv_heads; ++g) kept[g] = top_plus_window(scores[g].data(), lv.T, p_.window, hb[g]);
    return kept;
  }
  // Average per KV head; the heads of a layer hold G*B in all.
  int layer_budget(int) const override { return p_.budget; }

 private:
  PressParams p_;
};

}  // namespace

std::unique_ptr<Press> make_adakv(const PressParams& p, const PressShape& s, const Profile*) {
  check_shape(s);
  check_budget_window(p);
  check_kernel(p);
  if (!(p.alpha >= 0.0f && p.alpha <= 1.0f))
    throw Error("--kv-alpha " + std::to_string(p.alpha) + " must be within [0, 1]");
  return std::make_unique<AdaKVPress>(p);
}

}  // namespace ckv::press
