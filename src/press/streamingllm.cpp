// StreamingLLM (Xiao et al., "Efficient Streaming Language Models with
// Attention Sinks", arXiv 2309.17453), as a CompressKV baseline (arXiv
// 2508.02401; DESIGN.md 3): keep the first n_sinks positions (attention
// sinks) plus the most recent B - n_sinks. Unlike the CompressKV reference
// code (first B - w and last w), the sinks really are n_sinks tokens.
#include <string>

#include "press/scoring.h"
#include "util/error.h"

namespace ckv::press {

namespace {

class StreamingLLMPress : public Press {
 public:
  StreamingLLMPress(int budget, int n_sinks) : B_(budget), sinks_(n_sinks) {}
  std::string name() const override { return "streamingllm"; }
  KeptPositions select(const LayerView& lv) override {
    return KeptPositions(lv.n_kv_heads, keep(lv.T));
  }
  int layer_budget(int) const override { return B_; }

 private:
  std::vector<int32_t> keep(int T) const {
    if (T <= B_) return all_positions(T);
    std::vector<int32_t> v;
    v.reserve(B_);
    for (int j = 0; j < sinks_; ++j) v.push_back(j);
    for (int j = T - (B_ - sinks_); j < T; ++j) v.push_back(j);  // T > B_, so no overlap
    return v;
  }
  int B_, sinks_;
};

}  // namespace

std::unique_ptr<Press> make_streamingllm(const PressParams& p, const PressShape& s, const Profile*) {
  check_shape(s);
  check_budget_window(p);
  if (p.n_sinks < 0 || p.n_sinks >= p.budget)
    throw Error("--kv-sinks " + std::to_string(p.n_sinks) + " must be within [0, --kv-budget " +
                std::to_string(p.budget) + ")");
  return std::make_unique<StreamingLLMPress>(p.budget, p.n_sinks);
}

}  // namespace ckv::press
