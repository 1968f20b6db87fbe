// Evaluation building blocks (src/eval): ROUGE-1 and string_match_all on
// hand-computed values, the answer-span finder, needle placement and the
// probe prompts of DESIGN.md 2.4, needle and haystack files (errors name the
// file and line), the greedy answer's ending rule, KL statistics, RULER task
// generation (determinism, lengths, references), the grid's cells and the
// results.json schema.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "eval/generate.h"
#include "eval/grid.h"
#include "eval/haystack.h"
#include "eval/kld.h"
#include "eval/needles.h"
#include "eval/niah.h"
#include "eval/niah_probe.h"
#include "eval/report.h"
#include "eval/results.h"
#include "eval/rouge.h"
#include "eval/ruler.h"
#include "eval/string_match.h"
#include "model/gguf.h"
#include "test_util.h"
#include "tokenizer/gguf_vocab.h"

using namespace ckv;
using namespace ckv::eval;
using ckv::test::TmpDir;
using ckv::test::write_file;

namespace {

std::string smollm_path() {
  return test::shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}

const Tokenizer& smollm() {
  static std::unique_ptr<Tokenizer> tok = [] {
    GGUFFile f(smollm_path());
    return make_tokenizer(read_gguf_tokenizer(f));
  }();
  return *tok;
}

const Tokenizer& tok512() {
  static std::unique_ptr<Tokenizer> tok =
      make_tokenizer(read_llama2c_tokenizer(test::source_dir() + "/models/stories260k/tok512.bin", 512));
  return *tok;
}

ChatTemplate chatml() {
  ChatTemplate t;
  t.family = "chatml";
  t.default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
  return t;
}

// A small story haystack the tiny tokenizer knows words of.
std::string story_text() {
  std::string s;
  const char* sents[] = {"Once upon a time there was a little girl named Lily. ", "She liked to play in the park. ",
                         "One day she saw a big red ball. ", "The ball was very shiny and round. ",
                         "Lily ran to the ball and picked it up. ", "Her mom smiled and said it was time to go home. "};
  for (int i = 0; i < 40; ++i) s += sents[i % 6];
  return s;
}

}  // namespace

// ---- ROUGE-1 and string_match_all

TEST(Rouge, Words) {
  EXPECT_EQ(rouge_words("Hello, World! 42abc x-ray"), (std::vector<std::string>{"hello", "world", "42abc", "x", "ray"}));
  EXPECT_TRUE(rouge_words(" ,.;! ").empty());
  EXPECT_EQ(rouge_words("caf\xc3\xa9 ok"), (std::vector<std::string>{"caf", "ok"}));  // non-ASCII separates
}

