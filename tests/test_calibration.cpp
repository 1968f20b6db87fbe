// Calibration (src/profile): the 2.4 head scores on a hand-checkable
// attention pattern (semantic and traditional), ranking ties, 2.5's layer
// error against a brute-force re-derivation on stories260K, the combination
// of calibration sets, and a profile round trip identify-heads ->
// profile-layers -> eval with compresskv on stories260K.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "engine/session.h"
#include "eval/needles.h"
#include "eval/niah.h"
#include "model/model.h"
#include "profile/head_scores.h"
#include "profile/identify_heads.h"
#include "profile/profile_layers.h"
#include "test_util.h"

using namespace ckv;
using ckv::test::TmpDir;
using ckv::test::write_file;

namespace {

std::string stories_path() { return test::source_dir() + "/models/stories260k/stories260K.bin"; }

const Model& stories() {
  static std::unique_ptr<Model> m = load_model(stories_path());
  return *m;
}

const Tokenizer& stories_tok() {
  static std::unique_ptr<Tokenizer> t = make_tokenizer(stories().vocab);
  return *t;
}

std::string story_text() {
  std::string s;
  const char* sents[] = {"Once upon a time there was a little girl named Lily. ", "She liked to play in the park. ",
                         "One day she saw a big red ball. ", "The ball was very shiny and round. ",
                         "Lily ran to the ball and picked it up. ", "Her mom smiled and said it was time to go home. "};
  for (int i = 0; i < 40; ++i) s += sents[i % 6];
  return s;
}

// A profile of stories260K's shape with a fixed SRH ranking.
Profile stories_profile() {
  const ModelConfig& c = stories().config;
  Profile p;
  p.arch = c.arch;
  p.n_layers = c.n_layers;
  p.n_heads = c.n_heads;
  p.n_kv_heads = c.n_kv_heads;
  p.head_dim = c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<int> r(c.n_heads);
    std::iota(r.begin(), r.end(), 0);
    std::rotate(r.begin(), r.begin() + (3 * l) % c.n_heads, r.end());
    p.srh_ranking.push_back(r);
  }
  return p;
}

}  // namespace

// ---- DESIGN.md 2.4 steps 6-7

