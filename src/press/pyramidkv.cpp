// PyramidKV (Cai et al., "PyramidKV: Dynamic KV Cache Compression based on
// Pyramidal Information Funneling", arXiv 2406.02069), as a CompressKV
// baseline (arXiv 2508.02401; DESIGN.md 3): SnapKV's per-KV-head selection
// (snapkv.cpp) with layer budgets shrinking linearly with depth
// (pyramid_budgets, budgets.cpp). The budgets depend on the prompt length,
// so they are set in begin().
#include <string>

#include "press/budgets.h"
#include "press/scoring.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class PyramidKVPress : public Press {
 public:
  PyramidKVPress(const PressParams& p, int n_layers) : p_(p), budgets_(n_layers, p.budget) {}
  std::string name() const override { return "pyramidkv"; }
  void begin(int n_layers, int T) override { budgets_ = pyramid_budgets(p_.budget, T, n_layers, p_.window, p_.beta); }
  KeptPositions select(const LayerView& lv) override {
    const int B = layer_budget(lv.layer);
    if (lv.T <= B) return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
    auto scores = kv_head_scores(lv, p_.window, p_.kernel, p_.pool);  // [G][T-w]
    KeptPositions kept(lv.n_kv_heads);
    for (int g = 0; g < lv.n_kv_heads; ++g) kept[g] = top_plus_window(scores[g].data(), lv.T, p_.window, B);
    return kept;
  }
  int layer_budget(int layer) const override { return budgets_.at(layer); }

 private:
  PressParams p_;
  std::vector<int> budgets_;  // [n_layers], window included, >= window
};

}  // namespace

std::unique_ptr<Press> make_pyramidkv(const PressParams& p, const PressShape& s, const Profile*) {
  check_shape(s);
  check_budget_window(p);
  check_kernel(p);
  if (p.beta < 1) throw Error("--kv-beta " + std::to_string(p.beta) + " must be at least 1");
  return std::make_unique<PyramidKVPress>(p, s.n_layers);
}

}  // namespace ckv::press