TEST(Rouge, RecallHandComputed) {
  // answer words: eat, a, sandwich, in, dolores, park (6); response has eat, sandwich, park.
  EXPECT_DOUBLE_EQ(rouge1_recall("eat a sandwich in Dolores Park", "You should EAT a sandwich near the park."),
                   4.0 / 6.0);  // eat, a, sandwich, park
  // Each response word matches at most once: "a a b" against "a b" is 2 of 3.
  EXPECT_DOUBLE_EQ(rouge1_recall("a a b", "b a"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(rouge1_recall("a a b", "a a a b"), 1.0);
  EXPECT_DOUBLE_EQ(rouge1_recall("the 7 keys", "The 7 Keys!"), 1.0);
  EXPECT_DOUBLE_EQ(rouge1_recall("", "anything"), 0.0);
  EXPECT_DOUBLE_EQ(rouge1_recall("answer", ""), 0.0);
}

TEST(StringMatchAll, HandComputed) {
  EXPECT_NEAR(string_match_all("The numbers are 1234567 and ABC-def.", {"1234567", "abc-DEF", "7654321"}),
              200.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(string_match_all("nothing", {"x"}), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("x y", {"X", "Y"}), 100.0);
  EXPECT_DOUBLE_EQ(string_match_all("x", {}), 0.0);
}

// ---- answer span (DESIGN.md 2.4 step 4)

TEST(AnswerSpan, FirstWindowAboveNinetyPercent) {
  EXPECT_EQ(answer_span({5, 1, 2, 3, 4, 9}, {1, 2, 3})->a, 1);
  EXPECT_EQ(answer_span({5, 1, 2, 3, 4, 9}, {1, 2, 3})->b, 4);
  // Order inside the window does not matter (a token set).
  EXPECT_EQ(answer_span({7, 3, 1, 2, 8}, {1, 2, 3})->a, 1);
  // 2 of 3 distinct tokens (67%) is not enough; the later full match is found.
  auto s = answer_span({1, 2, 6, 0, 1, 2, 3}, {1, 2, 3});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->a, 4);
  EXPECT_EQ(s->b, 7);
  // Exactly 90% (9 of 10 distinct) is not more than 90%; 10 of 11 is.
  std::vector<int> ten{10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  std::vector<int> p9{99, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  EXPECT_FALSE(answer_span(p9, ten));
  std::vector<int> eleven{10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  std::vector<int> p10{99, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  ASSERT_TRUE(answer_span(p10, eleven));
  EXPECT_EQ(answer_span(p10, eleven)->a, 0);
  // Repeated answer tokens count once in the set: {4, 4, 5} needs both 4 and 5.
  EXPECT_EQ(answer_span({4, 4, 4, 5, 4}, {4, 4, 5})->a, 1);
  EXPECT_FALSE(answer_span({1, 2}, {1, 2, 3}));
  EXPECT_FALSE(answer_span({1, 2, 3}, {}));
}

// ---- needle placement and prompts (DESIGN.md 2.4 steps 2-3)

TEST(NeedlePlacement, CutsAfterTheLastPeriodSpace) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& tok = smollm();
  const std::vector<int> hay = tok.encode("The cat sat. The dog ran. The end.", false);
  ASSERT_EQ(hay.size(), 11u) << "the hand-checked cuts below assume one token per word and period";
  const int N = 11;
  // d = 0: the needle first.
  EXPECT_EQ(place_needle(tok, hay, N, 0.0, "NEEDLE."), "NEEDLE. The cat sat. The dog ran. The end.");
  // d = 0.5: c = 5, head "The cat sat. The" -> cut after "sat."; "The" moves to the rest.
  EXPECT_EQ(place_needle(tok, hay, N, 0.5, "NEEDLE."), "The cat sat. NEEDLE. The dog ran. The end.");
  // d = 1: c = N, the last ". " is after "ran.".
  EXPECT_EQ(place_needle(tok, hay, N, 1.0, "NEEDLE."), "The cat sat. The dog ran. NEEDLE. The end.");
  // d = 0.1: c = 1, head "The" has no ". ": the needle goes right after it.
  EXPECT_EQ(place_needle(tok, hay, N, 0.1, "NEEDLE."), "The NEEDLE.  cat sat. The dog ran. The end.");
  // Only the first N tokens: N = 8 ends at "ran."; c = 4, head "The cat sat." has no ". ", so no cut.
  EXPECT_EQ(place_needle(tok, hay, 8, 0.5, "X"), "The cat sat. X  The dog ran.");
  EXPECT_ERROR(place_needle(tok, hay, 12, 0.5, "X"), "length 12");
  EXPECT_ERROR(place_needle(tok, hay, 8, 1.5, "X"), "depth");
}

TEST(NeedlePlacement, SpmTokenizer) {
  const Tokenizer& tok = tok512();
  const std::vector<int> hay = tok.encode("Tom ran. Sue sat. Bob hid.", false);
  const int N = static_cast<int>(hay.size());
  const std::string ctx = place_needle(tok, hay, N, 1.0, "NEEDLE.");
  EXPECT_EQ(ctx, "Tom ran. Sue sat. NEEDLE. Bob hid.");
}

TEST(NiahPrompt, PlainAndChat) {
  EXPECT_EQ(niah_prompt("CTX", "Who?", nullptr), "CTX\nBased on the content of the book, Question: Who?\nAnswer:");
  const ChatTemplate t = chatml();
  EXPECT_EQ(niah_prompt("CTX", "Who?", &t),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\n<book>CTX</book>\nBased on the content of the book, Question: Who?\nAnswer:<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(NiahProbe, PromptTokensAndSpanOnSmolLM2) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& tok = smollm();
  const Haystack hay = Haystack::load(test::shared_dir() + "/data/pg_essays", tok);
  const ChatTemplate t = chatml();
  const Needle& n = evaluation_needles()[0];
  NiahProbe p = make_niah_probe(tok, hay.tokens, n, 0, 300, 0.5, &t);
  EXPECT_EQ(p.tokens, tok.encode(p.prompt, true));
  // The chat special tokens are single tokens of the prompt.
  EXPECT_EQ(p.tokens[0], tok.find("<|im_start|>"));
  ASSERT_TRUE(p.span);
  // The span's text is the answer, whatever its first token's leading space.
  std::vector<int> span(p.tokens.begin() + p.span->a, p.tokens.begin() + p.span->b);
  EXPECT_NE(tok.decode(span).find(n.answer.substr(3)), std::string::npos) << tok.decode(span);
  EXPECT_GT(p.tokens.size(), 300u);
}

// --kv-window-at user needs the template suffix's token count: the tokens
// after "Answer:" -- <|im_end|> \n <|im_start|> assistant \n -- for a chat
// probe (a RULER sample adds its answer prefix), none for a plain one.
TEST(NiahProbe, UserSuffixIsTheTemplateTail) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& tok = smollm();
  const Haystack hay = Haystack::load(test::shared_dir() + "/data/pg_essays", tok);
  const ChatTemplate t = chatml();
  NiahProbe p = make_niah_probe(tok, hay.tokens, evaluation_needles()[0], 0, 300, 0.5, &t);
  const std::vector<int> tail(p.tokens.end() - p.user_suffix, p.tokens.end());
  EXPECT_EQ(tok.decode(tail), "<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<int> before(p.tokens.end() - p.user_suffix - 2, p.tokens.end() - p.user_suffix);
  EXPECT_EQ(tok.decode(before), "Answer:") << "the window ends with the user's last tokens";
  EXPECT_EQ(make_niah_probe(tok, hay.tokens, evaluation_needles()[0], 0, 300, 0.5, nullptr).user_suffix, 0);
  size_t ue = 0;
  const std::string text = niah_prompt("C", "Q?", nullptr, &ue);
  EXPECT_EQ(ue, text.size()) << "plain: the user part is the whole prompt";
  RulerSample r = ruler_sample(tok, hay, "niah_single_1", 600, 0, 7, &t);
  const std::vector<int> rtail(r.tokens.end() - r.user_suffix, r.tokens.end());
  EXPECT_EQ(tok.decode(rtail).rfind("<|im_end|>\n<|im_start|>assistant\n", 0), 0u) << tok.decode(rtail);
  EXPECT_GT(r.user_suffix, 5) << "the answer prefix follows the template suffix";
  EXPECT_EQ(ruler_sample(tok, hay, "niah_single_1", 600, 0, 7, nullptr).user_suffix, 0);
  // Token boundaries: a token that straddles the boundary belongs to the user part.
  const std::vector<int> ids = tok.encode("abc def", false);
  EXPECT_EQ(tail_tokens(tok, ids, 0), 0);
  EXPECT_EQ(tail_tokens(tok, ids, 4), 1);  // " def"
  EXPECT_EQ(tail_tokens(tok, ids, 3), 0);  // inside " def"
  EXPECT_EQ(tail_tokens(tok, ids, 100), static_cast<int>(ids.size()));
}

// Every built-in needle finds its answer span, on both tokenizers, at several depths.
TEST(Needles, BuiltInSetsAreDisjointAndFindTheirSpans) {
  const auto& cal = calibration_needles();
  const auto& ev = evaluation_needles();
  EXPECT_GE(cal.size(), 6u);
  EXPECT_GE(ev.size(), 6u);
  std::set<std::string> seen;
  for (auto& n : cal) seen.insert(n.needle), seen.insert(n.question);
  for (auto& n : ev) {
    EXPECT_FALSE(seen.count(n.needle)) << n.needle;
    EXPECT_FALSE(seen.count(n.question)) << n.question;
  }
  std::vector<const Tokenizer*> toks{&tok512()};
  if (test::have_shared()) toks.push_back(&smollm());
  const Haystack hay_small = [&] {
    TmpDir d("needles");
    write_file(d / "h.txt", story_text());
    return Haystack::load(d / "h.txt", tok512());
  }();
  for (const Tokenizer* tok : toks) {
    const std::vector<int> hay = tok->encode(story_text(), false);
    for (const auto* set : {&cal, &ev})
      for (size_t i = 0; i < set->size(); ++i)
        for (double d : {0.0, 0.5, 1.0}) {
          NiahProbe p = make_niah_probe(*tok, hay, (*set)[i], static_cast<int>(i), 150, d, nullptr);
          EXPECT_TRUE(p.span) << (*set)[i].needle << " at depth " << d;
        }
  }
  // The needle files round-trip through the reader.
  TmpDir d("needles_rt");
  write_file(d / "ev.jsonl", needles_jsonl(ev));
  auto back = read_needles(d / "ev.jsonl");
  ASSERT_EQ(back.size(), ev.size());
  EXPECT_EQ(back[2].answer, ev[2].answer);
  (void)hay_small;
}

TEST(Needles, FileErrorsNameFileAndLine) {
  TmpDir d("needles_bad");
  write_file(d / "ok.jsonl",
             "{\"needle\": \"The key is under the mat.\", \"question\": \"Where is the key?\", \"real_needle\": \"under "
             "the mat\", \"tag\": 1}\n\n{\"needle\": \"A B C.\", \"question\": \"Q?\", \"answer\": \"b c\"}\n");
  auto ok = read_needles(d / "ok.jsonl");
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok[0].answer, "under the mat");
  EXPECT_EQ(ok[1].answer, "b c");  // compared ignoring case

  write_file(d / "notin.jsonl",
             "{\"needle\": \"x.\", \"question\": \"q\", \"answer\": \"x\"}\n"
             "{\"needle\": \"The key is under the mat.\", \"question\": \"Where?\", \"answer\": \"in the box\"}\n");
  EXPECT_ERROR(read_needles(d / "notin.jsonl"), d / "notin.jsonl:2", "not inside the needle", "in the box");
  write_file(d / "missing.jsonl", "{\"needle\": \"a\", \"answer\": \"a\"}\n");
  EXPECT_ERROR(read_needles(d / "missing.jsonl"), "missing.jsonl:1", "question");
  write_file(d / "json.jsonl", "{\"needle\": \"a\"\n");
  EXPECT_ERROR(read_needles(d / "json.jsonl"), "json.jsonl:1", "not valid JSON");
  write_file(d / "type.jsonl", "{\"needle\": \"a\", \"question\": \"q\", \"answer\": 3}\n");
  EXPECT_ERROR(read_needles(d / "type.jsonl"), "type.jsonl:1", "\"answer\"", "string");
  write_file(d / "empty.jsonl", "\n\n");
  EXPECT_ERROR(read_needles(d / "empty.jsonl"), "empty.jsonl", "no needle");
  EXPECT_ERROR(read_needles(d / "absent.jsonl"), "absent.jsonl", "cannot read");
}

// ---- haystack

TEST(Haystack, NameOrderSkipsLicenceAndRejectsEmpty) {
  TmpDir d("hay");
  std::filesystem::create_directory(d / "h");
  write_file(d / "h/b.txt", "Second.");
  write_file(d / "h/a.txt", "First.");
  write_file(d / "h/LICENSE.txt", "MIT");
  write_file(d / "h/c.md", "not text");
  HaystackText t = read_haystack(d / "h");
  EXPECT_EQ(t.text, "First.Second.");
  EXPECT_EQ(t.files.size(), 2u);

  std::filesystem::create_directory(d / "empty");
  EXPECT_ERROR(read_haystack(d / "empty"), d / "empty", "empty haystack");
  std::filesystem::create_directory(d / "lic");
  write_file(d / "lic/LICENSE.txt", "MIT");
  EXPECT_ERROR(read_haystack(d / "lic"), "empty haystack");
  write_file(d / "blank.txt", " \n\t\n");
  EXPECT_ERROR(read_haystack(d / "blank.txt"), d / "blank.txt", "empty haystack");
  EXPECT_ERROR(read_haystack(d / "nope"), d / "nope", "no such haystack");

  // A short text is read again until it is long enough.
  write_file(d / "short.txt", "Tom ran home. ");
  Haystack h = Haystack::load(d / "short.txt", tok512(), 100);
  EXPECT_GE(h.tokens.size(), 100u);
  EXPECT_GT(h.repeats, 1);
}

// ---- greedy answers

TEST(Generate, NewlineEndsOnlyAfterText) {
  std::string a = "\n \nParis is nice.\nMore";
  EXPECT_TRUE(answer_ends(a));
  EXPECT_EQ(a, "\n \nParis is nice.");
  std::string b = "  \n\n";
  EXPECT_FALSE(answer_ends(b));
  std::string c = "no newline yet";
  EXPECT_FALSE(answer_ends(c));
}

// ---- KL statistics

TEST(Kld, HandComputed) {
  const float ref[2] = {0.0f, 0.0f};                      // p = (1/2, 1/2)
  const float x[2] = {static_cast<float>(std::log(3.0)), 0.0f};  // q = (3/4, 1/4)
  EXPECT_NEAR(kl_divergence(ref, x, 2), 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25), 1e-7);
  EXPECT_NEAR(kl_divergence(ref, ref, 2), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_NEAR(quantile({1, 2, 3, 4}, 0.99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(quantile({5}, 0.99), 5.0);
  KlStats s = kl_stats({0.1, 0.3, 0.2, 1.0}, 3);
  EXPECT_NEAR(s.mean, 0.4, 1e-12);
  EXPECT_NEAR(s.median, 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(s.max, 1.0);
  EXPECT_DOUBLE_EQ(s.top1, 0.75);
  auto j = s.to_json();
  for (const char* k : {"kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement"}) EXPECT_TRUE(j.contains(k)) << k;
}

// ---- RULER-style tasks

TEST(Ruler, DeterministicFitsAndHoldsItsReferences) {
  TmpDir d("ruler");
  write_file(d / "h.txt", story_text());
  const Tokenizer& tok = tok512();
  const Haystack hay = Haystack::load(d / "h.txt", tok, 1500);
  for (const std::string& task : ruler_tasks()) {
    RulerSample a = ruler_sample(tok, hay, task, 1500, 0, 7, nullptr);
    RulerSample b = ruler_sample(tok, hay, task, 1500, 0, 7, nullptr);
    RulerSample c = ruler_sample(tok, hay, task, 1500, 1, 7, nullptr);
    EXPECT_EQ(a.prompt, b.prompt) << task;
    EXPECT_NE(a.prompt, c.prompt) << task;
    EXPECT_LE(a.tokens.size(), 1500u) << task;
    // cwe draws distinct words from the haystack: this small story has few.
    EXPECT_GT(a.tokens.size(), task == "cwe" ? 300u : 1100u) << task << " should fill most of its length";
    EXPECT_EQ(a.tokens, prompt_tokens(tok, a.prompt, false));
    ASSERT_FALSE(a.refs.empty()) << task;
    if (task != "fwe" && task != "cwe") {
      for (auto& r : a.refs) EXPECT_NE(a.prompt.find(r), std::string::npos) << task << ": " << r;
    }
  }
  RulerSample mk = ruler_sample(tok, hay, "niah_multikey_1", 1500, 0, 7, nullptr);
  EXPECT_EQ(mk.refs.size(), 1u);
  EXPECT_NE(mk.prompt.find("One of the special magic numbers for "), std::string::npos);
  RulerSample mv = ruler_sample(tok, hay, "niah_multivalue", 1500, 0, 7, nullptr);
  EXPECT_EQ(mv.refs.size(), 4u);
  RulerSample mq = ruler_sample(tok, hay, "niah_multiquery", 1500, 0, 7, nullptr);
  EXPECT_EQ(mq.refs.size(), 4u);
  EXPECT_NE(mq.prompt.find(", and "), std::string::npos);
  RulerSample vt = ruler_sample(tok, hay, "vt", 1500, 0, 7, nullptr);
  EXPECT_EQ(vt.refs.size(), 5u);
  EXPECT_EQ(vt.max_new, 30);
  RulerSample fwe = ruler_sample(tok, hay, "fwe", 1500, 0, 7, nullptr);
  EXPECT_EQ(fwe.refs.size(), 3u);
  EXPECT_NE(ruler_sample(tok, hay, "niah_single_2", 1500, 0, 8, nullptr).prompt, mk.prompt);

  EXPECT_ERROR(check_ruler_tasks({"niah_single_1", "qa_1"}), "--tasks", "qa_1", "niah_single_1");
  EXPECT_ERROR(check_ruler_tasks({"vt", "vt"}), "twice");
  EXPECT_ERROR(ruler_sample(tok, hay, "vt", 20, 0, 7, nullptr), "--lengths", "too short");
}

// ---- grid and results

TEST(Grid, CellsAndErrors) {
  auto cells = grid_cells({"snapkv", "full", "streamingllm"}, {64, 128});
  ASSERT_EQ(cells.size(), 5u);
  EXPECT_TRUE(cells[0].full());
  EXPECT_EQ(cells[1].method, "snapkv");
  EXPECT_EQ(cells[1].budget, 64);
  EXPECT_EQ(cells[4].method, "streamingllm");
  EXPECT_EQ(cells[4].budget, 128);
  EXPECT_ERROR(grid_cells({"snapkv", "bogus"}, {64}), "--methods", "unknown method 'bogus'", "snapkv");
  EXPECT_ERROR(grid_cells({"snapkv", "snapkv"}, {64}), "twice");
  EXPECT_ERROR(grid_cells({"snapkv"}, {0}), "--budgets");
  EXPECT_ERROR(grid_cells({"snapkv"}, {}), "--budgets is empty");
  EXPECT_EQ(grid_cells({"full"}, {}).size(), 1u);
}

// eval plot reads results.json back: the file it makes again is the same.
TEST(Results, FromJsonRoundTrip) {
  Results r;
  r.task = "ruler";
  r.model = "m.gguf";
  for (int i = 0; i < 4; ++i) {
    Row x;
    x.method = i < 2 ? "full" : "snapkv";
    if (i >= 2) x.budget = 64;
    x.length = 500;
    if (i % 2) x.depth = 0.25;
    x.case_id = std::string(i % 2 ? "vt" : "cwe") + ":0";
    x.group = i % 2 ? "vt" : "cwe";
    x.score = 10.0 * i;
    x.response = "a\nb";
    r.rows.push_back(x);
  }
  const nlohmann::json j = r.to_json();
  const Results back = Results::from_json(j, "r.json");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.rows[1].group, "vt") << "a RULER row's group is its task";
  EXPECT_EQ(back.markdown(), r.markdown());
  Results k;
  k.task = "kld";
  k.model = "m";
  Row kr;
  kr.method = "snapkv";
  kr.budget = 32;
  kr.case_id = "f.txt";
  kr.metrics = {{"kl_mean", 0.5}, {"kl_median", 0.25}, {"kl_p99", 2.0}, {"kl_max", 3.0}, {"top1_agreement", 0.75}};
  k.rows = {kr};
  EXPECT_EQ(Results::from_json(k.to_json(), "k.json").to_json(), k.to_json());
  nlohmann::json bad = j;
  bad["rows"][2].erase("case");
  EXPECT_ERROR(Results::from_json(bad, "r.json"), "r.json", "rows[2]", "case");
  EXPECT_ERROR(Results::from_json(nlohmann::json::object(), "e.json"), "e.json", "not a results.json");
}

TEST(Results, JsonSchemaSummaryAndTable) {
  Results r;
  r.task = "niah";
  r.model = "m.gguf";
  auto row = [](std::string m, std::optional<int> b, int len, double d, std::string c, double s) {
    Row x;
    x.method = std::move(m);
    x.budget = b;
    x.length = len;
    x.depth = d;
    x.case_id = std::move(c);
    x.score = s;
    x.tokens = len + 20;
    x.response = "r";
    return x;
  };
  r.rows = {row("full", std::nullopt, 100, 0.5, "0", 100), row("full", std::nullopt, 100, 0.5, "1", 50),
            row("snapkv", 64, 100, 0.5, "0", 20), row("snapkv", 64, 100, 0.5, "1", 40),
            row("snapkv", 128, 100, 0.5, "0", 60), row("snapkv", 128, 100, 0.5, "1", 80)};
  nlohmann::json j = r.to_json();
  EXPECT_EQ(j["task"], "niah");
  EXPECT_EQ(j["model"], "m.gguf");
  ASSERT_EQ(j["rows"].size(), 6u);
  for (auto& x : j["rows"])
    for (const char* k : {"method", "budget", "length", "depth", "case", "score", "tokens", "response"})
      EXPECT_TRUE(x.contains(k)) << k;
  EXPECT_TRUE(j["rows"][0]["budget"].is_null());
  EXPECT_EQ(j["rows"][2]["budget"], 64);
  ASSERT_EQ(j["summary"].size(), 3u);
  EXPECT_EQ(j["summary"][0]["method"], "full");
  EXPECT_TRUE(j["summary"][0]["budget"].is_null());
  EXPECT_DOUBLE_EQ(j["summary"][0]["score"].get<double>(), 75.0);
  EXPECT_DOUBLE_EQ(j["summary"][1]["score"].get<double>(), 30.0);
  EXPECT_DOUBLE_EQ(j["summary"][2]["score"].get<double>(), 70.0);
  EXPECT_EQ(r.markdown(),
            "| method \\ budget | 64 | 128 |\n| --- | ---: | ---: |\n| FullKV | 75.0 | 75.0 |\n"
            "| SnapKV | 30.0 | 70.0 |\n");

  // Groups (RULER tasks): the summary averages group means, not rows.
  Results g;
  g.task = "ruler";
  Row a = row("full", std::nullopt, 100, 0, "t1:0", 100), b = a, c = a;
  a.group = b.group = "t1";
  b.score = 0;
  c.group = "t2";
  c.score = 0;
  g.rows = {a, b, c};  // t1 mean 50, t2 mean 0 -> 25 (rows' mean would be 33.3)
  EXPECT_DOUBLE_EQ(g.summary()[0].score, 25.0);

  // kld: statistics in place of score.
  Results k;
  k.task = "kld";
  Row kr;
  kr.method = "snapkv";
  kr.budget = 64;
  kr.metrics = kl_stats({0.5, 0.5}, 1).to_json();
  k.rows = {kr};
  auto kj = k.to_json();
  EXPECT_FALSE(kj["rows"][0].contains("score"));
  EXPECT_DOUBLE_EQ(kj["summary"][0]["kl_mean"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(kj["summary"][0]["top1_agreement"].get<double>(), 0.5);
  EXPECT_NE(k.markdown().find("| SnapKV | 0.5000 |"), std::string::npos) << k.markdown();

  // An answer cut inside a UTF-8 character still gives a readable results.json.
  r.rows[0].response = "caf\xc3";
  TmpDir d("results");
  write_results(d / "", r);
  auto back = nlohmann::json::parse(test::read_text(d / "results.json"));
  EXPECT_EQ(back["rows"][0]["response"], "caf\xef\xbf\xbd");
  EXPECT_NE(test::read_text(d / "table.md").find("| SnapKV | 30.0 | 70.0 |"), std::string::npos);
}
