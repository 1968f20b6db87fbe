// The sampler (src/engine/sampler.cpp): greedy at temperature 0, top-k, then
// temperature, then top-p, from a seeded generator. Frequencies are compared
// with the exact distribution over many draws (tolerances of ~5 standard
// deviations, so the tests do not flake; the seeds make them repeatable).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "engine/sampler.h"

using ckv::Sampler;
using ckv::SamplerParams;

namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f, -1.0f};  // ids 1 and 4 tie for the top

SamplerParams params(float temp, int top_k, float top_p, uint64_t seed = 1) {
  SamplerParams p;
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  return p;
}

std::vector<int> draws(const SamplerParams& p, int n, const std::vector<float>& logits = kLogits) {
  Sampler s(p);
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(s.sample(logits.data(), static_cast<int>(logits.size())));
  return out;
}

// softmax(logits / temp) restricted to `allowed`, renormalised.
std::vector<double> expected(float temp, const std::vector<int>& allowed) {
  std::vector<double> p(kLogits.size(), 0.0);
  double sum = 0;
  for (int id : allowed) sum += (p[id] = std::exp(kLogits[id] / temp));
  for (double& x : p) x /= sum;
  return p;
}

void expect_frequencies(const std::vector<int>& got, const std::vector<double>& want) {
  const double n = static_cast<double>(got.size());
  std::vector<double> count(want.size(), 0.0);
  for (int id : got) count.at(id) += 1;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) {
      EXPECT_EQ(count[i], 0) << "id " << i << " must never be drawn";
      continue;
    }
    const double sd = std::sqrt(n * want[i] * (1 - want[i]));
    EXPECT_NEAR(count[i], n * want[i], 5 * sd + 1) << "id " << i;
  }
}

}  // namespace

TEST(Sampler, GreedyAtTemperatureZeroTakesTheLowestTopId) {
  for (int id : draws(params(0.0f, 40, 0.95f), 50)) EXPECT_EQ(id, 1);
  EXPECT_EQ(Sampler::argmax(kLogits.data(), 6), 1);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  for (int id : draws(params(5.0f, 1, 1.0f), 200)) EXPECT_EQ(id, 1);
}

TEST(Sampler, FullDistributionAtTemperatureOne) {
  expect_frequencies(draws(params(1.0f, 0, 1.0f), 20000), expected(1.0f, {0, 1, 2, 3, 4, 5}));
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  expect_frequencies(draws(params(0.5f, 0, 1.0f, 7), 20000), expected(0.5f, {0, 1, 2, 3, 4, 5}));
  expect_frequencies(draws(params(3.0f, 0, 1.0f, 8), 20000), expected(3.0f, {0, 1, 2, 3, 4, 5}));
}

TEST(Sampler, TopKKeepsTheKBest) {
  // The 3 best: ids 1 and 4 (3.0), then 2 (2.0).
  expect_frequencies(draws(params(1.0f, 3, 1.0f, 3), 20000), expected(1.0f, {1, 4, 2}));
  // k larger than the vocabulary is everything.
  expect_frequencies(draws(params(1.0f, 100, 1.0f, 4), 20000), expected(1.0f, {0, 1, 2, 3, 4, 5}));
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // At temperature 1: p(1) = p(4) ~ 0.384, p(2) ~ 0.141, the rest ~ 0.091.
  // top_p 0.5: the two best (0.768 >= 0.5); top_p 0.8: three (0.909).
  expect_frequencies(draws(params(1.0f, 0, 0.5f, 5), 20000), expected(1.0f, {1, 4}));
  expect_frequencies(draws(params(1.0f, 0, 0.8f, 6), 20000), expected(1.0f, {1, 4, 2}));
  // A tiny top_p keeps only the best.
  for (int id : draws(params(1.0f, 0, 1e-6f, 9), 200)) EXPECT_EQ(id, 1);
}

TEST(Sampler, TopKThenTopP) {
  // top-k 3 first ({1, 4, 2}, renormalised: 0.42, 0.42, 0.16), then top-p 0.7 keeps {1, 4}.
  expect_frequencies(draws(params(1.0f, 3, 0.7f, 10), 20000), expected(1.0f, {1, 4}));
}

TEST(Sampler, SeedsRepeatAndDiffer) {
  const auto a = draws(params(1.0f, 0, 1.0f, 42), 500);
  EXPECT_EQ(a, draws(params(1.0f, 0, 1.0f, 42), 500));
  EXPECT_NE(a, draws(params(1.0f, 0, 1.0f, 43), 500));
}

