// Error-aware layer allocation (CompressKV, arXiv 2508.02401, DESIGN.md 2.3):
// layer budgets from the profile's per-layer eviction-error scores
// (error_aware_budgets, budgets.cpp); uniform when the profile has none.
#include <algorithm>
#include <string>

#include "press/budgets.h"
#include "press/scoring.h"
#include "profile/profile.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class ErrorAwareAllocation : public Allocation {
 public:
  explicit ErrorAwareAllocation(std::vector<int> budgets) : budgets_(std::move(budgets)) {}
  int layer_budget(int layer) const override { return budgets_.at(layer); }

 private:
  std::vector<int> budgets_;  // [n_layers], window included (at least the window)
};

}  // namespace

std::unique_ptr<Allocation> make_alloc_error_aware(const PressParams& p, const PressShape& s, const Profile* prof) {
  if (!prof)
    throw Error("--kv-alloc error-aware needs a model profile with layer scores: pass --kv-profile FILE");
  const std::string src = prof->source.empty() ? std::string("profile") : prof->source;
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
  return std::make_unique<ErrorAwareAllocation>(std::move(budgets));
}

}  // namespace ckv::press
