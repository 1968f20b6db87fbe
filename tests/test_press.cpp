// Presses (src/press/): every scorer against a plain-loop re-derivation of
// DESIGN.md 2.1 written here (double precision, no code shared with
// scoring.cpp), and the invariants of each method (DESIGN.md 2.1, 3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "kernels/backend.h"
#include "press/budgets.h"
#include "press/press.h"
#include "press/scoring.h"
#include "profile/profile.h"
#include "test_util.h"
#include "util/error.h"

using namespace ckv;

namespace {

// ---- a layer of random post-RoPE Q/K ---------------------------------------

struct Layer {
  int T, H, G, hd;
  std::vector<float> q, k;  // [T][H][hd], [T][G][hd]
  LayerView view(int layer = 0, int n_layers = 1) const {
    static auto backend = make_cpu_backend();
    scratch.resize(size_t(H + 1) * T);
    LayerView lv;
    lv.layer = layer;
    lv.n_layers = n_layers;
    lv.T = T;
    lv.n_heads = H;
    lv.n_kv_heads = G;
    lv.head_dim = hd;
    lv.q = q.data();
    lv.q_rows = T;
    lv.k = k.data();
    lv.backend = backend.get();
    lv.scratch = scratch.data();
    return lv;
  }
  mutable std::vector<float> scratch;  // the press's score rows
};

// kv_scale[g] multiplies KV head g's keys: large = peaky attention, small = flat.
Layer random_layer(int T, int H, int G, int hd, unsigned seed, std::vector<float> kv_scale = {}) {
  Layer L{T, H, G, hd, std::vector<float>(static_cast<size_t>(T) * H * hd),
          std::vector<float>(static_cast<size_t>(T) * G * hd), {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& x : L.q) x = 1.5f * nd(rng);
  for (auto& x : L.k) x = nd(rng);
  if (!kv_scale.empty())
    for (int t = 0; t < T; ++t)
      for (int g = 0; g < G; ++g)
        for (int d = 0; d < hd; ++d) L.k[(static_cast<size_t>(t) * G + g) * hd + d] *= kv_scale[g];
  return L;
}

// ---- the naive re-derivation of DESIGN.md 2.1 steps 3-8 --------------------

// Steps 3-5 for query head h: [T - w] in double.
std::vector<double> naive_mass(const Layer& L, int h, int w) {
  const int n = L.T - w, r = L.H / L.G, kvh = h / r;
  std::vector<double> s(n, 0.0);
  for (int i = 0; i < w; ++i) {
    const int pos = L.T - w + i;
    std::vector<double> logit(pos + 1);
    for (int j = 0; j <= pos; ++j) {  // causal: j <= T-w+i
      double dot = 0;
      for (int d = 0; d < L.hd; ++d)
        dot += static_cast<double>(L.q[(static_cast<size_t>(pos) * L.H + h) * L.hd + d]) *
               static_cast<double>(L.k[(static_cast<size_t>(j) * L.G + kvh) * L.hd + d]);
      logit[j] = dot / std::sqrt(static_cast<double>(L.hd));
    }
    double mx = *std::max_element(logit.begin(), logit.end());
    double z = 0;
    for (double x : logit) z += std::exp(x - mx);
    for (int j = 0; j < n; ++j) s[j] += std::exp(logit[j] - mx) / z;
  }
  return s;
}

// Step 6: avg_pool1d(k, stride 1, padding k/2, count_include_pad) or max_pool1d.
std::vector<double> naive_pool(const std::vector<double>& s, int k, Pool pool) {
  const int n = static_cast<int>(s.size());
  std::vector<double> p(n);
  for (int j = 0; j < n; ++j) {
    double acc = pool == Pool::Avg ? 0.0 : -std::numeric_limits<double>::infinity();
    for (int t = j - k / 2; t <= j + k / 2; ++t) {
      double v = (t >= 0 && t < n) ? s[t] : (pool == Pool::Avg ? 0.0 : -std::numeric_limits<double>::infinity());
      acc = pool == Pool::Avg ? acc + v : std::max(acc, v);
    }
    p[j] = pool == Pool::Avg ? acc / k : acc;
  }
  return p;
}

// Step 7: mean over the heads.
std::vector<double> naive_score(const Layer& L, const std::vector<int>& heads, int w, int k, Pool pool) {
  std::vector<double> sc(L.T - w, 0.0);
  for (int h : heads) {
    auto p = naive_pool(naive_mass(L, h, w), k, pool);
    for (size_t j = 0; j < sc.size(); ++j) sc[j] += p[j] / static_cast<double>(heads.size());
  }
  return sc;
}

std::vector<double> naive_group_score(const Layer& L, int g, int w, int k, Pool pool) {
  const int r = L.H / L.G;
  std::vector<int> heads;
  for (int h = r * g; h < r * g + r; ++h) heads.push_back(h);
  return naive_score(L, heads, w, k, pool);
}

// Step 8: the B - w best (ties: lower position), plus the window; all if T <= B.
std::vector<int32_t> naive_select(const std::vector<double>& sc, int T, int w, int B) {
  std::vector<int32_t> kept;
  if (T <= B) {
    for (int j = 0; j < T; ++j) kept.push_back(j);
    return kept;
  }
  std::vector<int32_t> idx(sc.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return sc[a] > sc[b]; });
  kept.assign(idx.begin(), idx.begin() + std::max(0, B - w));
  for (int j = T - w; j < T; ++j) kept.push_back(j);
  std::sort(kept.begin(), kept.end());
  return kept;
}

// Kept sets equal, except positions whose score is within 1e-5 relative of
// the boundary score may be exchanged (float vs double near-ties).
void expect_same_kept(const std::vector<int32_t>& got, const std::vector<double>& sc, int T, int w, int B,
                      const std::string& what) {
  auto want = naive_select(sc, T, w, B);
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_TRUE(std::is_sorted(got.begin(), got.end())) << what;
  ASSERT_TRUE(std::adjacent_find(got.begin(), got.end()) == got.end()) << what;
  if (got == want) return;
  double boundary = std::numeric_limits<double>::infinity();
  for (int j : want)
    if (j < T - w) boundary = std::min(boundary, sc[j]);
  std::vector<int32_t> diff;
  std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
  for (int j : diff) {
    ASSERT_LT(j, T - w) << what << ": window position " << j << " differs";
    EXPECT_NEAR(sc[j], boundary, 1e-5 * boundary + 1e-12) << what << ": position " << j << " is not a boundary tie";
  }
}

Profile make_profile(int L, int H, int G, int hd, unsigned seed, bool with_layer_scores) {
  Profile p;
  p.arch = "llama";
  p.n_layers = L;
  p.n_heads = H;
  p.n_kv_heads = G;
  p.head_dim = hd;
  std::mt19937 rng(seed);
  for (int l = 0; l < L; ++l) {
    std::vector<int> row(H);
    std::iota(row.begin(), row.end(), 0);
    std::shuffle(row.begin(), row.end(), rng);
    p.srh_ranking.push_back(row);
  }
  if (with_layer_scores) {
    std::uniform_real_distribution<double> u(0.1, 1.0);
    double s = 0;
    for (int l = 0; l < L; ++l) s += p.layer_scores.emplace_back(u(rng));
    for (auto& x : p.layer_scores) x /= s;
  }
  return p;
}

PressParams params(int budget, int window = 8, int kernel = 5, Pool pool = Pool::Avg) {
  PressParams p;
  p.budget = budget;
  p.window = window;
  p.kernel = kernel;
  p.pool = pool;
  return p;
}

}  // namespace

