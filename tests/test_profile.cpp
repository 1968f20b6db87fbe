// Model profiles (src/profile/profile.cpp, DESIGN.md 2.6): round trip, strict
// validation with errors naming file and field, the importer of the CompressKV
// authors' published files, and the model shape check.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <numeric>

#include "profile/profile.h"
#include "test_util.h"
#include "util/error.h"

using namespace ckv;
using json = nlohmann::json;

namespace {

// Files of this test program, in one directory removed at exit.
std::string tmp_path(const std::string& name) {
  static const test::TmpDir dir("profile");
  return dir / name;
}

std::string write(const std::string& name, const std::string& text) {
  std::string p = tmp_path(name);
  std::ofstream(p) << text;
  return p;
}

using test::error_of;

Profile small_profile() {
  Profile p;
  p.arch = "llama";
  p.n_layers = 2;
  p.n_heads = 4;
  p.n_kv_heads = 2;
  p.head_dim = 16;
  p.fingerprint = "abc123";
  p.srh_ranking = {{3, 1, 0, 2}, {0, 1, 2, 3}};
  p.srh_scores = {{0.9, 0.5, 0.25, 0.0}, {1.5, 1.0, 0.5, 0.125}};
  p.retrieval_ranking = {{1, 3, 0, 2}, {2, 0, 1, 3}};
  p.layer_scores = {0.25, 0.75};
  p.provenance = {{"identify_heads", {{"lengths", {1000, 2000}}}}, {"engine", "test"}};
  return p;
}

json small_json() { return small_profile().to_json(); }

}  // namespace

TEST(Profile, RoundTrip) {
  Profile p = small_profile();
  std::string path = tmp_path("rt.json");
  p.save(path);
  Profile q = Profile::load(path);
  EXPECT_EQ(q.version, 1);
  EXPECT_EQ(q.arch, p.arch);
  EXPECT_EQ(q.n_layers, p.n_layers);
  EXPECT_EQ(q.n_heads, p.n_heads);
  EXPECT_EQ(q.n_kv_heads, p.n_kv_heads);
  EXPECT_EQ(q.head_dim, p.head_dim);
  EXPECT_EQ(q.fingerprint, p.fingerprint);
  EXPECT_EQ(q.srh_ranking, p.srh_ranking);
  EXPECT_EQ(q.srh_scores, p.srh_scores);
  EXPECT_EQ(q.retrieval_ranking, p.retrieval_ranking);
  EXPECT_EQ(q.layer_scores, p.layer_scores);
  EXPECT_EQ(q.provenance, p.provenance);
  EXPECT_EQ(q.source, path);
  EXPECT_EQ(q.to_json(), p.to_json());
  // The layout DESIGN.md 2.6 / the brief fix.
  json j = p.to_json();
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["model"]["n_kv_heads"], 2);
  EXPECT_EQ(j["srh"]["ranking"][0][0], 3);
  EXPECT_EQ(j["retrieval"]["ranking"][1][0], 2);

  // Optional parts may be empty.
  Profile bare = small_profile();
  bare.srh_scores.clear();
  bare.retrieval_ranking.clear();
  bare.layer_scores.clear();
  Profile r = Profile::from_json(bare.to_json(), "bare");
  EXPECT_TRUE(r.layer_scores.empty());
  EXPECT_TRUE(r.srh_scores.empty());
  EXPECT_TRUE(r.retrieval_ranking.empty());
}

TEST(Profile, LayerScoresRenormalised) {
  json j = small_json();
  j["layer_scores"] = {1.0, 3.0};
  Profile p = Profile::from_json(j, "x.json");
  EXPECT_DOUBLE_EQ(p.layer_scores[0], 0.25);
  EXPECT_DOUBLE_EQ(p.layer_scores[1], 0.75);
}

