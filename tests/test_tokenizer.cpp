// Tokenizers: SmolLM2's byte-level BPE against HF tokenizers' golden output,
// llama2.c's tok512 SPM against hand-derived ids, round trips on awkward
// UTF-8, streaming decode, and the readers' error messages.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "model/gguf.h"
#include "test_util.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace ckv;
using ckv::test::read_json;
using ckv::test::shared_dir;
using ckv::test::error_of;

namespace {

std::string smollm_path() { return shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"; }
std::string tok512_path() { return shared_dir() + "/models/stories260k/tok512.bin"; }

const Tokenizer& smollm() {
  static std::unique_ptr<Tokenizer> tok = [] {
    GGUFFile f(smollm_path());
    return make_tokenizer(read_gguf_tokenizer(f));
  }();
  return *tok;
}

const Tokenizer& tok512() {
  static std::unique_ptr<Tokenizer> tok = make_tokenizer(read_llama2c_tokenizer(tok512_path(), 512));
  return *tok;
}

// Texts that stress pre-tokenizers and byte handling.
std::vector<std::string> edge_texts() {
  return {
      "",
      " ",
      "a",
      "emoji 🎉🚀 and 👍🏽! 👨‍👩‍👧‍👦 family",
      "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 𝟘𝟙𝟚 (4-byte chars)",
      "日本語のテキスト 中文分词 한국어",
      "e\xCC\x81 n\xCC\x83 combining a\xCC\x8A\xCC\x81",
      "controls \x01\x02\x07\x1b[0m\x7f end",
      "replacement \xEF\xBF\xBD and BOM \xEF\xBB\xBF",
      "digits 0123456789012345678901234567890123456789 ٣٤٥ ²³",
      "whitespace \t\t \n\n\r\n \v\f \xC2\xA0 \xE2\x80\x83 \xE3\x80\x80 end  ",
      "   \n\n   ",
      "\n",
      "it's I'M we'LL 'quoted' ''",
      "<|im_start|> not special <|im_end|>",
      "mixed: café-Straße/Ölmühle_naïve",
  };
}

// Byte strings that are not valid UTF-8 (truncated and stray sequences):
// bytes must still round trip.
std::vector<std::string> invalid_texts() {
  return {"abc\xC3", "\xE2\x82 x", "\x80\x80\x80", "ok \xF0\x9F\x98 cut", "\xE2\x82\xE2\x82\xAC"};
}

}  // namespace

TEST(SmolLM2Tokenizer, Metadata) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  EXPECT_EQ(t.data().kind, "bpe");
  EXPECT_EQ(t.data().pre, "smollm");
  EXPECT_EQ(t.n_vocab(), 49152);
  EXPECT_EQ(t.data().merges.size(), 48900u);
  EXPECT_EQ(t.bos(), 1);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_FALSE(t.add_bos());
  EXPECT_FALSE(t.data().add_space_prefix);
  EXPECT_TRUE(t.is_eog(2));
  EXPECT_FALSE(t.is_eog(1));
  EXPECT_EQ(t.find("<|im_start|>"), 1);
  EXPECT_EQ(t.find("no such token"), -1);
  EXPECT_EQ(t.piece(2), "<|im_end|>");
  EXPECT_EQ(t.piece(216), " ");
  EXPECT_NE(t.data().chat_template.find("<|im_start|>"), std::string::npos);
}

TEST(SmolLM2Tokenizer, GoldenJsonl) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  std::ifstream f(shared_dir() + "/golden/smollm2/tokenizer.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    std::string text = j["text"];
    std::vector<int> want = j["ids"];
    EXPECT_EQ(t.encode(text), want) << "text: " << text;
    EXPECT_EQ(t.decode(want), j["decoded"].get<std::string>()) << "text: " << text;
    ++n;
  }
  EXPECT_GE(n, 30);
}

TEST(SmolLM2Tokenizer, GoldenPrompts) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  for (const char* name : {"short", "chat", "long"}) {
    auto j = read_json(shared_dir() + "/golden/smollm2/" + name + ".json");
    std::vector<int> want = j["ids"];
    std::string prompt = j["prompt"];
    EXPECT_EQ(t.encode(prompt), want) << name;
    EXPECT_EQ(t.decode(want), prompt) << name;
  }
}

