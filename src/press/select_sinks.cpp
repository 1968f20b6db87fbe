// Sinks + recent selection (StreamingLLM, Xiao et al., "Efficient Streaming
// Language Models with Attention Sinks", arXiv 2309.17453; a CompressKV
// baseline, DESIGN.md 3): the first n_sinks positions (attention sinks) plus
// the most recent B - n_sinks. Unlike the CompressKV reference code (first
// B - w and last w), the sinks really are n_sinks tokens.
#include <algorithm>
#include <string>

#include "press/scoring.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class SinksSelection : public Selection {
 public:
  explicit SinksSelection(int n_sinks) : sinks_(n_sinks) {}
  KeptPositions select(LayerScores& s, std::span<const int> budgets) override {
    const int T = s.view().T;
    KeptPositions kept(budgets.size());
    for (size_t g = 0; g < budgets.size(); ++g) {
      const int B = budgets[g], sinks = std::min(sinks_, B);
      for (int j = 0; j < sinks; ++j) kept[g].push_back(j);
      for (int j = T - (B - sinks); j < T; ++j) kept[g].push_back(j);  // B < T, so no overlap
    }
    return kept;
  }

 private:
  int sinks_;
};

}  // namespace

std::unique_ptr<Selection> make_select_sinks(const PressParams& p, const PressShape&, const Profile*) {
  if (p.n_sinks < 0 || p.n_sinks >= p.budget)
    throw Error("--kv-sinks " + std::to_string(p.n_sinks) + " must be within [0, --kv-budget " +
                std::to_string(p.budget) + ")");
  return std::make_unique<SinksSelection>(p.n_sinks);
}

}  // namespace ckv::press
