#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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

int Sampler::sample(const float* logits, int n) {
  if (p_.temperature <= 0.0f) return argmax(logits, n);
  std::vector<int> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  int k = (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : n;
  auto by_logit = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), by_logit);
  ids.resize(k);
  std::vector<double> prob(k);
  double mx = logits[ids[0]], sum = 0;
  for (int i = 0; i < k; ++i) sum += (prob[i] = std::exp((logits[ids[i]] - mx) / p_.temperature));
  for (auto& p : prob) p /= sum;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    int keep = k;
    for (int i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    prob.resize(keep);
    ids.resize(keep);
  }
  std::discrete_distribution<int> dist(prob.begin(), prob.end());
  return ids[dist(rng_)];
}

}  // namespace ckv