TEST(SmolLM2Tokenizer, SpecialTextWithoutParseSpecial) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  auto ids = t.encode("<|im_start|>user", false);
  for (int id : ids) EXPECT_NE(id, 1);
  EXPECT_EQ(t.decode(ids), "<|im_start|>user");
  EXPECT_EQ(t.encode("<|im_start|>user", true).front(), 1);
}

TEST(SmolLM2Tokenizer, RoundTrips) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  for (const auto& s : edge_texts()) EXPECT_EQ(t.decode(t.encode(s)), s) << s;
  for (const auto& s : invalid_texts()) EXPECT_EQ(t.decode(t.encode(s)), s) << s;
  // Bytes that never occur in UTF-8 have no byte-level token here: UNK, as
  // the vocabulary cannot say them.
  auto ff = t.encode("a\xFF");
  ASSERT_EQ(ff.size(), 2u);
  EXPECT_EQ(ff[1], t.data().unk);
  // SmolLM splits digits one by one: each digit is its own token.
  EXPECT_EQ(t.encode("2026").size(), 4u);
}

// (Speed belongs to benchmarks: this checks only that a long text round-trips.)
TEST(SmolLM2Tokenizer, LongTextRoundTrips) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  std::string text = read_json(shared_dir() + "/golden/smollm2/long.json")["prompt"];
  std::string big;
  for (int i = 0; i < 5; ++i) big += text + " variation " + std::to_string(i) + "\n";
  big += std::string(20000, 'x') + std::string(5000, ' ') + "end";  // one huge word, one huge space run
  auto ids = t.encode(big);
  EXPECT_GT(ids.size(), 8000u);
  EXPECT_EQ(t.decode(ids), big);
}

TEST(SmolLM2Tokenizer, StreamDecoderWaitsForWholeChars) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = smollm();
  // 🎉 is split across byte-level tokens (golden: 15107, 232, 227).
  std::string text = "a 🎉 b 日本 👍🏽";
  auto ids = t.encode(text);
  StreamDecoder sd(t);
  std::string all;
  int empty_pushes = 0;
  for (int id : ids) {
    std::string out = sd.push(id);
    if (out.empty()) ++empty_pushes;
    // every emitted chunk is whole UTF-8
    for (size_t i = 0; i < out.size();) {
      auto c = static_cast<unsigned char>(out[i]);
      size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      ASSERT_LE(i + n, out.size()) << "split character in chunk";
      i += n;
    }
    all += out;
  }
  all += sd.flush();
  EXPECT_EQ(all, text);
  EXPECT_GT(empty_pushes, 0);
  // Exactly the split char: three tokens, output only after the third.
  StreamDecoder sd2(t);
  EXPECT_EQ(sd2.push(15107), " ");  // " " + first two bytes of the emoji
  EXPECT_EQ(sd2.push(232), "");
  EXPECT_EQ(sd2.push(227), "🎉");
  EXPECT_EQ(sd2.flush(), "");
}

TEST(Tok512, Reader) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = tok512();
  EXPECT_EQ(t.data().kind, "spm");
  EXPECT_EQ(t.n_vocab(), 512);
  EXPECT_EQ(t.bos(), 1);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_TRUE(t.add_bos());
  EXPECT_TRUE(t.is_eog(2));
  EXPECT_EQ(t.data().types[0], TokenType::Unknown);
  EXPECT_EQ(t.data().types[1], TokenType::Control);
  EXPECT_EQ(t.data().types[3 + 0x0A], TokenType::Byte);
  EXPECT_EQ(t.piece(3 + 0x0A), "\n");
  EXPECT_EQ(t.piece(261), " a");
  EXPECT_EQ(t.find("<0x41>"), 3 + 0x41);
}

