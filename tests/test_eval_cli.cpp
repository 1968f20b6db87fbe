// The evaluation end to end on stories260K: the shared prefill gives the same
// answers as separate prefills, eval niah / ruler / kld write results.json in
// DESIGN.md 6's schema (and PNGs when gnuplot is there), the same seed gives
// the same numbers, and bad input fails with a clear error.
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>
#include <set>

#include "engine/session.h"
#include "eval/generate.h"
#include "eval/grid.h"
#include "eval/niah_probe.h"
#include "eval/plot.h"
#include "model/model.h"
#include "profile/profile.h"
#include "test_util.h"

using namespace ckv;
using ckv::test::run_cli;
using ckv::test::TmpDir;
using ckv::test::write_file;

namespace {

std::string stories_path() { return test::source_dir() + "/models/stories260k/stories260K.bin"; }

const Model& stories() {
  static std::unique_ptr<Model> m = load_model(stories_path());
  return *m;
}

std::string story_text() {
  std::string s;
  const char* sents[] = {"Once upon a time there was a little girl named Lily. ", "She liked to play in the park. ",
                         "One day she saw a big red ball. ", "The ball was very shiny and round. ",
                         "Lily ran to the ball and picked it up. ", "Her mom smiled and said it was time to go home. "};
  for (int i = 0; i < 60; ++i) s += sents[i % 6];
  return s;
}

Profile stories_profile() {
  const ModelConfig& c = stories().config;
  Profile p;
  p.arch = c.arch;
  p.n_layers = c.n_layers;
  p.n_heads = c.n_heads;
  p.n_kv_heads = c.n_kv_heads;
  p.head_dim = c.head_dim;
  p.fingerprint = stories().fingerprint();
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<int> r(c.n_heads);
    std::iota(r.begin(), r.end(), 0);
    std::rotate(r.begin(), r.begin() + (5 * l) % c.n_heads, r.end());
    p.srh_ranking.push_back(r);
  }
  p.layer_scores = {0.1, 0.3, 0.2, 0.25, 0.15};
  return p;
}

// 200 tokens of the story after BOS.
std::vector<int> story_prompt(const Tokenizer& tok) {
  std::vector<int> prompt = tok.encode(story_text().substr(0, 900), false);
  prompt.insert(prompt.begin(), tok.bos());
  prompt.resize(200);
  return prompt;
}

// Minimal PNG check: signature and the IHDR size.
void expect_png(const std::string& path) {
  const std::string b = test::read_text(path);
  ASSERT_GT(b.size(), 24u) << path;
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << path;
  EXPECT_EQ(b.substr(12, 4), "IHDR") << path;
  const auto be32 = [&](size_t o) {
    return (uint32_t(uint8_t(b[o])) << 24) | (uint32_t(uint8_t(b[o + 1])) << 16) | (uint32_t(uint8_t(b[o + 2])) << 8) |
           uint32_t(uint8_t(b[o + 3]));
  };
  EXPECT_GE(be32(16), 300u) << path;
  EXPECT_GE(be32(20), 200u) << path;
}

}  // namespace

