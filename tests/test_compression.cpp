// The compressed cache inside the engine: SmolLM2's selection against the
// CompressKV authors' own code, logical RoPE positions after eviction,
// exactness when nothing is evicted, and the KV store's byte accounting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/session.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "model/model.h"
#include "model/quant.h"
#include "press/scoring.h"
#include "profile/profile.h"
#include "test_util.h"

using namespace ckv;

namespace {

Profile ranking_profile(const Model& m, std::vector<std::vector<int>> ranking, std::vector<double> scores = {}) {
  Profile p;
  const ModelConfig& c = m.config;
  p.arch = c.arch;
  p.n_layers = c.n_layers;
  p.n_heads = c.n_heads;
  p.n_kv_heads = c.n_kv_heads;
  p.head_dim = c.head_dim;
  p.srh_ranking = std::move(ranking);
  p.layer_scores = std::move(scores);
  return p;
}

Profile identity_profile(const Model& m) {
  std::vector<int> r(m.config.n_heads);
  for (int h = 0; h < m.config.n_heads; ++h) r[h] = h;
  return ranking_profile(m, std::vector<std::vector<int>>(m.config.n_layers, r));
}

// Kept sets equal, except exchanges among positions whose golden score is
// within 1e-6 relative of the last kept one (golden/README.md).
void expect_same_kept(const std::vector<int32_t>& got, const std::vector<int32_t>& want, const float* sc, int n,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if (got == want) return;
  float last = INFINITY;
  for (int j : want)
    if (j < n) last = std::min(last, sc[j]);
  std::vector<int32_t> diff;
  std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
  for (int j : diff) {
    ASSERT_LT(j, n) << what << ": window position " << j << " differs";
    EXPECT_NEAR(sc[j], last, 1e-6 * last) << what << " position " << j;
  }
}

}  // namespace