TEST(Profile, ValidationNamesFileAndField) {
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    const char* field;
  };
  std::vector<Case> cases = {
      {"version", [](json& j) { j["version"] = 2; }, "\"version\""},
      {"no version", [](json& j) { j.erase("version"); }, "\"version\""},
      {"no model", [](json& j) { j.erase("model"); }, "\"model\""},
      {"layers", [](json& j) { j["model"]["n_layers"] = "two"; }, "\"model.n_layers\""},
      {"kv heads", [](json& j) { j["model"]["n_kv_heads"] = 3; }, "\"model.n_kv_heads\""},
      {"zero dim", [](json& j) { j["model"]["head_dim"] = 0; }, "\"model.head_dim\""},
      {"rank rows", [](json& j) { j["srh"]["ranking"].erase(1); }, "\"srh.ranking\""},
      {"rank range", [](json& j) { j["srh"]["ranking"][1][2] = 4; }, "\"srh.ranking[1][2]\""},
      {"rank dup", [](json& j) { j["srh"]["ranking"][0][3] = 3; }, "\"srh.ranking[0][3]\""},
      {"rank type", [](json& j) { j["srh"]["ranking"][0][1] = 1.5; }, "\"srh.ranking[0][1]\""},
      {"rank long", [](json& j) { j["srh"]["ranking"][0].push_back(0); }, "\"srh.ranking[0]\""},
      {"scores len", [](json& j) { j["srh"]["scores"][1].erase(0); }, "\"srh.scores[1]\""},
      {"retrieval", [](json& j) { j["retrieval"]["ranking"][0][0] = -1; }, "\"retrieval.ranking[0][0]\""},
      {"ls count", [](json& j) { j["layer_scores"] = {1.0}; }, "\"layer_scores\""},
      {"ls negative", [](json& j) { j["layer_scores"] = {1.2, -0.2}; }, "\"layer_scores[1]\""},
      {"ls type", [](json& j) { j["layer_scores"] = {0.5, "x"}; }, "\"layer_scores[1]\""},
      {"provenance", [](json& j) { j["provenance"] = 3; }, "\"provenance\""},
  };
  for (auto& c : cases) {
    json j = small_json();
    c.edit(j);
    std::string path = write("bad.json", j.dump());
    std::string e = error_of([&] { Profile::load(path); });
    EXPECT_NE(e.find(path), std::string::npos) << c.what << ": " << e;
    EXPECT_NE(e.find(c.field), std::string::npos) << c.what << ": " << e;
  }
  // A number JSON cannot hold (found by fuzz_profile): nlohmann throws
  // out_of_range, not parse_error; still a bad file, named.
  std::string huge = write("huge.json", "{\"layer_scores\": [1e400]}");
  EXPECT_NE(error_of([&] { Profile::load(huge); }).find(huge), std::string::npos);
  std::string path = write("broken.json", "{\"version\": 1,");
  EXPECT_NE(error_of([&] { Profile::load(path); }).find(path), std::string::npos);
  EXPECT_NE(error_of([] { Profile::load("/nonexistent/p.json"); }).find("/nonexistent/p.json"), std::string::npos);
}

TEST(Profile, CheckModel) {
  Profile p = small_profile();
  p.source = "p.json";
  EXPECT_EQ(p.check_model("llama", 2, 4, 2, 16, "abc123"), "");
  EXPECT_EQ(p.check_model("llama", 2, 4, 2, 16, ""), "");
  std::string w = p.check_model("llama", 2, 4, 2, 16, "other");
  EXPECT_NE(w.find("abc123"), std::string::npos) << w;
  EXPECT_NE(w.find("other"), std::string::npos) << w;
  std::string e = error_of([&] { p.check_model("llama", 30, 9, 3, 64, "abc123"); });
  EXPECT_EQ(e,
            "profile p.json is for llama 2 layers x 4 heads (2 KV heads, head dim 16), model is llama 30 layers x 9 "
            "heads (3 KV heads, head dim 64)");
  EXPECT_NE(error_of([&] { p.check_model("llama", 2, 4, 1, 16, ""); }), "");
  EXPECT_NE(error_of([&] { p.check_model("llama", 2, 4, 2, 8, ""); }), "");
}

