// Budget allocators (src/press/budgets.cpp) against the golden figures from
// the authors' and PyramidKV's own code, and DESIGN.md 2.3 / 3 invariants.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "press/budgets.h"
#include "test_util.h"
#include "util/error.h"

using namespace ckv;

static int sum(const std::vector<int>& v) { return std::accumulate(v.begin(), v.end(), 0); }

TEST(Budgets, ErrorAwareGolden) {
  CKV_REQUIRE_SHARED();
  auto g = test::read_json(test::shared_dir() + "/golden/compresskv/layer_budgets.json");
  ASSERT_FALSE(g["cases"].empty());
  int n = 0;
  for (const auto& c : g["cases"]) {
    auto e = c["layer_score"].get<std::vector<double>>();
    int B = c["average_budget"], m = c["min"], M = c["max"];
    auto want = c["budgets"].get<std::vector<int>>();
    auto got = error_aware_budgets(e, B, m, M);
    EXPECT_EQ(got, want) << "case " << n << ": L=" << e.size() << " B=" << B;
    EXPECT_EQ(sum(got), static_cast<int>(e.size()) * B);
    // Default M is 3B.
    EXPECT_EQ(error_aware_budgets(e, B, m), want);
    ++n;
  }
  EXPECT_EQ(n, 15);
}

TEST(Budgets, ErrorAwareAllWeightOnOneLayer) {
  const int L = 10, B = 100;
  std::vector<double> e(L, 0.0);
  e[3] = 1.0;
  auto b = error_aware_budgets(e, B);
  EXPECT_EQ(b[3], 3 * B);  // clipped at M = 3B
  EXPECT_EQ(sum(b), L * B);
  // The rest (1000 - 300 = 700 over 9 layers at 32 first) is spread by the
  // cycling: every other layer gets 77 or 78, lower layers first on ties.
  for (int l = 0; l < L; ++l) {
    if (l == 3) continue;
    EXPECT_GE(b[l], 77);
    EXPECT_LE(b[l], 78);
    EXPECT_LE(b[l], 3 * B);
  }
  EXPECT_EQ(b[0], 78);  // 700 - 9*32 = 412 = 9*45 + 7: the first 7 (by index) get one more
  EXPECT_EQ(b[9], 77);
}

TEST(Budgets, ErrorAwareEveryLayerAtMinimum) {
  const int L = 8;
  std::vector<double> e(L, 1.0 / L);
  auto b = error_aware_budgets(e, 32);
  EXPECT_EQ(b, std::vector<int>(L, 32));
  // Tiny scores on most layers: those sit at the minimum.
  std::vector<double> e2(L, 0.0);
  e2[0] = 0.5;
  e2[1] = 0.5;
  auto b2 = error_aware_budgets(e2, 40);
  EXPECT_EQ(sum(b2), L * 40);
  for (int l = 2; l < L; ++l) EXPECT_EQ(b2[l], 32);
  EXPECT_EQ(b2[0], 64);
  EXPECT_EQ(b2[1], 64);
}

TEST(Budgets, ErrorAwareSumsAlwaysLB) {
  std::mt19937 rng(7);
  for (int it = 0; it < 300; ++it) {
    int L = 1 + static_cast<int>(rng() % 40);
    int B = 32 + static_cast<int>(rng() % 500);
    std::vector<double> e(L);
    std::gamma_distribution<double> gam(0.3 + (rng() % 10) * 0.2, 1.0);
    double s = 0;
    for (auto& x : e) s += (x = gam(rng));
    if (s == 0) continue;
    for (auto& x : e) x /= s;
    auto b = error_aware_budgets(e, B);
    ASSERT_EQ(sum(b), L * B) << "L=" << L << " B=" << B;
    for (int x : b) {
      EXPECT_GE(x, 32);
      EXPECT_LE(x, 3 * B);
    }
  }
}

TEST(Budgets, ErrorAwareRejectsBadInput) {
  EXPECT_THROW(error_aware_budgets({}, 64), Error);
  EXPECT_THROW(error_aware_budgets({0.5, 0.5}, 16), Error);  // below the minimum 32
  EXPECT_THROW(error_aware_budgets({1.5, -0.5}, 64), Error);
}