TEST(Tok512, HandCheckedIds) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = tok512();
  // " a" is a token (score -2): the prefixed space and "a" merge.
  EXPECT_EQ(t.encode("a"), (std::vector<int>{261}));
  // The first words of the model's own greedy story (golden/stories260k).
  EXPECT_EQ(t.encode("Once upon a time"), (std::vector<int>{403, 407, 261, 378}));
  // "日" is not in the vocabulary: its three bytes fall back to <0xE6><0x97><0xA5>
  // (byte b is id 3 + b), after the lone prefixed space (410).
  EXPECT_EQ(t.encode("日"), (std::vector<int>{410, 3 + 0xE6, 3 + 0x97, 3 + 0xA5}));
  // Two spaces: "x" has no " x" token, so space, x, space, " y".
  EXPECT_EQ(t.encode("x  y"), (std::vector<int>{410, 444, 410, 348}));
  EXPECT_EQ(t.encode(""), std::vector<int>{});
}

TEST(Tok512, DecodesGreedyStory) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = tok512();
  std::vector<int> ids = read_json(shared_dir() + "/golden/stories260k/greedy.json")["ids"];
  std::string want = ckv::test::read_text(shared_dir() + "/models/stories260k/greedy_256.txt");
  std::string got = t.decode(ids);
  // The published text may end with a newline the C program printed.
  while (!want.empty() && (want.back() == '\n')) want.pop_back();
  while (!got.empty() && (got.back() == '\n')) got.pop_back();
  EXPECT_EQ(got, want);
  // Streaming from BOS gives the same text.
  StreamDecoder sd(t);
  std::string streamed;
  for (int id : ids) streamed += sd.push(id);
  streamed += sd.flush();
  while (!streamed.empty() && streamed.back() == '\n') streamed.pop_back();
  EXPECT_EQ(streamed, want);
}

TEST(Tok512, RoundTrips) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = tok512();
  for (const auto& s : edge_texts()) EXPECT_EQ(t.decode(t.encode(s, false)), s) << s;
  for (const auto& s : invalid_texts()) EXPECT_EQ(t.decode(t.encode(s)), s) << s;
  for (std::string s : {"\xff", "\xC0\xAF overlong", "\xF8\xF9"}) EXPECT_EQ(t.decode(t.encode(s)), s) << s;
  // After BOS the leading space is dropped too.
  auto ids = t.encode("Once upon a time");
  ids.insert(ids.begin(), 1);
  EXPECT_EQ(t.decode(ids), "Once upon a time");
}

TEST(Tok512, StreamDecoderByteFallback) {
  CKV_REQUIRE_SHARED();
  const Tokenizer& t = tok512();
  StreamDecoder sd(t);
  EXPECT_EQ(sd.push(1), "");  // BOS
  EXPECT_EQ(sd.push(3 + 0xE6), "");
  EXPECT_EQ(sd.push(3 + 0x97), "");
  EXPECT_EQ(sd.push(3 + 0xA5), "日");
  EXPECT_EQ(sd.push(261), " a");
  // An incomplete char is handed out by flush.
  EXPECT_EQ(sd.push(3 + 0xE6), "");
  EXPECT_EQ(sd.flush(), "\xE6");
}

TEST(Tok512, Errors) {
  CKV_REQUIRE_SHARED();
  try {
    read_llama2c_tokenizer(tok512_path(), 32000);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("tok512.bin"), std::string::npos) << m;
    EXPECT_NE(m.find("512"), std::string::npos) << m;
    EXPECT_NE(m.find("32000"), std::string::npos) << m;
  }
  std::string bytes = ckv::test::read_text(tok512_path());
  std::string cut = (std::filesystem::temp_directory_path() / "ckv_tok_truncated.bin").string();
  {
    std::ofstream o(cut, std::ios::binary);
    o.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 3));
  }
  try {
    read_llama2c_tokenizer(cut, 512);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("ckv_tok_truncated.bin"), std::string::npos) << m;
    EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  }
  std::remove(cut.c_str());
  EXPECT_THROW(read_llama2c_tokenizer("/nonexistent/tok.bin", 512), Error);
}

