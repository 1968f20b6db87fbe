// FullKV: no eviction -- the baseline every method is measured against
// (DESIGN.md 3; CompressKV, arXiv 2508.02401, reports it as the upper bound).
// Keeping every token must change nothing, bit for bit (STYLE.md habit 6).
#include <climits>

#include "press/scoring.h"

namespace ckv::press {

namespace {

class FullPress : public Press {
 public:
  std::string name() const override { return "full"; }
  void begin(int n_layers, int T) override { T_ = T; }
  KeptPositions select(const LayerView& lv) override {
    return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
  }
  int layer_budget(int) const override { return T_; }

 private:
  int T_ = INT_MAX;  // the prompt length once begin() ran: all of it is kept
};

}  // namespace

std::unique_ptr<Press> make_full(const PressParams&, const PressShape& s, const Profile*) {
  check_shape(s);
  return std::make_unique<FullPress>();
}

}  // namespace ckv::press