// ---- the shared scorer -----------------------------------------------------

TEST(Scoring, MatchesNaiveDerivation) {
  struct Case {
    int T, H, G, hd, w, k;
    Pool pool;
  };
  for (Case c : {Case{97, 4, 2, 16, 8, 5, Pool::Avg}, Case{300, 9, 3, 64, 8, 5, Pool::Avg},
                 Case{300, 9, 3, 64, 8, 5, Pool::Max}, Case{64, 6, 6, 8, 3, 1, Pool::Avg},
                 Case{128, 8, 1, 32, 16, 7, Pool::Max}, Case{40, 2, 1, 4, 1, 3, Pool::Avg}}) {
    Layer L = random_layer(c.T, c.H, c.G, c.hd, 1000u + c.T + c.H);
    for (int h = 0; h < c.H; ++h) {
      auto got = press::mean_window_score(L.view(), {h}, c.w, c.k, c.pool);
      auto want = naive_score(L, {h}, c.w, c.k, c.pool);
      ASSERT_EQ(got.size(), want.size());
      for (size_t j = 0; j < got.size(); ++j)
        ASSERT_NEAR(got[j], want[j], 1e-5 * std::abs(want[j]) + 1e-9) << "T=" << c.T << " h=" << h << " j=" << j;
    }
    std::vector<int> heads = {c.H - 1, 0};
    auto got = press::mean_window_score(L.view(), heads, c.w, c.k, c.pool);
    auto want = naive_score(L, heads, c.w, c.k, c.pool);
    for (size_t j = 0; j < got.size(); ++j) ASSERT_NEAR(got[j], want[j], 1e-5 * std::abs(want[j]) + 1e-9);
  }
}

