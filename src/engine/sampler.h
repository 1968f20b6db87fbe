// Next-token sampling: greedy at temperature 0, else top-k, temperature,
// top-p (nucleus) in that order, from a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace ckv {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;       // 0 = off
  float top_p = 0.95f;  // 1 = off
  uint64_t seed = 0;
};

// True when every logit is finite. Sample only then: the sort of sample()
// misorders NaN, so a broken model's logits must be refused first.
bool finite_logits(const float* logits, int n_vocab);

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}
  int sample(const float* logits, int n_vocab);
  static int argmax(const float* logits, int n_vocab);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
};

}  // namespace ckv