TEST(HeadScores, HandCheckablePattern) {
  // Prompt tokens; the answer span [1, 4) holds tokens {8, 9}.
  const std::vector<int> prompt{7, 8, 9, 8, 5};
  ProbeHeadSums p(/*layers*/ 1, /*heads*/ 2, prompt, 1, 4);
  // Step 1 generates 9 (in the span). Head 0's argmax row 2 holds 9: +1/3.
  const float m1[2] = {0.5f, 0.1f};
  const int32_t a1[2] = {2, 4};
  p.layer(0, m1, a1);
  p.token(9);
  // Step 2 generates 5 (not in the span): nothing is added.
  const float m2[2] = {0.25f, 0.75f};
  const int32_t a2[2] = {1, 3};
  p.layer(0, m2, a2);
  p.token(5);
  // Step 3 generates 8: both heads' argmax rows (1 and 3) are in the span and hold 8.
  const float m3[2] = {0.25f, 0.5f};
  const int32_t a3[2] = {1, 3};
  p.layer(0, m3, a3);
  p.token(8);
  // Step 4 generates 9 but head 0's argmax row 1 holds 8 (not the generated token),
  // head 1's row 0 is outside the span: no traditional score; semantic mass adds.
  const float m4[2] = {0.125f, 0.25f};
  const int32_t a4[2] = {1, 0};
  p.layer(0, m4, a4);
  p.token(9);
  EXPECT_EQ(p.steps_in_span(), 3);
  EXPECT_DOUBLE_EQ(p.semantic()[0], 0.5 + 0.25 + 0.125);
  EXPECT_DOUBLE_EQ(p.semantic()[1], 0.1f + 0.5 + 0.25);
  EXPECT_DOUBLE_EQ(p.retrieval()[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(p.retrieval()[1], 1.0 / 3.0);

  // A second probe: head 1 only, one step.
  ProbeHeadSums q(1, 2, prompt, 1, 4);
  const float mq[2] = {0.0f, 1.0f};
  const int32_t aq[2] = {0, 2};
  q.layer(0, mq, aq);
  q.token(9);
  HeadScores s(1, 2);
  s.add(p);
  s.add(q);
  EXPECT_EQ(s.counted(), 2);
  EXPECT_DOUBLE_EQ(s.semantic()[0][0], 0.875 / 2);
  EXPECT_NEAR(s.semantic()[0][1], (0.1f + 0.75 + 1.0) / 2, 1e-9);
  EXPECT_DOUBLE_EQ(s.retrieval()[0][0], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.retrieval()[0][1], (1.0 / 3.0 + 1.0 / 3.0) / 2);
  // Semantic: head 1 (0.925) before head 0 (0.4375); traditional: head 0 (1/3) ties head 1 (1/3): lower first.
  EXPECT_EQ(rank_heads(s.semantic()[0]), (std::vector<int>{1, 0}));
  EXPECT_EQ(rank_heads(s.retrieval()[0]), (std::vector<int>{0, 1}));
  EXPECT_ERROR(ProbeHeadSums(1, 2, prompt, 3, 6), "span");
}

TEST(HeadScores, RankingTiesLowerHeadFirst) {
  EXPECT_EQ(rank_heads({1.0, 2.0, 2.0, 0.0, 2.0}), (std::vector<int>{1, 2, 4, 0, 3}));
  EXPECT_EQ(rank_heads({0, 0, 0}), (std::vector<int>{0, 1, 2}));
}

// ---- DESIGN.md 2.5

TEST(LayerErrors, CombineNormalisesPerSetThenTheMean) {
  auto e = combine_layer_errors({{1, 3}, {2, 2}});  // (0.25, 0.75) and (0.5, 0.5) -> (0.375, 0.625)
  EXPECT_DOUBLE_EQ(e[0], 0.375);
  EXPECT_DOUBLE_EQ(e[1], 0.625);
  auto z = combine_layer_errors({{0, 0}});
  EXPECT_DOUBLE_EQ(z[0], 0.5);
}

// The engine-derived error against a brute force written here: the kept
// positions from a compressing prefill with the same selection, the attention
// over kept + generated rows in double from the full cache's rows, W_o in double.
TEST(LayerErrors, MatchesBruteForceOnStories260K) {
  const Model& m = stories();
  const Tokenizer& tok = stories_tok();
  const ModelConfig& c = m.config;
  const int L = c.n_layers, H = c.n_heads, G = c.n_kv_heads, hd = c.head_dim, dim = c.dim, r = H / G;
  const Profile prof = stories_profile();
  std::vector<int> prompt = tok.encode(story_text().substr(0, 600), false);
  prompt.insert(prompt.begin(), tok.bos());
  prompt.resize(120);
  LayerErrorOptions opt;
  opt.budget = 24;
  opt.max_new = 6;
  int steps = 0;
  const std::vector<double> err = prompt_layer_errors(m, tok, prof, prompt, opt, &steps);
  ASSERT_EQ(static_cast<int>(err.size()), L);
  EXPECT_EQ(steps, 6);

  // Kept positions as a compressing prefill with the same selection keeps them.
  SessionOptions so;
  so.select = "srh";
  so.alloc = "uniform";
  so.press.budget = opt.budget;
  so.profile = &prof;
  Session comp(m, so);
  comp.prefill(prompt, nullptr);
  const auto kept = comp.kept();
  ASSERT_EQ(static_cast<int>(kept.size()), L);
  EXPECT_EQ(kept[0][0].size(), 24u);

  std::vector<double> brute(L, 0.0);
  const Session* fp = nullptr;
  SessionOptions fo;
  fo.on_decode_layer = [&](int l, const float* q, const float* attn) {
    const KvCache& kv = fp->kv();
    std::vector<double> att(static_cast<size_t>(H) * hd, 0.0);
    for (int h = 0; h < H; ++h) {
      const int g = h / r;
      std::vector<int> rows(kept[l][g].begin(), kept[l][g].end());
      for (int t = static_cast<int>(prompt.size()); t < kv.len(l, g); ++t) rows.push_back(t);
      std::vector<double> s(rows.size());
      std::vector<float> kr(hd), vr(hd);
      double mx = -1e300;
      for (size_t i = 0; i < rows.size(); ++i) {
        kv.key(l, g, rows[i], kr.data());
        double d = 0;
        for (int e = 0; e < hd; ++e) d += static_cast<double>(q[h * hd + e]) * kr[e];
        s[i] = d / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[i]);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (size_t i = 0; i < rows.size(); ++i) {
        kv.value(l, g, rows[i], vr.data());
        for (int e = 0; e < hd; ++e) att[h * hd + e] += s[i] / sum * vr[e];
      }
    }
    const float* wo = static_cast<const float*>(m.layers[l].wo.data);  // f32 [dim][H*hd]
    double diff = 0, norm = 0;
    for (int i = 0; i < dim; ++i) {
      double of = 0, oc = 0;
      for (int j = 0; j < H * hd; ++j) of += wo[i * H * hd + j] * static_cast<double>(attn[j]), oc += wo[i * H * hd + j] * att[j];
      diff += (oc - of) * (oc - of);
      norm += of * of;
    }
    brute[l] += std::sqrt(diff) / (std::sqrt(norm) + 1e-6);
  };
  Session full(m, fo);
  fp = &full;
  std::vector<float> logits(c.vocab_size);
  full.prefill(prompt, logits.data());
  for (int s = 0; s < 6; ++s) {
    int id = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    full.decode(id, logits.data());
  }
  for (int l = 0; l < L; ++l) {
    EXPECT_GT(brute[l], 1e-4) << "layer " << l << ": keeping 24 of 120 positions must cost something";
    EXPECT_NEAR(err[l], brute[l], 1e-4 * brute[l] + 1e-6) << "layer " << l;
  }

  // Keeping everything (budget above the prompt) costs nothing.
  opt.budget = 200;
  for (double e : prompt_layer_errors(m, tok, prof, prompt, opt, nullptr)) EXPECT_LT(e, 1e-4);
}

// ---- identify-heads round trip (library), and the CLI chain on stories260K

TEST(IdentifyHeads, RoundTripOnStories260K) {
  const Model& m = stories();
  const Tokenizer& tok = stories_tok();
  TmpDir d("identify");
  write_file(d / "hay.txt", story_text());
  const eval::Haystack hay = eval::Haystack::load(d / "hay.txt", tok, 400);
  IdentifyOptions opt;
  opt.grid.lengths = {120, 240};
  opt.grid.depths = {0.2, 0.8};
  opt.max_new = 8;
  opt.min_recall = -1;  // the 260K model cannot answer: count every probe with a span
  std::vector<eval::Needle> needles(eval::calibration_needles().begin(), eval::calibration_needles().begin() + 2);
  auto probes = eval::niah_probes(tok, hay, needles, opt.grid, nullptr);
  ASSERT_EQ(probes.size(), 8u);
  IdentifyResult r = identify_heads(m, tok, probes, needles, opt);
  ASSERT_EQ(r.probes.size(), 8u);
  const Profile& p = r.profile;
  EXPECT_EQ(p.n_layers, 5);
  EXPECT_EQ(p.n_heads, 8);
  EXPECT_EQ(p.fingerprint, m.fingerprint());
  int counted = 0;
  for (auto& pr : r.probes) counted += pr.counted;
  EXPECT_EQ(p.provenance["identify_heads"]["counted"], counted);
  for (int l = 0; l < 5; ++l) {
    std::vector<int> sorted = p.srh_ranking[l];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
    EXPECT_TRUE(std::is_sorted(p.srh_scores[l].rbegin(), p.srh_scores[l].rend()));
    EXPECT_EQ(p.retrieval_ranking[l].size(), 8u);
  }
  // It reloads as a profile, and the same run gives the same numbers.
  p.save(d / "p.json");
  Profile back = Profile::load(d / "p.json");
  EXPECT_EQ(back.srh_ranking, p.srh_ranking);
  IdentifyResult again = identify_heads(m, tok, probes, needles, opt);
  EXPECT_EQ(again.profile.srh_scores, p.srh_scores);

  // With the default rule nothing this tiny model says counts: a clear error.
  opt.min_recall = 0.5;
  EXPECT_ERROR(identify_heads(m, tok, probes, needles, opt), "no probe counts", "ranking would be arbitrary");
}

TEST(Calibration, CliChainOnStories260K) {
  TmpDir d("calib_cli");
  write_file(d / "hay.txt", story_text());
  auto r = test::run_cli({"identify-heads", "-m", stories_path(), "--haystack", d / "hay.txt", "--lengths", "100,200",
                          "--depths", "0.5", "--max-new", "6", "--min-recall", "-1", "-o", d / "p.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  Profile p = Profile::load(d / "p.json");
  EXPECT_EQ(p.srh_ranking.size(), 5u);
  EXPECT_TRUE(p.layer_scores.empty());
  EXPECT_EQ(p.provenance["identify_heads"]["needles"], "built-in calibration set");
  const std::string side = test::read_text(d / "p.probes.jsonl");
  EXPECT_EQ(std::count(side.begin(), side.end(), '\n'), 12);  // 2 lengths x 1 depth x 6 needles
  EXPECT_NE(side.find("\"recall\""), std::string::npos);

  write_file(d / "calib.jsonl", "{\"text\": \"Once upon a time there was a cat. The cat liked milk.\"}\n"
                                "{\"prompt\": \"Lily had a red ball. She played with it in the park every day.\"}\n");
  r = test::run_cli({"profile-layers", "-m", stories_path(), "--profile", d / "p.json", "--calib", d / "calib.jsonl",
                     "--budget", "12", "--max-new", "4", "-o", d / "p2.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  Profile p2 = Profile::load(d / "p2.json");
  ASSERT_EQ(p2.layer_scores.size(), 5u);
  EXPECT_NEAR(std::accumulate(p2.layer_scores.begin(), p2.layer_scores.end(), 0.0), 1.0, 1e-9);
  EXPECT_EQ(p2.srh_ranking, p.srh_ranking);
  EXPECT_EQ(p2.provenance["profile_layers"]["budget"], 12);
  EXPECT_TRUE(p2.provenance.contains("identify_heads"));

  // The profile drives compresskv in an evaluation.
  r = test::run_cli({"eval", "niah", "-m", stories_path(), "--haystack", d / "hay.txt", "--lengths", "100", "--depths",
                     "0.5", "--methods", "compresskv", "--budgets", "40", "--kv-profile", d / "p2.json", "--max-new", "4",
                     "--no-plots", "-o", d / "ev"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = test::read_json(d / "ev/results.json");
  EXPECT_EQ(j["summary"].size(), 2u);

  // Bad input: no calibration prompts, a profile of another model, an empty set.
  r = test::run_cli({"profile-layers", "-m", stories_path(), "--profile", d / "p.json"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("calibration prompts"), std::string::npos) << r.err;
  Profile other = p;
  other.n_layers = 4;
  other.srh_ranking.pop_back();
  other.srh_scores.pop_back();
  other.retrieval_ranking.pop_back();
  other.save(d / "other.json");
  r = test::run_cli({"profile-layers", "-m", stories_path(), "--profile", d / "other.json", "--calib", d / "calib.jsonl"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("other.json"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("4 layers"), std::string::npos) << r.err;
  write_file(d / "bad.jsonl", "{\"text\": \"ok\"}\n{\"words\": 1}\n");
  r = test::run_cli({"profile-layers", "-m", stories_path(), "--profile", d / "p.json", "--calib", d / "bad.jsonl"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("bad.jsonl:2"), std::string::npos) << r.err;
}