// Runs f in a child process limited to `mb` MiB of address space; true when
// it returned normally (a bad_alloc or crash there is false).
static bool fits_in_memory(size_t mb, const std::function<void()>& f) {
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {mb << 20, mb << 20};
    setrlimit(RLIMIT_AS, &rl);
    try {
      f();
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// A token length within the file's own max_token_length but past its end is
// refused before anything that size is allocated (found by fuzzing: a 40-byte
// file claiming 2 GB tokens made the reader allocate 2 GB).
TEST(Tok512, HugeTokenLengthRefusedBeforeAllocating) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "an address-space limit breaks AddressSanitizer's shadow memory";
#endif
  std::string bytes;
  auto i32 = [&](int32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  i32(INT32_MAX);  // max_token_length
  i32(0);          // score of token 0
  i32(INT32_MAX);  // its length
  bytes += "abcd";
  const test::TmpDir t("tok_huge");
  test::write_file(t / "tok.bin", bytes);
  EXPECT_TRUE(fits_in_memory(512, [&] {
    std::string m = error_of([&] { read_llama2c_tokenizer(t / "tok.bin", 3); });
    if (m.find("truncated") == std::string::npos || m.find("tok.bin") == std::string::npos) throw 1;
  }));
}

TEST(MakeTokenizer, RefusesUnknownKindAndPre) {
  TokenizerData d;
  d.tokens = {"a", "b", "a b"};
  d.merges = {"a b"};
  d.kind = "wordpiece";
  try {
    make_tokenizer(d);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wordpiece"), std::string::npos);
  }
  d.kind = "bpe";
  d.pre = "falcon";
  try {
    make_tokenizer(d);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("falcon"), std::string::npos);
  }
  d.pre = "gpt2";
  d.bos = 7;
  EXPECT_THROW(make_tokenizer(d), Error);
}

TEST(MakeTokenizer, OtherFamiliesPreTokenize) {
  // A tiny alphabet with one merge: the family regexes compile, keep every
  // byte (round trip), and a space stays attached to the word after it.
  for (const char* pre : {"gpt2", "smollm", "llama3", "qwen2"}) {
    TokenizerData v;
    v.kind = "bpe";
    v.pre = pre;
    // Printable ASCII maps to itself, space to "Ġ".
    for (int c = 33; c < 127; ++c) v.tokens.push_back(std::string(1, static_cast<char>(c)));
    v.tokens.push_back("\xC4\xA0");  // Ġ
    v.tokens.push_back("\xC4\xA0h");
    v.merges = {"\xC4\xA0 h"};
    auto t = make_tokenizer(v);
    std::string s = "hi there 12345 it's";
    EXPECT_EQ(t->decode(t->encode(s)), s) << pre;
    EXPECT_EQ(t->encode(" h"), (std::vector<int>{static_cast<int>(v.tokens.size()) - 1})) << pre;
  }
}

namespace {

// Writes a tokenizer.json (+ config) directory for the HF reader.
std::string write_hf_dir(const std::string& name, const nlohmann::json& tj, const nlohmann::json& cfg) {
  auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tj.dump();
  if (!cfg.is_null()) std::ofstream(dir / "tokenizer_config.json") << cfg.dump();
  return dir.string();
}

nlohmann::json byte_level_json() {
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (int c = 33; c < 127; ++c) vocab[std::string(1, static_cast<char>(c))] = id++;
  vocab["\xC4\xA0"] = id++;   // Ġ
  vocab["\xC4\xA0h"] = id++;  // Ġh
  vocab["\xC4\xA0hi"] = id++;
  nlohmann::json tj;
  tj["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xC4\xA0 h", nlohmann::json::array({"\xC4\xA0h", "i"})}}};
  tj["pre_tokenizer"] = {{"type", "Sequence"},
                         {"pretokenizers",
                          {{{"type", "Split"},
                            {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                            {"behavior", "Isolated"},
                            {"invert", false}},
                           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  tj["added_tokens"] = {{{"id", id}, {"content", "<|eot_id|>"}, {"special", true}},
                        {{"id", id + 1}, {"content", "<|begin_of_text|>"}, {"special", true}}};
  return tj;
}

}  // namespace

TEST(HfTokenizer, ByteLevelLlama3Style) {
  auto tj = byte_level_json();
  nlohmann::json cfg = {{"bos_token", "<|begin_of_text|>"},
                        {"eos_token", {{"content", "<|eot_id|>"}}},
                        {"add_bos_token", true},
                        {"chat_template", "{{ '<|start_header_id|>' }}"}};
  std::string dir = write_hf_dir("ckv_hf_tok_ok", tj, cfg);
  TokenizerData d = read_hf_tokenizer(dir);
  EXPECT_EQ(d.kind, "bpe");
  EXPECT_EQ(d.pre, "llama3");
  EXPECT_EQ(d.merges.size(), 2u);
  EXPECT_EQ(d.merges[1], "\xC4\xA0h i");
  auto t = make_tokenizer(d);
  EXPECT_EQ(t->bos(), t->find("<|begin_of_text|>"));
  EXPECT_TRUE(t->is_eog(t->find("<|eot_id|>")));
  EXPECT_TRUE(t->add_bos());
  EXPECT_EQ(d.chat_template, "{{ '<|start_header_id|>' }}");
  auto ids = t->encode("<|begin_of_text|> hi!");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], t->bos());
  EXPECT_EQ(ids[1], t->find("\xC4\xA0hi"));
  EXPECT_EQ(t->decode(ids), "<|begin_of_text|> hi!");
}

TEST(HfTokenizer, ErrorsNameFileAndField) {
  auto tj = byte_level_json();
  tj["model"]["type"] = "WordPiece";
  std::string dir = write_hf_dir("ckv_hf_tok_bad", tj, nullptr);
  try {
    read_hf_tokenizer(dir);
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("tokenizer.json"), std::string::npos) << m;
    EXPECT_NE(m.find("model.type"), std::string::npos) << m;
  }
  tj = byte_level_json();
  std::string dir2 = write_hf_dir("ckv_hf_tok_badcfg", tj, {{"bos_token", "<nope>"}});
  try {
    read_hf_tokenizer(dir2);
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("tokenizer_config.json"), std::string::npos) << m;
    EXPECT_NE(m.find("bos_token"), std::string::npos) << m;
  }
  EXPECT_THROW(read_hf_tokenizer("/nonexistent/dir"), Error);
}

