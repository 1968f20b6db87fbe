// Pyramid allocation (PyramidKV, Cai et al., "PyramidKV: Dynamic KV Cache
// Compression based on Pyramidal Information Funneling", arXiv 2406.02069; a
// CompressKV baseline, DESIGN.md 3): layer budgets shrinking linearly with
// depth (pyramid_budgets, budgets.cpp). They depend on the prompt length, so
// they are set in begin().
#include <string>

#include "press/budgets.h"
#include "press/scoring.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class PyramidAllocation : public Allocation {
 public:
  PyramidAllocation(const PressParams& p, int n_layers) : p_(p), budgets_(n_layers, p.budget) {}
  void begin(int n_layers, int T) override { budgets_ = pyramid_budgets(p_.budget, T, n_layers, p_.window, p_.beta); }
  int layer_budget(int layer) const override { return budgets_.at(layer); }

 private:
  PressParams p_;
  std::vector<int> budgets_;  // [n_layers], window included, >= window
};

}  // namespace

std::unique_ptr<Allocation> make_alloc_pyramid(const PressParams& p, const PressShape& s, const Profile*) {
  if (p.beta < 1) throw Error("--kv-beta " + std::to_string(p.beta) + " must be at least 1");
  return std::make_unique<PyramidAllocation>(p, s.n_layers);
}

}  // namespace ckv::press