TEST(Profile, ImportPublishedLlama) {
  CKV_REQUIRE_SHARED();
  const std::string dir = test::shared_dir() + "/data/compresskv-published/";
  const std::string heads = dir + "Llama-3.1-8B-Instruct_head_idx.json";
  const std::string scores = dir + "Llama-3.1-8B-Instruct_layer_score.json";
  Profile p = import_published_profile(heads, scores, "llama", 32, 32, 8, 128, "fp");
  EXPECT_EQ(p.n_layers, 32);
  EXPECT_EQ(p.check_model("llama", 32, 32, 8, 128, "fp"), "");
  auto hj = test::read_json(heads);
  auto sj = test::read_json(scores);
  ASSERT_EQ(p.srh_ranking.size(), 32u);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(p.srh_ranking[l], hj[std::to_string(l)].get<std::vector<int>>());
  auto avg = sj["avg_score"].get<std::vector<double>>();
  double s = std::accumulate(avg.begin(), avg.end(), 0.0);
  ASSERT_EQ(p.layer_scores.size(), 32u);
  for (int l = 0; l < 32; ++l) EXPECT_NEAR(p.layer_scores[l], avg[l] / s, 1e-15);
  // Golden layer_budgets.json was computed from this very vector.
  auto g = test::read_json(test::shared_dir() + "/golden/compresskv/layer_budgets.json");
  auto gl = g["cases"][0]["layer_score"].get<std::vector<double>>();
  for (int l = 0; l < 32; ++l) EXPECT_NEAR(p.layer_scores[l], gl[l], 1e-12);
  // Round trip through our format.
  std::string path = tmp_path("llama.json");
  p.save(path);
  Profile q = Profile::load(path);
  EXPECT_EQ(q.srh_ranking, p.srh_ranking);
  EXPECT_EQ(q.layer_scores, p.layer_scores);
  EXPECT_TRUE(q.provenance.contains("heads_file"));
  // Without a scores file: rankings only, uniform budgets.
  Profile r = import_published_profile(heads, "", "llama", 32, 32, 8, 128, "fp");
  EXPECT_TRUE(r.layer_scores.empty());
  // Mistral's files import the same way.
  Profile m = import_published_profile(dir + "Mistral-7B-Instruct-v0.3_head_idx.json",
                                       dir + "Mistral-7B-Instruct-v0.3_layer_score.json", "llama", 32, 32, 8, 128, "");
  EXPECT_EQ(m.srh_ranking.size(), 32u);
}

TEST(Profile, ImportMismatchAndMalformed) {
  CKV_REQUIRE_SHARED();
  const std::string dir = test::shared_dir() + "/data/compresskv-published/";
  const std::string heads = dir + "Llama-3.1-8B-Instruct_head_idx.json";
  const std::string scores = dir + "Llama-3.1-8B-Instruct_layer_score.json";
  // Layer count against the model: names the file and both counts.
  std::string e = error_of([&] { import_published_profile(heads, scores, "llama", 30, 32, 8, 128, ""); });
  EXPECT_NE(e.find(heads), std::string::npos) << e;
  EXPECT_NE(e.find("32"), std::string::npos) << e;
  EXPECT_NE(e.find("30"), std::string::npos) << e;
  // Head indices beyond the model's heads.
  e = error_of([&] { import_published_profile(heads, scores, "llama", 32, 9, 3, 64, ""); });
  EXPECT_NE(e.find(heads), std::string::npos) << e;

  json hj = test::read_json(heads);
  json sj = test::read_json(scores);
  auto expect_error = [&](const json& h, const json& s, const std::string& which, const std::string& field) {
    std::string hp = write("h.json", h.dump()), sp = write("s.json", s.dump());
    std::string e = error_of([&] { import_published_profile(hp, sp, "llama", 32, 32, 8, 128, ""); });
    EXPECT_NE(e.find(which == "heads" ? hp : sp), std::string::npos) << field << ": " << e;
    EXPECT_NE(e.find(field), std::string::npos) << field << ": " << e;
  };
  {  // missing layer key: 31 layers
    json h = hj;
    h.erase("7");
    expect_error(h, sj, "heads", "31");
  }
  {  // a key replaced: still 32 keys, but "7" missing
    json h = hj;
    h["32"] = h["7"];
    h.erase("7");
    expect_error(h, sj, "heads", "\"7\"");
  }
  {  // non-integer entries
    json h = hj;
    h["3"][2] = "x";
    expect_error(h, sj, "heads", "\"3[2]\"");
    h = hj;
    h["4"][0] = 2.5;
    expect_error(h, sj, "heads", "\"4[0]\"");
  }
  {  // a non-numeric key
    json h = hj;
    h["layer0"] = h["0"];
    expect_error(h, sj, "heads", "\"layer0\"");
  }
  {  // a row that is not an array
    json h = hj;
    h["5"] = 3;
    expect_error(h, sj, "heads", "\"5\"");
  }
  {  // wrong count of layer scores
    json s = sj;
    s["avg_score"].erase(0);
    expect_error(hj, s, "scores", "\"avg_score\"");
  }
  {  // no avg_score
    json s = sj;
    s.erase("avg_score");
    expect_error(hj, s, "scores", "\"avg_score\"");
  }
  {  // negative score
    json s = sj;
    s["avg_score"][4] = -0.1;
    expect_error(hj, s, "scores", "\"avg_score[4]\"");
  }
  {  // not JSON
    std::string hp = write("h.json", "{\"0\": [1, 2");
    std::string e = error_of([&] { import_published_profile(hp, scores, "llama", 32, 32, 8, 128, ""); });
    EXPECT_NE(e.find(hp), std::string::npos) << e;
  }
}