// Engine Q/K on SmolLM2's long prompt -> scores and kept positions equal to
// compresskvCluster.update_kv's (golden/compresskv/).
TEST(Compression, GoldenSmolLM2Selection) {
  CKV_REQUIRE_SHARED();
  const std::string dir = test::shared_dir() + "/golden/compresskv/";
  auto g = test::read_json(dir + "smollm2_long.selection.json");
  auto golden_scores = test::read_f32(dir + "smollm2_long.scores.f32");
  auto m = load_model(test::shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
  auto ids = test::read_json(test::shared_dir() + "/golden/smollm2/long.json")["ids"].get<std::vector<int>>();
  const int T = g["prompt_tokens"], w = g["window"], L = m->config.n_layers, n = T - w;
  ASSERT_EQ(static_cast<int>(ids.size()), T);
  auto ranking = g["srh_ranking"].get<std::vector<std::vector<int>>>();
  Profile prof = ranking_profile(*m, ranking);

  // Case 0 through the session itself; the others replay captured layers.
  std::vector<std::vector<float>> qs(L), ks(L);
  int q_rows = 0;
  SessionOptions so;
  so.method = "compresskv";
  so.profile = &prof;
  so.press.budget = g["cases"][0]["budgets"][0];
  so.on_layer = [&](const LayerView& lv) {
    const int H = lv.n_heads, G = lv.n_kv_heads, hd = lv.head_dim;
    q_rows = lv.q_rows;  // the window's queries (the press scores with those only)
    qs[lv.layer].assign(lv.q, lv.q + size_t(lv.q_rows) * H * hd);
    ks[lv.layer].assign(lv.k, lv.k + size_t(lv.T) * G * hd);
  };
  Session s(*m, so);
  std::vector<float> logits(m->config.vocab_size);
  s.prefill(ids, logits.data());

  auto backend = make_cpu_backend();
  std::vector<float> scratch(size_t(m->config.n_heads + 1) * T);
  auto view = [&](int l) {
    const ModelConfig& c = m->config;
    return LayerView{l, L, T, c.n_heads, c.n_kv_heads, c.head_dim, qs[l].data(), q_rows, ks[l].data(),
                     backend.get(), scratch.data()};
  };
  // Scores (2.1 steps 3-7) within 1e-4 relative / 1e-9 absolute.
  double worst = 0;
  for (int l = 0; l < L; ++l) {
    std::vector<int> heads(ranking[l].begin(), ranking[l].begin() + 4);
    auto sc = press::mean_window_score(view(l), heads, w, g["kernel"], Pool::Avg);
    ASSERT_EQ(static_cast<int>(sc.size()), n);
    for (int j = 0; j < n; ++j) {
      double want = golden_scores[size_t(l) * n + j], err = std::fabs(sc[j] - want);
      EXPECT_LE(err, 1e-4 * std::fabs(want) + 1e-9) << "layer " << l << " position " << j;
      worst = std::max(worst, err / (std::fabs(want) + 1e-9));
    }
  }
  std::printf("scores: worst relative error %.3g\n", worst);

  int ci = 0;
  for (const auto& c : g["cases"]) {
    auto budgets = c["budgets"].get<std::vector<int>>();
    Profile p = prof;
    PressParams pp;
    if (c.contains("layer_score")) {
      p.layer_scores = c["layer_score"].get<std::vector<double>>();
      pp.budget = c["average_budget"];
    } else {
      pp.budget = budgets[0];
    }
    const ModelConfig& mc = m->config;
    auto press = make_press("compresskv", pp, PressShape{L, mc.n_heads, mc.n_kv_heads, mc.head_dim}, &p);
    press->begin(L, T);
    for (int l = 0; l < L; ++l) {
      EXPECT_EQ(press->layer_budget(l), budgets[l]) << "case " << ci << " layer " << l;
      KeptPositions kept = ci == 0 ? s.kept()[l] : press->select(view(l));
      auto want = c["kept"][l].get<std::vector<int32_t>>();
      for (size_t h = 0; h < kept.size(); ++h)
        expect_same_kept(kept[h], want, golden_scores.data() + size_t(l) * n, n,
                         "case " + std::to_string(ci) + " layer " + std::to_string(l) + " head " + std::to_string(h));
    }
    ++ci;
  }
  // The compressed session really holds only the kept positions (+ room).
  for (int l = 0; l < L; ++l)
    for (int gk = 0; gk < m->config.n_kv_heads; ++gk) EXPECT_EQ(s.kv().len(l, gk), g["cases"][0]["budgets"][l].get<int>());
}

namespace {

std::unique_ptr<Model> stories() { return load_model(test::source_dir() + "/models/stories260k/stories260K.bin"); }

std::vector<int> prompt_ids(int T, int vocab) {
  std::vector<int> ids(T);
  for (int i = 0; i < T; ++i) ids[i] = 3 + (i * 37 + 11) % (vocab - 3);
  ids[0] = 1;
  return ids;
}

struct GenRun {
  std::vector<std::vector<float>> logits;  // prefill's last, then each decode
  size_t kv_bytes = 0;
};

GenRun generate(const Model& m, const SessionOptions& so, const std::vector<int>& ids, int steps) {
  Session s(m, so);
  const int V = m.config.vocab_size;
  GenRun r;
  std::vector<float> lg(V);
  s.prefill(ids, lg.data());
  r.logits.push_back(lg);
  for (int i = 0; i < steps; ++i) {
    int next = static_cast<int>(std::max_element(lg.begin(), lg.end()) - lg.begin());
    s.decode(next, lg.data());
    r.logits.push_back(lg);
  }
  r.kv_bytes = s.kv().bytes();
  return r;
}

}  // namespace

// With a budget >= the prompt length every method keeps everything and its
// logits equal FullKV's bit for bit, at prefill and while decoding.
TEST(Compression, BudgetOverPromptEqualsFullExactly) {
  auto m = stories();
  Profile prof = identity_profile(*m);
  auto ids = prompt_ids(60, m->config.vocab_size);
  SessionOptions full;
  GenRun ref = generate(*m, full, ids, 8);
  for (const std::string& method : press_names()) {
    for (int budget : {60, 100}) {
      SessionOptions so;
      so.method = method;
      so.press.budget = budget;
      so.profile = &prof;
      GenRun r = generate(*m, so, ids, 8);
      ASSERT_EQ(r.logits.size(), ref.logits.size());
      for (size_t i = 0; i < r.logits.size(); ++i)
        ASSERT_EQ(0, std::memcmp(r.logits[i].data(), ref.logits[i].data(), r.logits[i].size() * sizeof(float)))
            << method << " budget " << budget << " step " << i;
    }
  }
}

// After compression the next token is rotated at the prompt length T, not at
// the number of cached positions: layer 0's key of a generated token depends
// only on its embedding and position, so it can be recomputed here.
TEST(Compression, RopePositionContinuesFromPromptLength) {
  auto m = stories();
  const ModelConfig& c = m->config;
  Profile prof = identity_profile(*m);
  const int T = 100, budget = 16, tok = 42;
  for (std::string method : {"snapkv", "compresskv", "streamingllm", "adakv", "pyramidkv"}) {
    SessionOptions so;
    so.method = method;
    so.press.budget = budget;
    so.profile = &prof;
    Session s(*m, so);
    std::vector<float> lg(c.vocab_size);
    s.prefill(prompt_ids(T, c.vocab_size), lg.data());
    EXPECT_EQ(s.n_past(), T);
    s.decode(tok, lg.data());
    EXPECT_EQ(s.n_past(), T + 1);

    std::vector<float> x(c.dim), xn(c.dim), k(c.n_kv_heads * c.head_dim);
    dequantize_row(m->tok_embd.type, m->tok_embd.row(tok), x.data(), c.dim);
    cpu::rmsnorm(x.data(), static_cast<const float*>(m->layers[0].attn_norm.data), xn.data(), 1, c.dim, c.norm_eps);
    cpu::matmul_reference(m->layers[0].wk, xn.data(), 1, k.data());
    cpu::Rope rope(c);
    for (int g = 0; g < c.n_kv_heads; ++g) {
      int len = s.kv().len(0, g);
      ASSERT_LT(len, T) << method << ": the cache should have been compressed";
      std::vector<float> got(size_t(c.head_dim));
      s.kv().key(0, g, len - 1, got.data());
      for (int32_t pos : {T, len - 1}) {
        std::vector<float> kk = k;
        rope.apply(kk.data(), &pos, 1, c.n_kv_heads);
        double err = 0;
        for (int d = 0; d < c.head_dim; ++d) err = std::max(err, std::fabs(double(got[d]) - kk[g * c.head_dim + d]));
        if (pos == T) {
          EXPECT_LT(err, 1e-5) << method << " head " << g << ": key not rotated at position T";
        } else {
          EXPECT_GT(err, 1e-3) << method << " head " << g << ": key rotated at the cache length";
        }
      }
    }
  }
}

// The bytes the store reports are the bytes of the pages it holds, and a
// compressed cache really is smaller (Ada-KV heads of one layer hold
// different lengths); a full cache holds what full_bytes() says.
TEST(Compression, KVBytesAreAllocatedBytes) {
  auto m = stories();
  const ModelConfig& c = m->config;
  Profile prof = identity_profile(*m);
  const int T = 200, budget = 32;
  for (KvType type : {KvType::F32, KvType::F16})
  for (const std::string& method : press_names()) {
    const size_t es = type == KvType::F16 ? 2 : 4;  // bytes per element
    SessionOptions so;
    so.kv_type = type;
    so.method = method;
    so.press.budget = budget;
    so.profile = &prof;
    Session s(*m, so);
    const int P = s.kv().pool().page_rows();
    std::vector<float> lg(c.vocab_size);
    s.prefill(prompt_ids(T, c.vocab_size), lg.data());
    size_t sum = 0;
    int64_t kept_total = 0;
    bool differ = false;
    for (int l = 0; l < c.n_layers; ++l)
      for (int g = 0; g < c.n_kv_heads; ++g) {
        EXPECT_EQ(s.kv().capacity(l, g), (s.kv().len(l, g) + P - 1) / P * P);  // whole pages, no spare page
        sum += size_t(s.kv().capacity(l, g)) * c.head_dim * 2 * es;
        kept_total += s.kv().len(l, g);
        differ |= s.kv().len(l, g) != s.kv().len(l, 0);
      }
    EXPECT_EQ(s.kv().bytes(), sum) << method;
    EXPECT_EQ(s.kv().full_bytes(T), size_t((T + P - 1) / P * P) * c.n_layers * c.n_kv_heads * c.head_dim * 2 * es);
    if (method == "full") {
      EXPECT_EQ(kept_total, int64_t(T) * c.n_layers * c.n_kv_heads);
      EXPECT_EQ(s.kv().bytes(), s.kv().full_bytes(T));
    } else if (method != "pyramidkv") {
      EXPECT_EQ(kept_total, int64_t(budget) * c.n_layers * c.n_kv_heads) << method;
    }
    if (method == "adakv" || method == "adacompresskv") {
      EXPECT_TRUE(differ) << "Ada-KV heads should hold different lengths";
    } else {
      EXPECT_FALSE(differ) << method;
    }
    // Appending past a page boundary takes a page, and the count follows.
    for (int i = 0; i < P + 1; ++i) s.decode(5, lg.data());
    size_t after = 0;
    for (int l = 0; l < c.n_layers; ++l)
      for (int g = 0; g < c.n_kv_heads; ++g) after += size_t(s.kv().capacity(l, g)) * c.head_dim * 2 * es;
    EXPECT_EQ(s.kv().bytes(), after) << method;
    EXPECT_GT(after, sum) << method;
  }
}

// An f16 cache holds the keys and values rounded to half precision: the
// logits of decoding over it stay within a few hundredths of the f32 cache's.
TEST(Compression, F16CacheStaysCloseToF32) {
  auto m = stories();
  const ModelConfig& c = m->config;
  const int V = c.vocab_size;
  std::vector<std::vector<float>> lg(2, std::vector<float>(V * 9));
  for (int i = 0; i < 2; ++i) {
    SessionOptions so;
    so.kv_type = i ? KvType::F16 : KvType::F32;
    Session s(*m, so);
    s.prefill(prompt_ids(120, V), lg[i].data());
    for (int step = 1; step < 9; ++step) s.decode(7 + step, lg[i].data() + step * V);
  }
  double worst = 0;
  for (size_t j = V; j < lg[0].size(); ++j) worst = std::max(worst, std::fabs(double(lg[0][j]) - lg[1][j]));
  EXPECT_LT(worst, 5e-2);
  EXPECT_GT(worst, 0.0) << "the f16 cache should round";
}

// --kv-dump-kept writes the kept positions in the documented layout.
TEST(Compression, DumpKeptFromCli) {
  std::string path = "/tmp/ckv_dump_kept_test.json";
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "Once upon a time there was a cat. ";
  auto r = test::run_cli({"run", "-m", test::source_dir() + "/models/stories260k/stories260K.bin", "-p", prompt, "-n",
                          "4", "--temp", "0", "--kv-method", "snapkv", "--kv-budget", "24", "--kv-dump-kept", path});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("kv cache (snapkv)"), std::string::npos) << r.err;
  auto j = test::read_json(path);
  const int T = j["prompt_tokens"];
  EXPECT_GT(T, 200);
  ASSERT_EQ(j["layers"].size(), 5u);
  for (const auto& layer : j["layers"]) {
    ASSERT_EQ(layer.size(), 4u);  // KV heads
    for (const auto& head : layer) {
      auto pos = head.get<std::vector<int>>();
      EXPECT_EQ(pos.size(), 24u);
      EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end()));
      for (int w = 0; w < 8; ++w) EXPECT_EQ(pos[24 - 8 + w], T - 8 + w) << "window kept";
    }
  }
  std::remove(path.c_str());
}