TEST(Budgets, PyramidGolden) {
  CKV_REQUIRE_SHARED();
  auto g = test::read_json(test::shared_dir() + "/golden/compresskv/pyramid_budgets.json");
  int w = g["window"], beta = g["beta"];
  int n = 0;
  for (const auto& c : g["cases"]) {
    int B = c["average_budget"], T = c["prompt_tokens"], L = c["layers"];
    auto want = c["budgets"].get<std::vector<int>>();
    EXPECT_EQ(pyramid_budgets(B, T, L, w, beta), want) << "B=" << B << " T=" << T << " L=" << L;
    ++n;
  }
  EXPECT_GE(n, 6);
}

TEST(Budgets, PyramidShape) {
  for (int L : {2, 5, 24, 32})
    for (int B : {16, 64, 128, 512}) {
      auto b = pyramid_budgets(B, 8000, L, 8, 20);
      ASSERT_EQ(static_cast<int>(b.size()), L);
      for (int l = 1; l < L; ++l) EXPECT_LE(b[l], b[l - 1]);
      for (int x : b) EXPECT_GE(x, 8);
      // Floor division rounds the step down, so deeper layers keep a little
      // more than the exact pyramid: at most L(L-1)/2 tokens over L*B.
      EXPECT_GE(sum(b), L * B);
      EXPECT_LE(sum(b), L * B + L * (L - 1) / 2);
    }
  EXPECT_EQ(pyramid_budgets(100, 1000, 1, 8, 20), std::vector<int>{100});
}

TEST(Budgets, AdaKVSumsAndFloors) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int it = 0; it < 100; ++it) {
    int G = 1 + static_cast<int>(rng() % 8), n = 20 + static_cast<int>(rng() % 300), w = 8;
    int B = w + 1 + static_cast<int>(rng() % (n - 1));  // B - w < n
    std::vector<std::vector<float>> s(G, std::vector<float>(n));
    for (int g = 0; g < G; ++g) {
      float skew = std::pow(4.0f, static_cast<float>(g));  // heads differ in concentration
      for (auto& x : s[g]) x = std::pow(u(rng), skew);
    }
    float alpha = (rng() % 5) * 0.25f;
    auto b = adakv_head_budgets(s, B, w, alpha);
    ASSERT_EQ(static_cast<int>(b.size()), G);
    EXPECT_EQ(sum(b), G * B) << "G=" << G << " n=" << n << " B=" << B << " alpha=" << alpha;
    for (int x : b) {
      EXPECT_GE(x, w);
      EXPECT_LE(x, n + w);  // never more than the prompt
    }
  }
}

TEST(Budgets, AdaKVSkewAndAlpha) {
  // Head 0 has a few huge scores, head 1 is flat: head 1 wins most pairs.
  const int n = 200, w = 8, B = 58;  // C = 50
  std::vector<std::vector<float>> s(2, std::vector<float>(n, 0.0f));
  for (int j = 0; j < n; ++j) s[1][j] = 0.5f + 0.001f * j;
  for (int j = 0; j < 10; ++j) s[0][j] = 10.0f;
  auto b = adakv_head_budgets(s, B, w, 0.2f);
  // Shares: head 0 gets 10, head 1 gets 90 of the 100 best pairs.
  // 10*0.8 + 10 = 18, 90*0.8 + 10 = 82.
  EXPECT_EQ(b, (std::vector<int>{18 + w, 82 + w}));
  // alpha = 1: uniform.
  EXPECT_EQ(adakv_head_budgets(s, B, w, 1.0f), (std::vector<int>{B, B}));
  // Prompt no longer than the budget: every head keeps all.
  std::vector<std::vector<float>> small(3, std::vector<float>(20, 1.0f));
  EXPECT_EQ(adakv_head_budgets(small, 64, w, 0.2f), (std::vector<int>{28, 28, 28}));
}

TEST(Budgets, AdaKVRoundingFixup) {
  // Three heads with shares 1, 1, 1 of C = 1 pair each... G*C = 3 pairs; ties
  // go to the lower head: scores equal everywhere -> head 0 takes all 3.
  std::vector<std::vector<float>> s(3, std::vector<float>(10, 1.0f));
  auto b = adakv_head_budgets(s, 9, 8, 0.5f);  // C = 1
  // exact: head0 = 3*0.5+0.5 = 2, heads 1,2 = 0.5 -> round half even 0, 0;
  // sum 2 < 3: largest remainder (0.5, 0.5) -> lower head 1.
  EXPECT_EQ(b, (std::vector<int>{10, 9, 8}));
}
