// Scoring of attention heads on needle probes (DESIGN.md 2.4 steps 6-7):
// the semantic retrieval score of CompressKV and, beside it, the traditional
// retrieval score of Wu et al. (arXiv 2404.15574).
#pragma once
#include <cstdint>
#include <vector>

namespace ckv {

// One probe's sums. Feed it the engine's decode-attention probe output for
// each layer of a step (layer()), then the token that step generated
// (token()); repeat per step.
class ProbeHeadSums {
 public:
  // prompt: the probe's tokens; [a, b): the answer span in them.
  ProbeHeadSums(int n_layers, int n_heads, const std::vector<int>& prompt, int a, int b);
  // mass[n_heads]: each head's attention probability summed over [a, b);
  // argmax[n_heads]: the cache row (= prompt position) of its largest one.
  void layer(int l, const float* mass, const int32_t* argmax);
  // Step 6: when `id` equals a token inside [a, b), every head adds its mass
  // (semantic) and, when its argmax row lies in [a, b) and holds `id`,
  // 1/(b - a) (traditional). Then the step's buffer is cleared.
  void token(int id);

  int n_layers() const { return L_; }
  int n_heads() const { return H_; }
  const std::vector<double>& semantic() const { return sem_; }   // [L * H]
  const std::vector<double>& retrieval() const { return ret_; }  // [L * H]
  int steps_in_span() const { return steps_in_span_; }

 private:
  int L_, H_, a_, b_;
  const std::vector<int>& prompt_;
  std::vector<float> mass_;      // [L * H] this step
  std::vector<int32_t> argmax_;  // [L * H] this step
  std::vector<double> sem_, ret_;
  int steps_in_span_ = 0;
};

// Step 7 over probes: a head's score is the mean of its sums over the counted
// probes; heads are ranked within each layer.
class HeadScores {
 public:
  HeadScores(int n_layers, int n_heads);
  void add(const ProbeHeadSums& p);  // one counted probe
  int counted() const { return n_; }
  std::vector<std::vector<double>> semantic() const;   // [L][H] means
  std::vector<std::vector<double>> retrieval() const;  // [L][H] means

 private:
  int L_, H_, n_ = 0;
  std::vector<double> sem_, ret_;
};

// Head indices by score, best first; ties: lower head index first.
std::vector<int> rank_heads(const std::vector<double>& score);

}  // namespace ckv
