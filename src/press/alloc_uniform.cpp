// Uniform allocation: every layer and KV head keeps B tokens (SnapKV,
// StreamingLLM; DESIGN.md 3).
#include "press/scoring.h"

namespace ckv::press {

namespace {

class UniformAllocation : public Allocation {
 public:
  explicit UniformAllocation(int B) : B_(B) {}
  int layer_budget(int) const override { return B_; }

 private:
  int B_;
};

}  // namespace

std::unique_ptr<Allocation> make_alloc_uniform(const PressParams& p, const PressShape&, const Profile*) {
  return std::make_unique<UniformAllocation>(p.budget);
}

}  // namespace ckv::press
