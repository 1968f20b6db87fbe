#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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
  if (p_.temperature <= 0.0f) return 1;
  return (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : 0;
}

int Sampler::sample(const float* logits, int n) {
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
  const int k = candidates(n) > 0 ? candidates(n) : n;
  vals_.resize(k), ids_.resize(k);
  top_logits_row(logits, n, k, vals_.data(), ids_.data(), scratch_);
  return sample_top(vals_.data(), ids_.data(), k);
}

int Sampler::sample_top(const float* vals, const int32_t* ids, int n) {
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
