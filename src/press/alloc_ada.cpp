// Ada-KV head allocation (Feng et al., "Ada-KV: Optimizing KV Cache Eviction
// by Adaptive Budget Allocation for Efficient LLM Inference", arXiv
// 2407.11550; a CompressKV baseline, DESIGN.md 3) over a layer allocation:
// within a layer the G*(B-w) best (KV head, position) pairs of the SnapKV
// scores decide each head's share; adakv_budgets_from_shares (budgets.cpp)
// turns shares into head budgets summing to G*B. Heads really keep different
// numbers of positions.
#include <string>

#include "kernels/backend.h"
#include "press/budgets.h"
#include "press/scoring.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class AdaAllocation : public Allocation {
 public:
  AdaAllocation(const PressParams& p, std::unique_ptr<Allocation> layers) : p_(p), layers_(std::move(layers)) {}
  void begin(int n_layers, int T) override { layers_->begin(n_layers, T); }
  // Average per KV head; the heads of a layer hold G*B in all.
  int layer_budget(int layer) const override { return layers_->layer_budget(layer); }
  // Shares over the whole layer's KV heads (a tensor-parallel rank sees every
  // rank's scores, kv_heads_all); this rank's heads' budgets are returned.
  std::vector<int> head_budgets(LayerScores& s, int B) override {
    const LayerView& lv = s.view();
    const int G = lv.all_kv_heads(), n = s.n(), C = B - p_.window;
    std::vector<int64_t> share(G, 0);
    if (C > 0 && C < n) {
      // The best pairs over the flattened [G][n] scores: ties lower head, then lower position.
      const int k[] = {G * C};
      const auto best = lv.backend->top_k(s.kv_heads_all(), 1, G * n, k);
      for (int32_t idx : best[0]) ++share[idx / n];
    }
    const std::vector<int> all = adakv_budgets_from_shares(share, n, B, p_.window, p_.alpha);
    const int g0 = lv.split() ? lv.kv_head0 : 0;
    return std::vector<int>(all.begin() + g0, all.begin() + g0 + lv.n_kv_heads);
  }

 private:
  PressParams p_;
  std::unique_ptr<Allocation> layers_;
};

}  // namespace

std::unique_ptr<Allocation> make_alloc_ada(const PressParams& p, std::unique_ptr<Allocation> layers) {
  check_kernel(p);
  if (!(p.alpha >= 0.0f && p.alpha <= 1.0f))
    throw Error("--kv-alpha " + std::to_string(p.alpha) + " must be within [0, 1]");
  return std::make_unique<AdaAllocation>(p, std::move(layers));
}

}  // namespace ckv::press