// Token ids are read as written: out of int range, fractional or beyond 2^24
// they are refused by file and field before anything is sized by them.
TEST(HfTokenizer, TokenIdsCheckedBeforeUse) {
  for (const nlohmann::json& bad : {nlohmann::json(2147483647), nlohmann::json(3000000000u), nlohmann::json(-1),
                                    nlohmann::json(1.5), nlohmann::json("7"), nlohmann::json(100000000)}) {
    auto tj = byte_level_json();
    tj["model"]["vocab"]["!"] = bad;
    std::string dir = write_hf_dir("ckv_hf_tok_id", tj, nullptr);
    std::string m = error_of([&] { read_hf_tokenizer(dir); });
    EXPECT_NE(m.find(dir + "/tokenizer.json"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find("model.vocab"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find("16777216"), std::string::npos) << bad << ": " << m;
  }
  {  // Within range, but far beyond the 99 tokens the file holds (found by fuzzing: a 16M vocabulary).
    auto tj = byte_level_json();
    tj["model"]["vocab"]["!"] = 10000000;
    std::string dir = write_hf_dir("ckv_hf_tok_id", tj, nullptr);
    std::string m = error_of([&] { read_hf_tokenizer(dir); });
    EXPECT_NE(m.find("largest id 10000000"), std::string::npos) << m;
  }
  auto tj = byte_level_json();
  tj["added_tokens"][0]["id"] = 2147483647;
  std::string dir = write_hf_dir("ckv_hf_tok_id", tj, nullptr);
  std::string m = error_of([&] { read_hf_tokenizer(dir); });
  EXPECT_NE(m.find("added_tokens[0]"), std::string::npos) << m;
}

// Problems make_tokenizer finds are the file's: it is named.
TEST(HfTokenizer, TokenizerErrorsNameTheFile) {
  auto tj = byte_level_json();
  tj["model"]["merges"] = {"ab"};
  std::string dir = write_hf_dir("ckv_hf_tok_merge", tj, nullptr);
  TokenizerData d = read_hf_tokenizer(dir);
  std::string m = error_of([&] { make_tokenizer(d); });
  EXPECT_NE(m.find(dir + "/tokenizer.json"), std::string::npos) << m;
  EXPECT_NE(m.find("merge 0"), std::string::npos) << m;
}

// An empty match at the very end of the text (here "$") must not read past
// it: the buffer is exactly the text's size, so ASan sees any overread.
TEST(PreTokenizer, EmptyMatchAtEndStaysInside) {
  PreTokenizer pre("custom", {"$", "(?=b)"});
  std::unique_ptr<char[]> buf(new char[3]{'a', 'b', 'c'});
  std::vector<std::string_view> out;
  pre.split(std::string_view(buf.get(), 3), out);
  std::string joined;
  for (auto p : out) joined += p;
  EXPECT_EQ(joined, "abc");
  // A lead byte at the end whose sequence is cut short.
  std::unique_ptr<char[]> cut(new char[2]{'a', '\xF0'});
  out.clear();
  pre.split(std::string_view(cut.get(), 2), out);
  joined.clear();
  for (auto p : out) joined += p;
  EXPECT_EQ(joined, std::string("a\xF0"));
}

TEST(HfTokenizer, SentencePieceStyle) {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int id = 3;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = id++;
  }
  for (const char* s : {"\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "\xE2\x96\x81hi"}) vocab[s] = id++;
  nlohmann::json tj;
  tj["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xE2\x96\x81 h", "\xE2\x96\x81h i"}},
                 {"byte_fallback", true}, {"unk_token", "<unk>"}};
  tj["normalizer"] = {{"type", "Sequence"},
                      {"normalizers",
                       {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  tj["pre_tokenizer"] = nullptr;
  tj["added_tokens"] = {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                        {{"id", 1}, {"content", "<s>"}, {"special", true}},
                        {{"id", 2}, {"content", "</s>"}, {"special", true}}};
  std::string dir = write_hf_dir("ckv_hf_tok_spm", tj, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  TokenizerData d = read_hf_tokenizer(dir);
  EXPECT_EQ(d.kind, "spm");
  EXPECT_TRUE(d.add_space_prefix);
  EXPECT_TRUE(d.add_bos);  // SPM tokenizers add BOS unless told otherwise
  d.add_bos = true;
  auto t = make_tokenizer(d);
  int hi = t->find("\xE2\x96\x81hi");
  EXPECT_EQ(t->encode("hi"), (std::vector<int>{hi}));
  auto ids = t->encode("hi é");
  EXPECT_EQ(ids[0], hi);
  EXPECT_EQ(ids.back(), 3 + 0xA9);  // é falls back to bytes C3 A9
  EXPECT_EQ(t->decode(ids), "hi é");
}

TEST(GgufVocab, UnknownModelTypeNamed) {
  // A GGUF v3 file with no tensors and one string key.
  std::string path = (std::filesystem::temp_directory_path() / "ckv_bert_vocab.gguf").string();
  {
    std::ofstream o(path, std::ios::binary);
    auto u32 = [&](uint32_t v) { o.write(reinterpret_cast<const char*>(&v), 4); };
    auto u64 = [&](uint64_t v) { o.write(reinterpret_cast<const char*>(&v), 8); };
    auto str = [&](const std::string& s) {
      u64(s.size());
      o.write(s.data(), static_cast<std::streamsize>(s.size()));
    };
    o.write("GGUF", 4);
    u32(3);
    u64(0);  // tensors
    u64(2);  // metadata
    str("general.alignment");
    u32(4);  // uint32
    u32(32);
    str("tokenizer.ggml.model");
    u32(8);  // string
    str("bert");
  }
  try {
    GGUFFile f(path);
    read_gguf_tokenizer(f);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("bert"), std::string::npos) << m;
    EXPECT_NE(m.find("tokenizer.ggml.model"), std::string::npos) << m;
  }
  std::remove(path.c_str());
}
