#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"
#include "util/top_logits.h"

namespace ckv {

bool finite_logits(const float* logits, int n) {
  for (int i = 0; i < n; ++i)
    if (!std::isfinite(logits[i])) return false;
  return true;
}

int Sampler::argmax(const float* logits, int n) {
  // Lowest id wins ties, as torch.argmax does.
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

int Sampler::candidates(int n) const {
  if (p_.penalised()) return 0;
  if (p_.temperature <= 0.0f) return 1;
  return (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : 0;
}

// Makes room for id in the penalty tables (they grow to the largest id
// seen) and lists it the first time; false for a negative id.
bool Sampler::track(int id) {
  if (id < 0) return false;
  if (static_cast<size_t>(id) >= generated_.size()) generated_.resize(id + 1, 0), in_prompt_.resize(id + 1, 0);
  if (generated_[id] == 0 && !in_prompt_[id]) seen_ids_.push_back(id);
  return true;
}

void Sampler::set_prompt(std::span<const int> ids) {
  if (p_.repetition_penalty == 1.0f) return;  // only it reads the prompt
  for (int id : ids)
    if (track(id)) in_prompt_[id] = 1;
}

const float* Sampler::penalise(const float* logits, int n) {
  if (!p_.penalised()) return logits;
  penalised_.assign(logits, logits + n);
  for (int id : seen_ids_) {
    if (id >= n) continue;
    float& x = penalised_[id];
    const int c = generated_[id];
    if (p_.repetition_penalty != 1.0f) x = x > 0 ? x / p_.repetition_penalty : x * p_.repetition_penalty;
    if (c > 0) x -= static_cast<float>(c) * p_.frequency_penalty + p_.presence_penalty;
  }
  for (auto [id, bias] : p_.logit_bias)
    if (id >= 0 && id < n) penalised_[id] += bias;
  return penalised_.data();
}

int Sampler::sample(const float* raw, int n) {
  const int t = draw(penalise(raw, n), n);
  if (p_.penalised() && track(t)) ++generated_[t];
  return t;
}

int Sampler::draw(const float* logits, int n) {
  if (p_.temperature <= 0.0f) return argmax(logits, n);
  if ((p_.top_k <= 0 || p_.top_k >= n) && p_.top_p >= 1.0f) {
    // The whole vocabulary (OpenAI's defaults): no sort, one pass to draw.
    float mx = logits[0];
    for (int i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
    prob_.resize(n);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += (prob_[i] = std::exp((static_cast<double>(logits[i]) - mx) / p_.temperature));
    double u = std::uniform_real_distribution<double>(0.0, sum)(rng_);
    int last = 0;  // rounding at the end: the last id that can be drawn
    for (int i = 0; i < n; ++i) {
      if (prob_[i] > 0) last = i;
      if ((u -= prob_[i]) < 0) return i;
    }
    return last;
  }
  const int k = (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : n;
  vals_.resize(k), ids_.resize(k);
  top_logits_row(logits, n, k, vals_.data(), ids_.data(), scratch_);
  return draw_top(vals_.data(), ids_.data(), k);
}

int Sampler::sample_top(const float* vals, const int32_t* ids, int n) {
  if (p_.penalised()) throw Error("Sampler::sample_top: penalties need the whole row (candidates() is 0)");
  return draw_top(vals, ids, n);
}

int Sampler::draw_top(const float* vals, const int32_t* ids, int n) {
  if (p_.temperature <= 0.0f) return ids[0];
  const int k = (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : n;
  std::vector<double> prob(k);
  double mx = vals[0], sum = 0;
  for (int i = 0; i < k; ++i) sum += (prob[i] = std::exp((vals[i] - mx) / p_.temperature));
  for (auto& p : prob) p /= sum;
  int keep = k;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    for (int i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    prob.resize(keep);
  }
  std::discrete_distribution<int> dist(prob.begin(), prob.end());
  return ids[dist(rng_)];
}

}  // namespace ckv
