// Helpers of the tensor-parallel tests (test_tp.cpp on the CPU,
// test_cuda_tp.cpp on GPUs): inputs, a session's logits, a profile whose
// retrieval heads lie on every rank.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/session.h"
#include "profile/profile.h"

namespace ckv::test {

// n token ids in [0, vocab) from a seeded LCG.
inline std::vector<int> pseudo_tokens(int n, int vocab, uint32_t seed) {
  std::vector<int> t(n);
  for (int& x : t) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<int>((seed >> 8) % vocab);
  }
  return t;
}

// Every position's logits of a prompt, then `gen` decoded tokens' logits;
// the kept positions of the prompt's read into *kept when given.
inline std::vector<float> session_logits(const Model& m, const SessionOptions& so, const std::vector<int>& prompt,
                                         int gen, std::vector<KeptPositions>* kept = nullptr) {
  const int V = m.config.vocab_size;
  Session s(m, so);
  std::vector<float> all, last(V);
  s.prefill(prompt, last.data(), [&](int64_t, const float* lg) { all.insert(all.end(), lg, lg + V); });
  if (kept) *kept = s.kept();
  for (int i = 0; i < gen; ++i) {
    s.decode((i * 37) % V, last.data());
    all.insert(all.end(), last.begin(), last.end());
  }
  return all;
}

// A profile of m's shape: per layer a permutation of the heads (heads of
// every rank among the first few), and the given layer scores.
inline Profile spread_profile(const ModelConfig& c, std::vector<double> layer_scores) {
  Profile p;
  p.arch = c.arch, p.n_layers = c.n_layers, p.n_heads = c.n_heads, p.n_kv_heads = c.n_kv_heads;
  p.head_dim = c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<int> r(c.n_heads);
    for (int h = 0; h < c.n_heads; ++h) r[h] = (h * 5 + l * 3) % c.n_heads;  // a permutation when 5 and H are coprime
    p.srh_ranking.push_back(r);
  }
  p.layer_scores = std::move(layer_scores);
  return p;
}

}  // namespace ckv::test
