// Next-token sampling: penalties on tokens already seen, then greedy at
// temperature 0, else top-k, temperature, top-p (nucleus) in that order,
// from a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace ckv {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;       // 0 = off
  float top_p = 0.95f;  // 1 = off
  uint64_t seed = 0;
  // OpenAI's penalties over the tokens generated so far (0 = off): a token's
  // logit less count * frequency_penalty, less presence_penalty once it has
  // appeared at all.
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  // Hugging Face's and vLLM's repetition penalty over the prompt and the
  // generated tokens (1 = off): a seen token's positive logit divided by it,
  // a negative one multiplied.
  float repetition_penalty = 1.0f;
  // Added to these tokens' logits at every step (OpenAI's logit_bias; -100
  // bans a token in practice), after the penalties.
  std::vector<std::pair<int, float>> logit_bias;
  bool penalised() const {
    return frequency_penalty != 0.0f || presence_penalty != 0.0f || repetition_penalty != 1.0f || !logit_bias.empty();
  }
};

// True when every logit is finite. Sample only then: the sort of sample()
// misorders NaN, so a broken model's logits must be refused first.
bool finite_logits(const float* logits, int n_vocab);

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}
  // The prompt's tokens, which the repetition penalty counts as seen.
  void set_prompt(std::span<const int> ids);
  // Every token sample() returns counts as generated for the penalties.
  int sample(const float* logits, int n_vocab);
  static int argmax(const float* logits, int n_vocab);
  // How many of a row's top logits sampling reads: 1 when greedy, top_k when
  // it is set, 0 when it needs the whole row (no top-k, or penalties: they
  // can lift a token from outside the top).
  int candidates(int n_vocab) const;
  // The same draw as sample() from the row's top `n` logits (value
  // descending, lowest id first on ties: util/top_logits.h), n >= candidates();
  // only while candidates() > 0 (no penalties).
  int sample_top(const float* vals, const int32_t* ids, int n);

 private:
  const float* penalise(const float* logits, int n_vocab);
  int draw(const float* logits, int n_vocab);
  int draw_top(const float* vals, const int32_t* ids, int n);
  bool track(int id);

  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<float> vals_;
  std::vector<int32_t> ids_, scratch_;
  std::vector<double> prob_;  // [n_vocab] scratch of a whole-vocabulary draw
  // Penalties: per token id, times generated and whether in the prompt; the
  // ids seen (so a row is adjusted where it must be, not scanned); the row.
  std::vector<int32_t> generated_;
  std::vector<uint8_t> in_prompt_;
  std::vector<int> seen_ids_;
  std::vector<float> penalised_;
};

}  // namespace ckv
