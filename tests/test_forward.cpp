// End-to-end forward pass against independent references (golden/README.md):
// stories260K and SmolLM2 logits and greedy output, tiny-hf logits of four
// architectures, and decode agreeing with prefill.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/sampler.h"
#include "engine/session.h"
#include "model/model.h"
#include "test_util.h"

using namespace ckv;
using ckv::test::read_f32;
using ckv::test::read_json;
using ckv::test::shared_dir;

namespace {

const std::string kSmol = "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

// Logits of every position of one prefill: [T][V].
std::vector<float> all_logits(const Model& m, const std::vector<int>& ids) {
  SessionOptions so;
  Session s(m, so);
  const int V = m.config.vocab_size;
  std::vector<float> out(ids.size() * V);
  s.prefill(ids, nullptr, [&](int64_t pos, const float* lg) { std::copy(lg, lg + V, &out[pos * V]); });
  return out;
}

// Compares top-k logits per position (golden ids/logits lists) within tol, and
// the top-1 id wherever the golden top-2 gap exceeds gap.
void check_topk(const std::vector<float>& lg, int V, const nlohmann::json& ids, const nlohmann::json& vals, double tol,
                double gap, const std::string& what) {
  double worst = 0;
  for (size_t p = 0; p < ids.size(); ++p) {
    const float* row = &lg[p * V];
    for (size_t k = 0; k < ids[p].size(); ++k) {
      double d = std::fabs(row[ids[p][k].get<int>()] - vals[p][k].get<double>());
      worst = std::max(worst, d);
    }
    if (vals[p][0].get<double>() - vals[p][1].get<double>() > gap) {
      EXPECT_EQ(Sampler::argmax(row, V), ids[p][0].get<int>()) << what << " position " << p;
    }
  }
  EXPECT_LE(worst, tol) << what << ": max abs logit error";
  std::printf("%s: max abs error over top-k logits %.3g\n", what.c_str(), worst);
}

}  // namespace

TEST(Forward, Stories260kFirst64Logits) {
  CKV_REQUIRE_SHARED();
  auto m = load_model(test::source_dir() + "/models/stories260k/stories260K.bin");
  auto g = read_json(shared_dir() + "/golden/stories260k/greedy.json");
  std::vector<int> ids = g["ids"].get<std::vector<int>>();
  ids.resize(64);
  auto lg = all_logits(*m, ids);
  check_topk(lg, m->config.vocab_size, g["first64_topk_ids"], g["first64_topk_logits"], 1e-4, 1e-4, "stories260K");
}

TEST(Forward, Stories260kGreedyText) {
  CKV_REQUIRE_SHARED();
  auto r = test::run_cli({"run", "-m", test::source_dir() + "/models/stories260k/stories260K.bin", "--temp", "0", "-n", "256"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, test::read_text(shared_dir() + "/models/stories260k/greedy_256.txt"));
  EXPECT_NE(r.err.find("prompt tokens: 1,"), std::string::npos) << r.err;
}

class SmolGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(SmolGolden, LogitsAndGreedy) {
  CKV_REQUIRE_SHARED();
  static auto m = load_model(shared_dir() + kSmol);
  const int V = m->config.vocab_size;
  auto g = read_json(shared_dir() + "/golden/smollm2/" + GetParam() + ".json");
  std::vector<int> ids = g["ids"].get<std::vector<int>>();
  auto lg = all_logits(*m, ids);
  check_topk(lg, V, g["topk_ids"], g["topk_logits"], 1e-2, 1e-2, "smollm2 " + GetParam());
  auto last = read_f32(shared_dir() + "/golden/smollm2/" + GetParam() + ".last_logits.f32");
  ASSERT_EQ(last.size(), static_cast<size_t>(V));
  double worst = 0;
  for (int i = 0; i < V; ++i) worst = std::max(worst, std::fabs(double(last[i]) - lg[(ids.size() - 1) * V + i]));
  EXPECT_LE(worst, 1e-2) << "last-position logits";

  // Greedy continuation through the decode path, compared up to the first near-tie.
  SessionOptions so;
  Session s(*m, so);
  std::vector<float> logits(V);
  s.prefill(ids, logits.data());
  auto want = g["greedy_ids"].get<std::vector<int>>();
  auto margin = g["greedy_top1_margin"].get<std::vector<double>>();
  for (size_t i = 0; i < want.size(); ++i) {
    if (margin[i] < 1e-3) break;
    int next = Sampler::argmax(logits.data(), V);
    ASSERT_EQ(next, want[i]) << GetParam() << " greedy step " << i;
    s.decode(next, logits.data());
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, SmolGolden, ::testing::Values("short", "chat", "long"));

class TinyHF : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyHF, AllLogits) {
  CKV_REQUIRE_SHARED();
  auto g = read_json(shared_dir() + "/golden/tiny-hf/tiny_hf.json");
  auto m = load_model(shared_dir() + "/models/tiny-hf/" + GetParam());
  std::vector<int> ids = g["input_ids"].get<std::vector<int>>();
  auto want = read_f32(shared_dir() + "/golden/tiny-hf/" + GetParam() + ".logits.f32");
  auto lg = all_logits(*m, ids);
  ASSERT_EQ(lg.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < lg.size(); ++i) worst = std::max(worst, std::fabs(double(lg[i]) - want[i]));
  EXPECT_LE(worst, 1e-4) << GetParam();
  std::printf("%s: max abs logit error %.3g\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Golden, TinyHF, ::testing::Values("tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"));

// Token-by-token decode must give the prefill's logits (same positions, same cache).
TEST(Forward, DecodeMatchesPrefill) {
  CKV_REQUIRE_SHARED();
  auto m = load_model(shared_dir() + "/models/tiny-hf/tiny-qwen2");
  auto g = read_json(shared_dir() + "/golden/tiny-hf/tiny_hf.json");
  std::vector<int> ids = g["input_ids"].get<std::vector<int>>();
  const int V = m->config.vocab_size;
  auto ref = all_logits(*m, ids);
  SessionOptions so;
  Session s(*m, so);
  std::vector<float> lg(V);
  s.prefill({ids[0], ids[1], ids[2]}, lg.data());
  for (size_t i = 3; i < ids.size(); ++i) {
    s.decode(ids[i], lg.data());
    for (int v = 0; v < V; ++v) ASSERT_NEAR(lg[v], ref[i * V + v], 1e-4) << "position " << i;
  }
}