// Sampling from a row's top candidates (what a decode step sends back with
// DecodeStep::top) draws exactly what sampling the whole row draws, for every
// setting whose candidates() is not 0; the candidates come from a plain sort.
TEST(Sampler, TopCandidatesDrawWhatTheWholeRowDraws) {
  std::vector<float> row(500);
  for (size_t i = 0; i < row.size(); ++i) row[i] = static_cast<float>((i * 7919) % 61) * 0.1f;  // ties
  std::vector<int32_t> order(row.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  for (SamplerParams p : {params(0, 0, 1), params(0.7f, 1, 1), params(0.8f, 40, 0.95f), params(1.5f, 64, 1)}) {
    Sampler whole(p), top(p);
    const int n = whole.candidates(static_cast<int>(row.size()));
    ASSERT_GT(n, 0);
    std::vector<float> vals(n);
    std::vector<int32_t> ids(order.begin(), order.begin() + n);
    for (int i = 0; i < n; ++i) vals[i] = row[ids[i]];
    for (int d = 0; d < 300; ++d)
      ASSERT_EQ(top.sample_top(vals.data(), ids.data(), n), whole.sample(row.data(), static_cast<int>(row.size())))
          << "draw " << d << " temp " << p.temperature << " top_k " << p.top_k;
  }
  EXPECT_EQ(Sampler(params(0.8f, 0, 0.9f)).candidates(500), 0) << "top-p alone needs the whole row";
}

// The penalties re-derived from their definitions: each step's token is the
// draw an unpenalised sampler with the same seed makes from the row
// penalised by hand (repetition over the prompt and the tokens so far: a
// positive logit divided, a negative one multiplied; then count * frequency
// + presence off each generated token), greedy and sampled.
TEST(Sampler, PenaltiesAreTheirDefinitions) {
  constexpr int V = 40;
  const std::vector<int> prompt = {3, 3, 7, 11, 39};
  struct Case {
    float frequency, presence, repetition, temp;
    int top_k;
  };
  std::mt19937 g(3);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (const Case c : {Case{0.8f, 0, 1, 0, 0}, Case{0, 1.5f, 1, 0, 0}, Case{0, 0, 1.7f, 0, 0},
                       Case{-0.5f, 0.3f, 0.6f, 0, 0}, Case{0.4f, 0.2f, 1.3f, 1.0f, 0}, Case{0.4f, 0.2f, 1.3f, 0.8f, 8}}) {
    SamplerParams p = params(c.temp, c.top_k, c.temp > 0 ? 0.9f : 1.0f, 11);
    const SamplerParams plain = p;
    p.frequency_penalty = c.frequency, p.presence_penalty = c.presence, p.repetition_penalty = c.repetition;
    Sampler s(p), ref(plain);
    s.set_prompt(prompt);
    EXPECT_EQ(s.candidates(V), 0) << "penalties need the whole row";
    std::vector<int> count(V, 0);
    std::vector<bool> in_prompt(V, false);
    for (int id : prompt) in_prompt[id] = true;
    std::set<int> distinct;
    for (int step = 0; step < 80; ++step) {
      std::vector<float> row(V);
      for (int i = 0; i < V; ++i) row[i] = noise(g) + (i == 3 || i == 5 ? 4.0f : 0.0f);  // two favourites
      std::vector<float> want = row;
      for (int i = 0; i < V; ++i) {
        if ((in_prompt[i] || count[i] > 0) && c.repetition != 1.0f)
          want[i] = want[i] > 0 ? want[i] / c.repetition : want[i] * c.repetition;
        if (count[i] > 0) want[i] -= static_cast<float>(count[i]) * c.frequency + c.presence;
      }
      const int t = s.sample(row.data(), V);
      ASSERT_EQ(t, ref.sample(want.data(), V)) << "step " << step << " frequency " << c.frequency << " presence "
                                               << c.presence << " repetition " << c.repetition;
      ++count[t];
      distinct.insert(t);
    }
    // Positive penalties push greedy off the two favourites; a negative one keeps to them.
    if (c.temp == 0 && c.frequency >= 0) {
      EXPECT_GT(distinct.size(), 2u) << "frequency " << c.frequency;
    }
  }
  std::vector<float> vals = {1.0f};
  std::vector<int32_t> ids = {0};
  SamplerParams p = params(0, 0, 1);
  p.presence_penalty = 1;
  EXPECT_THROW(Sampler(p).sample_top(vals.data(), ids.data(), 1), std::exception);
}

// logit_bias adds to its tokens' logits at every step, after the penalties:
// +100 makes a token greedy's pick, -100 bans the top one; sampled draws
// equal an unbiased sampler's over the biased row.
TEST(Sampler, LogitBiasIsAddedToItsTokens) {
  SamplerParams p = params(0, 0, 1);
  p.logit_bias = {{5, 100.0f}};
  for (int id : draws(p, 20)) EXPECT_EQ(id, 5);
  p.logit_bias = {{1, -100.0f}, {4, -100.0f}};
  for (int id : draws(p, 20)) EXPECT_EQ(id, 2) << "ids 1 and 4 banned: 2 is the best left";
  p = params(1.0f, 0, 1.0f, 21);
  p.logit_bias = {{0, 2.5f}, {3, -1.0f}, {99, 5.0f}};  // an id past the row is left alone
  p.frequency_penalty = 0.5f;
  Sampler s(p), ref(params(1.0f, 0, 1.0f, 21));
  std::vector<int> count(kLogits.size(), 0);
  for (int d = 0; d < 200; ++d) {
    std::vector<float> want = kLogits;
    for (size_t i = 0; i < want.size(); ++i) want[i] -= count[i] * 0.5f + 0.0f;
    want[0] += 2.5f, want[3] -= 1.0f;
    const int t = s.sample(kLogits.data(), static_cast<int>(kLogits.size()));
    ASSERT_EQ(t, ref.sample(want.data(), static_cast<int>(want.size()))) << "draw " << d;
    ++count[t];
  }
}