// Every cell derived from the one full prefill and decoded in one batch with
// the others answers as its own session alone does, and teacher forcing gives
// the same logits.
TEST(SharedPrefill, SameAnswersAsSeparateSessions) {
  const Model& m = stories();
  auto tok = make_tokenizer(m.vocab);
  const Profile prof = stories_profile();
  const std::vector<int> prompt = story_prompt(*tok);
  const auto cells = eval::grid_cells({"full", "streamingllm", "snapkv", "pyramidkv", "adakv", "compresskv",
                                       "srh+uniform", "window+error-aware"},
                                      {32, 64});
  SessionOptions base;
  base.profile = &prof;
  eval::check_cells(m, cells, base);
  eval::GenerateOptions go;
  go.max_new = 24;
  go.stop_at_newline = false;
  const auto shared = eval::grid_answers(m, *tok, prompt, cells, base, go);
  ASSERT_EQ(shared.size(), cells.size());
  const std::vector<int> forced(prompt.begin() + 20, prompt.begin() + 30);
  std::vector<std::vector<std::vector<float>>> forced_logits(cells.size());
  eval::grid_teacher_force(m, prompt, forced, cells, base, [&](size_t i, int step, const float* lg) {
    EXPECT_EQ(static_cast<int>(forced_logits[i].size()), step);
    forced_logits[i].emplace_back(lg, lg + m.config.vocab_size);
  });
  // Cells one at a time (a small KV pool) answer the same.
  eval::set_grid_pool_bytes(3.0 * 2 * 226 * 5 * 4 * 8 * 4);
  const auto grouped = eval::grid_answers(m, *tok, prompt, cells, base, go);
  eval::set_grid_pool_bytes(4.0 * (1 << 30));
  for (size_t i = 0; i < cells.size(); ++i) EXPECT_EQ(grouped[i].text, shared[i].text) << cells[i].method;
  std::set<std::string> distinct;
  for (size_t i = 0; i < cells.size(); ++i) {
    const std::string what = cells[i].method + " " + std::to_string(cells[i].budget);
    Session s(m, eval::cell_options(base, cells[i]));
    std::vector<float> logits(m.config.vocab_size);
    s.prefill(prompt, logits.data());
    EXPECT_EQ(eval::greedy_answer(s, *tok, logits, go).text, shared[i].text) << what;
    EXPECT_EQ(shared[i].ids.size(), 24u) << what;
    distinct.insert(shared[i].text);
    Session t(m, eval::cell_options(base, cells[i]));
    t.prefill(prompt, logits.data());
    ASSERT_EQ(forced_logits[i].size(), forced.size());
    for (size_t k = 0; k < forced.size(); ++k) {
      float err = 0;
      for (int v = 0; v < m.config.vocab_size; ++v) err = std::max(err, std::abs(logits[v] - forced_logits[i][k][v]));
      EXPECT_LT(err, 1e-4f) << what << " step " << k;
      if (k + 1 < forced.size()) t.decode(forced[k], logits.data());
    }
  }
  EXPECT_GT(distinct.size(), 3u) << "the methods should not all answer alike";
}

// The same with the window at the user message: the grid's copies honour the
// prompt's suffix as a separate session (run's path) does.
TEST(SharedPrefill, WindowAtUserSameAsSeparateSessions) {
  const Model& m = stories();
  auto tok = make_tokenizer(m.vocab);
  const Profile prof = stories_profile();
  const std::vector<int> prompt = story_prompt(*tok);
  // 300: an average budget above the prompt's 200 tokens (error-aware layers still compress).
  const auto cells = eval::grid_cells({"full", "snapkv", "adakv", "compresskv", "srh+uniform"}, {32, 64, 300});
  SessionOptions base;
  base.profile = &prof;
  base.press.window_at = WindowAt::User;
  base.user_suffix = 7;
  eval::check_cells(m, cells, base);
  eval::GenerateOptions go;
  go.max_new = 16;
  go.stop_at_newline = false;
  const auto shared = eval::grid_answers(m, *tok, prompt, cells, base, go);
  for (size_t i = 0; i < cells.size(); ++i) {
    Session s(m, eval::cell_options(base, cells[i]));
    std::vector<float> logits(m.config.vocab_size);
    s.prefill(prompt, logits.data());
    EXPECT_EQ(eval::greedy_answer(s, *tok, logits, go).text, shared[i].text)
        << cells[i].method << " " << cells[i].budget;
  }
}

// run --chat and eval niah on SmolLM2 with --kv-window-at user: the same
// probe (eval renders it, run renders its user message) gives the same greedy
// answer, so both find the same template suffix and keep the same positions.
TEST(EvalCli, WindowAtUserRunEqualsEval) {
  CKV_REQUIRE_SHARED();
  const std::string smollm =
      test::shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  TmpDir d("eval_user");
  std::string hay;
  for (int i = 0; i < 8; ++i)
    hay += "The harbour town slept under a grey sky. Fishermen mended nets while gulls argued over scraps. ";
  write_file(d / "hay.txt", hay);
  write_file(d / "n.jsonl", "{\"needle\": \"The keeper of the lighthouse owned a parrot called Mango.\", "
                            "\"question\": \"What was the parrot called?\", \"answer\": \"Mango\"}\n");
  auto m = load_model(smollm);
  auto tok = make_tokenizer(m->vocab);
  const std::vector<int> hay_ids = tok->encode(hay, false);
  const std::string context = eval::place_needle(*tok, hay_ids, 150, 0.5,
                                                 "The keeper of the lighthouse owned a parrot called Mango.");
  const std::string user = "<book>" + context + "</book>\nBased on the content of the book, Question: What was the "
                           "parrot called?\nAnswer:";
  for (const char* at : {"end", "user"}) {
    auto e = run_cli({"eval", "niah", "-m", smollm, "--device", "cpu", "--haystack", d / "hay.txt", "--needles",
                      d / "n.jsonl", "--lengths", "150", "--depths", "0.5", "--methods", "snapkv", "--budgets", "24",
                      "--kv-window-at", at, "--max-new", "12", "--no-plots", "-o", d / "out"});
    ASSERT_EQ(e.status, 0) << e.err;
    const auto j = test::read_json(d / "out/results.json");
    std::string eval_answer;
    for (const auto& row : j["rows"])
      if (row["method"] == "snapkv") eval_answer = row["response"].get<std::string>();
    auto r = run_cli({"run", "-m", smollm, "--device", "cpu", "--chat", "-p", user, "--kv-method", "snapkv",
                      "--kv-budget", "24", "--kv-window-at", at, "--temp", "0", "-n", "12"});
    ASSERT_EQ(r.status, 0) << r.err;
    // eval's answer ends at the first newline after text; run prints all 12 tokens.
    const std::string run_text = r.out.substr(0, r.out.find('\n', r.out.find_first_not_of(" \n")));
    EXPECT_EQ(run_text, eval_answer) << "--kv-window-at " << at;
  }
}