TEST(Scoring, PoolingByHand) {
  const float s[5] = {1, 2, 3, 4, 5};
  float out[5];
  press::pool1d(s, out, 5, 3, Pool::Avg);  // divisor always 3, zero padding
  const float avg[5] = {1.0f, 2.0f, 3.0f, 4.0f, 3.0f};
  for (int j = 0; j < 5; ++j) EXPECT_FLOAT_EQ(out[j], avg[j]);
  const float neg[5] = {-1, -5, -2, -7, -3};
  press::pool1d(neg, out, 5, 3, Pool::Max);  // padding never wins
  const float mx[5] = {-1, -1, -2, -2, -3};
  for (int j = 0; j < 5; ++j) EXPECT_FLOAT_EQ(out[j], mx[j]);
  press::pool1d(s, out, 5, 1, Pool::Avg);
  for (int j = 0; j < 5; ++j) EXPECT_FLOAT_EQ(out[j], s[j]);
}

TEST(Scoring, TopKTiesLowerPositionFirst) {
  std::vector<float> s = {1, 3, 3, 2, 3, 0};
  EXPECT_EQ(press::top_k_positions(s.data(), 6, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(press::top_k_positions(s.data(), 6, 4), (std::vector<int32_t>{1, 2, 3, 4}));
  std::vector<float> flat(10, 0.5f);
  EXPECT_EQ(press::top_k_positions(flat.data(), 10, 3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(press::top_plus_window(flat.data(), 12, 2, 5), (std::vector<int32_t>{0, 1, 2, 10, 11}));
}

// ---- each method against the naive derivation -----------------------------

TEST(Press, CompressKVMatchesNaive) {
  const int NL = 3, H = 9, G = 3, hd = 32, T = 400;
  for (bool layer_scores : {false, true})
    for (Pool pool : {Pool::Avg, Pool::Max}) {
      Profile prof = make_profile(NL, H, G, hd, 5, layer_scores);
      PressParams p = params(64, 8, 5, pool);
      auto press = make_press("compresskv", p, {NL, H, G, hd}, &prof);
      press->begin(NL, T);
      std::vector<int> want_budgets(NL, 64);
      if (layer_scores) want_budgets = error_aware_budgets(prof.layer_scores, 64);
      for (int l = 0; l < NL; ++l) {
        EXPECT_EQ(press->layer_budget(l), want_budgets[l]);
        Layer L = random_layer(T, H, G, hd, 77u + l);
        auto kept = press->select(L.view(l, NL));
        ASSERT_EQ(static_cast<int>(kept.size()), G);
        std::vector<int> heads(prof.srh_ranking[l].begin(), prof.srh_ranking[l].begin() + 4);
        auto sc = naive_score(L, heads, 8, 5, pool);
        for (int g = 0; g < G; ++g) EXPECT_EQ(kept[g], kept[0]) << "every KV head keeps the same positions";
        expect_same_kept(kept[0], sc, T, 8, want_budgets[l], "compresskv layer " + std::to_string(l));
      }
    }
}

TEST(Press, CompressKVUsesNsrhHeads) {
  const int H = 8, G = 2, hd = 16, T = 200;
  Profile prof = make_profile(1, H, G, hd, 9, false);
  for (int n_srh : {1, 2, 8}) {
    PressParams p = params(40);
    p.n_srh = n_srh;
    auto press = make_press("compresskv", p, {1, H, G, hd}, &prof);
    Layer L = random_layer(T, H, G, hd, 31);
    auto kept = press->select(L.view());
    std::vector<int> heads(prof.srh_ranking[0].begin(), prof.srh_ranking[0].begin() + n_srh);
    expect_same_kept(kept[0], naive_score(L, heads, 8, 5, Pool::Avg), T, 8, 40, "n_srh " + std::to_string(n_srh));
  }
}

TEST(Press, SnapKVPerKVHeadGroupMean) {
  const int H = 8, G = 2, hd = 16, T = 300, B = 50;
  auto press = make_press("snapkv", params(B), {1, H, G, hd}, nullptr);
  Layer L = random_layer(T, H, G, hd, 4242);
  auto kept = press->select(L.view());
  ASSERT_EQ(static_cast<int>(kept.size()), G);
  for (int g = 0; g < G; ++g)
    expect_same_kept(kept[g], naive_group_score(L, g, 8, 5, Pool::Avg), T, 8, B, "snapkv head " + std::to_string(g));
  EXPECT_NE(kept[0], kept[1]) << "KV heads choose their own positions";
  // The reference's reshape would pair heads (0, 2, 4, 6) with KV head 0; the
  // GQA-correct grouping is (0, 1, 2, 3): the scorer must agree with the latter.
  auto kv = press::kv_head_scores(L.view(), 8, 5, Pool::Avg);
  auto want = naive_score(L, {0, 1, 2, 3}, 8, 5, Pool::Avg);
  for (size_t j = 0; j < want.size(); ++j) ASSERT_NEAR(kv[0][j], want[j], 1e-5 * want[j] + 1e-9);
}

TEST(Press, PyramidKVBudgetsAndSelection) {
  const int NL = 4, H = 4, G = 2, hd = 16, T = 500, B = 64;
  auto press = make_press("pyramidkv", params(B), {NL, H, G, hd}, nullptr);
  press->begin(NL, T);
  auto want_b = pyramid_budgets(B, T, NL, 8, 20);
  for (int l = 0; l < NL; ++l) {
    EXPECT_EQ(press->layer_budget(l), want_b[l]);
    if (l > 0) {
      EXPECT_LE(press->layer_budget(l), press->layer_budget(l - 1)) << "pyramid shrinks with depth";
    }
    Layer L = random_layer(T, H, G, hd, 900u + l);
    auto kept = press->select(L.view(l, NL));
    for (int g = 0; g < G; ++g)
      expect_same_kept(kept[g], naive_group_score(L, g, 8, 5, Pool::Avg), T, 8, want_b[l],
                       "pyramidkv layer " + std::to_string(l) + " head " + std::to_string(g));
  }
  EXPECT_GT(press->layer_budget(0), press->layer_budget(NL - 1));
}

TEST(Press, AdaKVHeadBudgets) {
  const int H = 6, G = 3, hd = 16, T = 400, B = 48;
  auto press = make_press("adakv", params(B), {1, H, G, hd}, nullptr);
  // KV head 0: very peaky attention; head 2: nearly flat.
  Layer L = random_layer(T, H, G, hd, 5150, {4.0f, 1.0f, 0.05f});
  auto kept = press->select(L.view());
  ASSERT_EQ(static_cast<int>(kept.size()), G);
  size_t total = 0;
  std::set<size_t> sizes;
  std::vector<std::vector<float>> fscores;
  for (int g = 0; g < G; ++g) {
    total += kept[g].size();
    sizes.insert(kept[g].size());
    auto sc = naive_group_score(L, g, 8, 5, Pool::Avg);
    fscores.emplace_back(sc.begin(), sc.end());
    // Each head keeps exactly its top (size - w) positions plus the window.
    expect_same_kept(kept[g], sc, T, 8, static_cast<int>(kept[g].size()), "adakv head " + std::to_string(g));
  }
  EXPECT_EQ(total, static_cast<size_t>(G * B)) << "head lengths sum to the layer total";
  EXPECT_GT(sizes.size(), 1u) << "heads keep different counts on skewed inputs";
  auto hb = adakv_head_budgets(fscores, B, 8, 0.2f);
  for (int g = 0; g < G; ++g) EXPECT_EQ(static_cast<int>(kept[g].size()), hb[g]);
  for (int g = 0; g < G; ++g) EXPECT_GE(static_cast<int>(kept[g].size()), 8);
}

TEST(Press, StreamingLLMSinksAndRecent) {
  PressParams p = params(20);
  p.n_sinks = 4;
  auto press = make_press("streamingllm", p, {1, 2, 1, 4}, nullptr);
  Layer L = random_layer(100, 2, 1, 4, 1);
  auto kept = press->select(L.view());
  std::vector<int32_t> want = {0, 1, 2, 3};
  for (int j = 84; j < 100; ++j) want.push_back(j);
  EXPECT_EQ(kept[0], want);
  EXPECT_EQ(press->layer_budget(0), 20);
  p.n_sinks = 0;
  auto none = make_press("streamingllm", p, {1, 2, 1, 4}, nullptr)->select(L.view());
  EXPECT_EQ(none[0].front(), 80);
  EXPECT_EQ(none[0].size(), 20u);
}

// ---- invariants over every method ------------------------------------------

TEST(Press, WindowAlwaysKept) {
  const int H = 4, G = 2, hd = 8, T = 150;
  Profile prof = make_profile(1, H, G, hd, 2, false);
  Layer L = random_layer(T, H, G, hd, 3);
  for (std::string m : {"snapkv", "pyramidkv", "adakv", "compresskv"}) {
    auto press = make_press(m, params(24), {1, H, G, hd}, &prof);
    press->begin(1, T);
    auto kept = press->select(L.view());
    for (int g = 0; g < G; ++g) {
      EXPECT_LE(kept[g].size(), static_cast<size_t>(T));
      for (int j = T - 8; j < T; ++j)
        EXPECT_TRUE(std::binary_search(kept[g].begin(), kept[g].end(), j)) << m << " dropped window position " << j;
    }
  }
}

TEST(Press, BudgetAtLeastPromptKeepsEverything) {
  const int NL = 2, H = 4, G = 2, hd = 8;
  Profile prof = make_profile(NL, H, G, hd, 2, false);
  for (int T : {1, 5, 9, 63, 64})
    for (const std::string& m : press_names()) {
      auto press = make_press(m, params(64), {NL, H, G, hd}, &prof);
      press->begin(NL, T);
      Layer L = random_layer(T, H, G, hd, 10u + T);
      for (int l = 0; l < NL; ++l) {
        auto kept = press->select(L.view(l, NL));
        ASSERT_EQ(static_cast<int>(kept.size()), G);
        for (int g = 0; g < G; ++g)
          EXPECT_EQ(kept[g], press::all_positions(T)) << m << " T=" << T << " layer " << l;
      }
    }
}

TEST(Press, PromptJustOverBudget) {
  const int H = 4, G = 2, hd = 8, B = 32;
  Profile prof = make_profile(1, H, G, hd, 2, false);
  for (int T : {B + 1, B + 2}) {
    Layer L = random_layer(T, H, G, hd, 55u + T);
    for (std::string m : {"streamingllm", "snapkv", "adakv", "compresskv"}) {
      auto press = make_press(m, params(B), {1, H, G, hd}, &prof);
      press->begin(1, T);
      auto kept = press->select(L.view());
      size_t total = 0;
      for (auto& k : kept) {
        total += k.size();
        EXPECT_TRUE(std::is_sorted(k.begin(), k.end()));
        EXPECT_GE(k.front(), 0);
        EXPECT_LT(k.back(), T);
      }
      EXPECT_EQ(total, static_cast<size_t>(G * B)) << m << " T=" << T;
    }
  }
}

TEST(Press, FullKeepsEverything) {
  auto press = make_press("full", PressParams{}, {2, 4, 2, 8}, nullptr);
  press->begin(2, 1000);
  Layer L = random_layer(1000, 4, 2, 8, 1);
  auto kept = press->select(L.view());
  for (auto& k : kept) EXPECT_EQ(k, press::all_positions(1000));
  EXPECT_GE(press->layer_budget(1), 1000);
}

// A long prompt (T = 8k, 9 heads, w = 8) selects its budget; how fast is a
// benchmark's question, not a test's.
TEST(Press, SelectsAtLongPromptLength) {
  const int T = 8192, H = 9, G = 3, hd = 64;
  Layer L = random_layer(T, H, G, hd, 8);
  auto press = make_press("snapkv", params(256), {1, H, G, hd}, nullptr);
  auto kept = press->select(L.view());
  EXPECT_EQ(kept[0].size(), 256u);
}

// ---- settings validation ---------------------------------------------------

static std::string error_of(const std::string& m, const PressParams& p, const PressShape& s, const Profile* prof) {
  try {
    make_press(m, p, s, prof);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Press, Validation) {
  PressShape s{2, 4, 2, 8};
  Profile prof = make_profile(2, 4, 2, 8, 1, false);
  auto e = error_of("h2o", params(64), s, &prof);
  EXPECT_NE(e.find("h2o"), std::string::npos);
  for (const auto& n : press_names()) EXPECT_NE(e.find(n), std::string::npos) << e;
  e = error_of("snapkv", params(8, 8), s, nullptr);
  EXPECT_NE(e.find("--kv-budget"), std::string::npos) << e;
  EXPECT_NE(e.find("--kv-window"), std::string::npos) << e;
  EXPECT_NE(error_of("snapkv", params(64, 8, 4), s, nullptr).find("--kv-kernel"), std::string::npos);
  EXPECT_NE(error_of("adakv", params(64, 8, 0), s, nullptr).find("--kv-kernel"), std::string::npos);
  EXPECT_EQ(error_of("full", params(0), s, nullptr), "");  // full ignores the budget
  EXPECT_EQ(error_of("compresskv", params(64), s, nullptr),
            "--kv-method compresskv needs a model profile: pass --kv-profile FILE (made by `compresskv profile "
            "import` from the CompressKV authors' published head rankings and layer scores)");
  PressParams p = params(64);
  p.n_srh = 0;
  EXPECT_NE(error_of("compresskv", p, s, &prof).find("--kv-srh"), std::string::npos);
  p.n_srh = 5;
  EXPECT_NE(error_of("compresskv", p, s, &prof).find("--kv-srh"), std::string::npos);
  p.n_srh = 4;
  EXPECT_EQ(error_of("compresskv", p, s, &prof), "");
  Profile bad = prof;
  bad.srh_ranking.pop_back();
  EXPECT_NE(error_of("compresskv", p, s, &bad).find("srh.ranking"), std::string::npos);
  bad = prof;
  bad.srh_ranking[1][2] = 7;
  EXPECT_NE(error_of("compresskv", p, s, &bad).find("srh.ranking[1][2]"), std::string::npos);
  bad = prof;
  bad.srh_ranking[0][1] = bad.srh_ranking[0][0];
  EXPECT_NE(error_of("compresskv", p, s, &bad).find("srh.ranking[0][1]"), std::string::npos);
  PressParams sl = params(16);
  sl.n_sinks = 16;
  EXPECT_NE(error_of("streamingllm", sl, s, nullptr).find("--kv-sinks"), std::string::npos);
  Profile scored = make_profile(2, 4, 2, 8, 1, true);
  EXPECT_NE(error_of("compresskv", params(20), s, &scored).find("--kv-budget"), std::string::npos);
}

// ---- golden selection (the authors' compresskvCluster.update_kv) ------------

// The selection step alone (2.1 step 8 + 2.3 budgets) on the authors' own
// scores: top_plus_window over smollm2_long.scores.f32 must give their kept
// sets for every case, budgets included (ties at the boundary excepted).
TEST(Press, GoldenSelectionFromGoldenScores) {
  CKV_REQUIRE_SHARED();
  const std::string dir = test::shared_dir() + "/golden/compresskv/";
  auto g = test::read_json(dir + "smollm2_long.selection.json");
  auto scores = test::read_f32(dir + "smollm2_long.scores.f32");
  const int T = g["prompt_tokens"], w = g["window"];
  const int NL = g["scores_shape"][0], n = g["scores_shape"][1];
  ASSERT_EQ(n, T - w);
  ASSERT_EQ(scores.size(), static_cast<size_t>(NL) * n);
  int n_cases = 0;
  for (const auto& c : g["cases"]) {
    auto budgets = c["budgets"].get<std::vector<int>>();
    if (c.contains("layer_score")) {
      EXPECT_EQ(error_aware_budgets(c["layer_score"].get<std::vector<double>>(), c["average_budget"]), budgets);
    }
    for (int l = 0; l < NL; ++l) {
      const float* sc = scores.data() + static_cast<size_t>(l) * n;
      auto got = press::top_plus_window(sc, T, w, budgets[l]);
      auto want = c["kept"][l].get<std::vector<int32_t>>();
      ASSERT_EQ(got.size(), want.size()) << "case " << n_cases << " layer " << l;
      if (got == want) continue;
      // Exchanges allowed only among positions within 1e-6 relative of the last kept score.
      float last = std::numeric_limits<float>::infinity();
      for (int j : want)
        if (j < n) last = std::min(last, sc[j]);
      std::vector<int32_t> diff;
      std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
      for (int j : diff) EXPECT_NEAR(sc[j], last, 1e-6 * last) << "case " << n_cases << " layer " << l << " pos " << j;
    }
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 4);
}

// At a long prompt the window scores still select what a double-precision
// re-derivation selects (the softmax denominators are summed in double).
TEST(Scoring, LongPromptMatchesDoubleReference) {
  const int T = 40000, H = 2, G = 1, hd = 16, w = 8, B = 512;
  Layer L = random_layer(T, H, G, hd, 4242u);
  const std::vector<int> heads = {0, 1};
  auto got = press::mean_window_score(L.view(), heads, w, 5, Pool::Avg);
  auto want = naive_score(L, heads, w, 5, Pool::Avg);
  double worst = 0;
  for (int j = 0; j < T - w; ++j) worst = std::max(worst, std::fabs(got[j] - want[j]) / (std::fabs(want[j]) + 1e-12));
  EXPECT_LT(worst, 1e-4);
  expect_same_kept(press::top_plus_window(got.data(), T, w, B), want, T, w, B, "T=40000");
}

// ---- --kv-window-at user (LayerView::suffix) ----------------------------------

namespace {

// The first U positions of a layer: what the window at the user message sees.
Layer head_of(const Layer& L, int U) {
  Layer u{U, L.H, L.G, L.hd, std::vector<float>(L.q.begin(), L.q.begin() + static_cast<long>(U) * L.H * L.hd),
          std::vector<float>(L.k.begin(), L.k.begin() + static_cast<long>(U) * L.G * L.hd), {}};
  return u;
}

// Kept = the naive selection of B - s positions over [0, U) with the window
// at U - w .. U - 1 (2.1 with the prompt cut at the user message's end), then
// the suffix U .. T - 1.
void expect_user_kept(const std::vector<int32_t>& got, const std::vector<double>& sc_u, int T, int s, int w, int B,
                      const std::string& what) {
  const int U = T - s;
  ASSERT_GE(static_cast<int>(got.size()), s) << what;
  const std::vector<int32_t> head(got.begin(), got.end() - s), tail(got.end() - s, got.end());
  std::vector<int32_t> suffix(s);
  std::iota(suffix.begin(), suffix.end(), U);
  EXPECT_EQ(tail, suffix) << what << ": the suffix is always kept";
  expect_same_kept(head, sc_u, U, w, std::max(B - s, 0), what);
}

}  // namespace

// Every selection x allocation with the window at the user message against
// the plain-loop derivation on the prompt cut before the suffix; the suffix
// counts against the budget (B in all per head).
TEST(Press, WindowAtUserMatchesNaive) {
  const int NL = 3, H = 6, G = 2, hd = 16, T = 300, s = 7, w = 8, B = 64, U = T - s;
  const Profile prof = make_profile(NL, H, G, hd, 11, true);
  const PressShape shape{NL, H, G, hd};
  struct Case {
    std::string select, alloc;
  };
  for (const Case& c : {Case{"window", "uniform"}, Case{"window", "pyramid"}, Case{"window", "error-aware"},
                        Case{"srh", "uniform"}, Case{"srh", "error-aware"}}) {
    const std::string name = c.select + "+" + c.alloc;
    PressParams p = params(B);
    p.window_at = WindowAt::User;
    auto press = make_press_pair(c.select, c.alloc, p, shape, &prof);
    press->begin(NL, T);
    std::vector<int> budgets(NL, B);
    if (c.alloc == "pyramid") budgets = pyramid_budgets(B, T, NL, w, 20);
    if (c.alloc == "error-aware") budgets = error_aware_budgets(prof.layer_scores, B);
    for (int l = 0; l < NL; ++l) {
      Layer L = random_layer(T, H, G, hd, 3100u + l);
      LayerView lv = L.view(l, NL);
      lv.suffix = s;
      auto kept = press->select(lv);
      ASSERT_EQ(static_cast<int>(kept.size()), G);
      const Layer Lu = head_of(L, U);
      std::vector<int> srh(prof.srh_ranking[l].begin(), prof.srh_ranking[l].begin() + 4);
      for (int g = 0; g < G; ++g) {
        const auto sc = c.select == "srh" ? naive_score(Lu, srh, w, 5, Pool::Avg) : naive_group_score(Lu, g, w, 5, Pool::Avg);
        const std::string what = name + " layer " + std::to_string(l) + " head " + std::to_string(g);
        // The suffix counts in the budget; window and suffix are kept even beyond it (pyramid's last layer).
        EXPECT_EQ(static_cast<int>(kept[g].size()), std::max(budgets[l], w + s)) << what;
        expect_user_kept(kept[g], sc, T, s, w, budgets[l], what);
      }
    }
  }
}

TEST(Press, WindowAtUserAdaKVAndSinks) {
  const int H = 6, G = 3, hd = 16, T = 400, B = 48, s = 9, w = 8, U = T - s;
  Layer L = random_layer(T, H, G, hd, 5150, {4.0f, 1.0f, 0.05f});
  LayerView lv = L.view();
  lv.suffix = s;
  auto kept = make_press("adakv", params(B), {1, H, G, hd}, nullptr)->select(lv);
  const Layer Lu = head_of(L, U);
  std::vector<std::vector<float>> fscores;
  std::vector<std::vector<double>> scores;
  for (int g = 0; g < G; ++g) {
    scores.push_back(naive_group_score(Lu, g, w, 5, Pool::Avg));
    fscores.emplace_back(scores.back().begin(), scores.back().end());
  }
  const auto hb = adakv_head_budgets(fscores, B - s, w, 0.2f);  // head shares of what the suffix leaves
  size_t total = 0;
  for (int g = 0; g < G; ++g) {
    total += kept[g].size();
    EXPECT_EQ(static_cast<int>(kept[g].size()), hb[g] + s);
    expect_user_kept(kept[g], scores[g], T, s, w, hb[g] + s, "adakv head " + std::to_string(g));
  }
  EXPECT_EQ(total, static_cast<size_t>(G * B));
  // Sinks + recent: the recent run ends at the prompt's end either way.
  PressParams sp = params(40);
  auto sinks = make_press("streamingllm", sp, {1, H, G, hd}, nullptr);
  LayerView end = L.view();
  EXPECT_EQ(sinks->select(lv), sinks->select(end));
}

TEST(Press, WindowAtUserSmallBudgetsAndShortUserPart) {
  const int H = 4, G = 2, hd = 8, T = 200, w = 8;
  Layer L = random_layer(T, H, G, hd, 77);
  auto snap = make_press("snapkv", params(12), {1, H, G, hd}, nullptr);
  // Window + suffix (8 + 10) above the budget: just those are kept.
  LayerView lv = L.view();
  lv.suffix = 10;
  std::vector<int32_t> want(w + 10);
  std::iota(want.begin(), want.end(), T - 10 - w);
  for (const auto& h : snap->select(lv)) EXPECT_EQ(h, want);
  // A user part no longer than the window: everything is kept.
  lv.suffix = T - w;
  for (const auto& h : snap->select(lv)) EXPECT_EQ(h, press::all_positions(T));
  // No suffix: exactly the window at the end.
  LayerView end = L.view();
  lv.suffix = 0;
  EXPECT_EQ(snap->select(lv), snap->select(end));
  // Too few query rows for window + suffix is an error, not a read past q.
  lv.suffix = 10;
  lv.q_rows = 12;
  EXPECT_THROW(snap->select(lv), Error);
}
