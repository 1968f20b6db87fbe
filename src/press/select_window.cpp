// Window selection (SnapKV, Li et al., arXiv 2404.14469; a CompressKV
// baseline, arXiv 2508.02401, DESIGN.md 3): every query head scores with the
// observation window (DESIGN.md 2.1 steps 3-6), and each KV head g keeps its
// own top positions by the mean over the r query heads that read it
// (r*g .. r*g+r-1 -- the GQA-correct grouping, not the reference code's
// reshape), plus the window.
#include "press/scoring.h"

namespace ckv::press {

namespace {

class WindowSelection : public Selection {
 public:
  KeptPositions select(LayerScores& s, std::span<const int> budgets) override {
    const LayerView& lv = s.view();
    return top_plus_window(lv, s.kv_heads(), lv.n_kv_heads, budgets, s.params().window);
  }
};

}  // namespace

std::unique_ptr<Selection> make_select_window(const PressParams& p, const PressShape& s, const Profile*) {
  check_kernel(p);
  return std::make_unique<WindowSelection>();
}

}  // namespace ckv::press