TEST(EvalCli, NiahResultsSchemaPlotsAndDeterminism) {
  TmpDir d("eval_niah");
  write_file(d / "hay.txt", story_text());
  Profile prof = stories_profile();
  prof.save(d / "prof.json");
  write_file(d / "needles.jsonl",
             "{\"needle\": \"Lily's ball was under the big green tree in the park.\", \"question\": \"Where was the "
             "ball?\", \"answer\": \"under the big green tree in the park\"}\n"
             "{\"needle\": \"Tom had a little red boat.\", \"question\": \"What did Tom have?\", \"answer\": \"a "
             "little red boat\"}\n");
  const std::vector<std::string> args{"eval", "niah", "-m", stories_path(), "--haystack", d / "hay.txt",
                                      "--needles", d / "needles.jsonl", "--lengths",
                                      "80,160", "--depths", "0.25,0.75", "--methods",
                                      "full,streamingllm,snapkv,compresskv", "--budgets", "32,64", "--kv-profile",
                                      d / "prof.json", "--max-new", "8"};
  auto with_out = [&](const std::string& o) {
    auto a = args;
    a.push_back("-o");
    a.push_back(o);
    return a;
  };
  auto r = run_cli(with_out(d / "a"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| FullKV |"), std::string::npos) << r.out;
  auto j = test::read_json(d / "a/results.json");
  EXPECT_EQ(j["task"], "niah");
  EXPECT_EQ(j["model"], stories_path());
  // FullKV once, then 3 methods x 2 budgets; 2 lengths x 2 depths x 2 needles each.
  ASSERT_EQ(j["rows"].size(), 7u * 8u);
  ASSERT_EQ(j["summary"].size(), 7u);
  for (auto& row : j["rows"]) {
    for (const char* k : {"method", "budget", "length", "depth", "case", "score", "tokens", "response"})
      ASSERT_TRUE(row.contains(k)) << k;
    EXPECT_GE(row["score"].get<double>(), 0.0);
    EXPECT_LE(row["score"].get<double>(), 100.0);
    EXPECT_GT(row["tokens"].get<int>(), row["length"].get<int>());
  }
  EXPECT_TRUE(j["summary"][0]["budget"].is_null());
  EXPECT_EQ(j["summary"][0]["method"], "full");
  EXPECT_EQ(j["summary"][1]["method"], "streamingllm");
  EXPECT_EQ(j["summary"][1]["budget"], 32);
  EXPECT_TRUE(std::filesystem::exists(d / "a/table.md"));
  if (eval::have_gnuplot()) {
    for (const char* f : {"niah_full.png", "niah_snapkv_32.png", "niah_compresskv_64.png", "niah_summary.png"})
      expect_png(d / "a/" + f);
  }
  // The same run again: the same numbers and answers.
  r = run_cli(with_out(d / "b"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(test::read_text(d / "a/results.json"), test::read_text(d / "b/results.json"));
}

// eval plot draws the figures of a results.json again (for runs on a machine
// without gnuplot): the same files, byte for byte.
TEST(EvalCli, PlotRedrawsTheFigures) {
  if (!eval::have_gnuplot()) GTEST_SKIP() << "no gnuplot (pngcairo)";
  TmpDir d("eval_plot");
  write_file(d / "hay.txt", story_text());
  write_file(d / "needles.jsonl", "{\"needle\": \"Tom had a little red boat.\", \"question\": \"What did Tom "
                                  "have?\", \"answer\": \"a little red boat\"}\n");
  auto r = run_cli({"eval", "niah", "-m", stories_path(), "--haystack", d / "hay.txt", "--needles", d / "needles.jsonl",
                    "--lengths", "80,120", "--depths", "0.3,0.7", "--methods", "snapkv", "--budgets", "32",
                    "--max-new", "4", "-o", d / "a"});
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_cli({"eval", "plot", "-i", d / "a/results.json", "-o", d / "b"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* f : {"niah_summary.png", "niah_full.png", "niah_snapkv_32.png"})
    EXPECT_EQ(test::read_text(d / (std::string("b/") + f)), test::read_text(d / (std::string("a/") + f))) << f;
  write_file(d / "bad.json", "{\"task\": \"niah\"}");
  r = run_cli({"eval", "plot", "-i", d / "bad.json"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("bad.json"), std::string::npos) << r.err;
}

TEST(EvalCli, RulerAndKld) {
  TmpDir d("eval_rk");
  write_file(d / "hay.txt", story_text());
  auto r = run_cli({"eval", "ruler", "-m", stories_path(), "--haystack", d / "hay.txt", "--tasks",
                    "niah_single_1,niah_single_2,fwe", "--lengths", "400", "--samples", "2", "--seed", "3", "--methods",
                    "snapkv", "--budgets", "32", "--max-new", "6", "--no-plots", "-o", d / "r"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = test::read_json(d / "r/results.json");
  EXPECT_EQ(j["task"], "ruler");
  ASSERT_EQ(j["rows"].size(), 2u * 3u * 2u);
  EXPECT_EQ(j["rows"][0]["case"], "niah_single_1:0");
  EXPECT_EQ(j["rows"][2]["case"], "niah_single_2:0");
  ASSERT_EQ(j["summary"].size(), 2u);
  EXPECT_NE(test::read_text(d / "r/table.md").find("## fwe"), std::string::npos);
  // Another seed, other prompts.
  r = run_cli({"eval", "ruler", "-m", stories_path(), "--haystack", d / "hay.txt", "--tasks", "niah_single_1",
               "--lengths", "400", "--samples", "2", "--seed", "4", "--methods", "snapkv", "--budgets", "32",
               "--max-new", "6", "--no-plots", "-o", d / "r2"});
  ASSERT_EQ(r.status, 0) << r.err;

  write_file(d / "text.txt", story_text());
  r = run_cli({"eval", "kld", "-m", stories_path(), "-f", d / "text.txt", "--n-ctx", "200", "--n-eval", "32",
               "--methods", "streamingllm,snapkv", "--budgets", "32,64", "-o", d / "k"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto k = test::read_json(d / "k/results.json");
  EXPECT_EQ(k["task"], "kld");
  ASSERT_EQ(k["rows"].size(), 5u);
  ASSERT_EQ(k["summary"].size(), 5u);
  EXPECT_DOUBLE_EQ(k["summary"][0]["kl_mean"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(k["summary"][0]["top1_agreement"].get<double>(), 1.0);
  for (auto& s : k["summary"]) {
    for (const char* f : {"kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement"}) ASSERT_TRUE(s.contains(f)) << f;
    EXPECT_LE(s["kl_median"].get<double>(), s["kl_max"].get<double>());
    EXPECT_GE(s["kl_mean"].get<double>(), 0.0);
  }
  EXPECT_GT(k["summary"][1]["kl_mean"].get<double>(), 0.0);  // StreamingLLM at 32 of 200 tokens drifts
  if (eval::have_gnuplot()) expect_png(d / "k/kld_summary.png");
}

TEST(EvalCli, BadInput) {
  TmpDir d("eval_bad");
  write_file(d / "hay.txt", story_text());
  auto niah = [&](std::vector<std::string> extra) {
    std::vector<std::string> a{"eval", "niah", "-m", stories_path(), "--haystack", d / "hay.txt", "--budgets", "32",
                               "--no-plots", "-o", d / "out"};
    for (const char* o : {"--lengths", "--depths", "--methods"})
      if (std::find(extra.begin(), extra.end(), o) == extra.end())
        a.insert(a.end(), {o, std::string(o) == "--lengths" ? "80" : std::string(o) == "--depths" ? "0.5" : "snapkv"});
    a.insert(a.end(), extra.begin(), extra.end());
    return run_cli(a);
  };
  auto expect_error = [](const test::RunResult& r, std::vector<std::string> parts) {
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    for (auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << "'" << p << "' not in: " << r.err;
  };
  expect_error(niah({"--methods", "snapkv,nosuch"}), {"--methods", "nosuch"});
  expect_error(niah({"--lengths", "600"}), {"--lengths", "context"});
  write_file(d / "needles.jsonl", "{\"needle\": \"The cat is blue.\", \"question\": \"What colour?\", \"answer\": \"blue\"}\n"
                                  "{\"needle\": \"The dog is red.\", \"question\": \"What colour?\", \"answer\": \"green\"}\n");
  expect_error(niah({"--needles", d / "needles.jsonl"}), {"needles.jsonl:2", "not inside"});
  std::filesystem::create_directory(d / "empty");
  expect_error(run_cli({"eval", "niah", "-m", stories_path(), "--haystack", d / "empty"}), {"empty", "empty haystack"});
  expect_error(niah({"--depths", "1.5"}), {"--depths"});
  expect_error(niah({"--kv-window-at", "start"}), {"--kv-window-at", "start", "end or user"});
  expect_error(run_cli({"run", "-m", stories_path(), "-p", "Tom", "--kv-method", "snapkv", "--kv-budget", "16",
                        "--kv-window-at", "middle"}),
               {"--kv-window-at", "middle"});
  expect_error(run_cli({"bench", "-m", stories_path(), "-p", "32", "-n", "0", "--kv-method", "snapkv", "--kv-budget",
                        "16", "--kv-window-at", "USER"}),
               {"--kv-window-at", "USER"});
  expect_error(niah({"--methods", "compresskv"}), {"compresskv", "profile"});
  // A profile of another model.
  Profile p = stories_profile();
  p.n_layers = 3;
  p.srh_ranking.resize(3);
  p.layer_scores.clear();
  p.save(d / "three.json");
  expect_error(niah({"--methods", "compresskv", "--kv-profile", d / "three.json"}), {"three.json", "3 layers"});
  expect_error(run_cli({"eval", "ruler", "-m", stories_path(), "--haystack", d / "hay.txt", "--tasks", "qa_1"}),
               {"--tasks", "qa_1"});
  expect_error(run_cli({"eval", "kld", "-m", stories_path(), "-f", d / "hay.txt", "--n-ctx", "400", "--n-eval", "256"}),
               {"--n-ctx", "exceeds"});
  write_file(d / "short.txt", "Tom ran.");
  expect_error(run_cli({"eval", "kld", "-m", stories_path(), "-f", d / "short.txt", "--n-ctx", "100"}),
               {"short.txt", "tokens"});
  expect_error(run_cli({"identify-heads", "-m", stories_path(), "--haystack", d / "hay.txt", "--lengths", "1000"}),
               {"--lengths", "context"});
  expect_error(run_cli({"identify-heads", "-m", stories_path(), "--haystack", d / "empty"}), {"empty haystack"});
}

// --kv-method compresskv without --kv-profile takes the shipped profile that
// matches the model (profiles/), and refuses when none does.
TEST(ShippedProfile, FoundForSmolLM2RefusedForOthers) {
  auto r = run_cli({"run", "-m", stories_path(), "-p", "Once", "-n", "2", "--temp", "0", "--kv-method", "compresskv",
                    "--kv-budget", "64"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--kv-profile"), std::string::npos) << r.err;
  CKV_REQUIRE_SHARED();
  const std::string smollm =
      test::shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(test::source_dir() + "/profiles/smollm2-135m-instruct.json"))
    GTEST_SKIP() << "no shipped SmolLM2 profile";
  r = run_cli({"run", "-m", smollm, "-p", "The capital of France is", "-n", "2", "--temp", "0", "--kv-method",
               "compresskv", "--kv-budget", "64"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("using the shipped profile"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("smollm2-135m-instruct.json"), std::string::npos) << r.err;
  const Profile p = Profile::load(test::source_dir() + "/profiles/smollm2-135m-instruct.json");
  EXPECT_EQ(p.n_layers, 30);
  EXPECT_EQ(p.layer_scores.size(), 30u);
  EXPECT_TRUE(p.provenance.contains("identify_heads"));
  EXPECT_TRUE(p.provenance.contains("profile_layers"));
}
