// CLI-level bad-input tests: the real compresskv binary is run on corrupted
// models, mismatched tokenizers and profiles and bad options. Every case must
// end with a non-zero exit status (not a signal), a stderr that starts with
// "error: " and names the file/field/parameter at fault, and nothing on
// stdout. One positive control per subcommand keeps the harness honest.
// Model work stays tiny (stories260K, -n 4): these also run under ASan/UBSan.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using ckv::test::run_cli;
using ckv::test::RunResult;
using ckv::test::TmpDir;
using ckv::test::write_file;

namespace {

std::string stories() { return ckv::test::source_dir() + "/models/stories260k/stories260K.bin"; }
std::string smollm() {
  return ckv::test::shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}
std::string tiny_hf(const std::string& name) { return ckv::test::shared_dir() + "/models/tiny-hf/" + name; }
std::string published(const std::string& name) {
  return ckv::test::shared_dir() + "/data/compresskv-published/" + name;
}

// A writable copy of a tiny-hf checkpoint inside t; returns its directory.
std::string copy_tiny(const TmpDir& t, const std::string& name) {
  const std::string dir = t / name;
  fs::copy(tiny_hf(name), dir, fs::copy_options::recursive);
  return dir;
}

std::string read_prefix(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::string s(n, '\0');
  f.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(f.gcount()));
  return s;
}


template <typename T>
void put(std::string& bytes, size_t off, T v) {
  ASSERT_LE(off + sizeof(T), bytes.size());
  std::memcpy(bytes.data() + off, &v, sizeof(T));
}

std::string describe(const std::vector<std::string>& args, const RunResult& r) {
  std::string cmd = "compresskv";
  for (auto& a : args) cmd += " " + a;
  if (cmd.size() > 400) cmd = cmd.substr(0, 400) + "...";
  return cmd + "\n  status " + std::to_string(r.status) + "\n  stderr: " + r.err + "  stdout: " + r.out.substr(0, 400);
}

// Runs the binary and checks the bad-input contract; `needles` must all appear in stderr.
RunResult expect_error(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  RunResult r = run_cli(args);
  const std::string d = describe(args, r);
  EXPECT_NE(r.status, 0) << d;
  EXPECT_LT(r.status, 128) << "killed by a signal: " << d;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << "stderr must start with \"error: \": " << d;
  EXPECT_TRUE(r.out.empty()) << "stdout must be empty: " << d;
  for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "stderr lacks '" << n << "': " << d;
  if (std::getenv("CKV_SHOW_ERRORS")) std::fprintf(stderr, "  [%d] %s", r.status, r.err.c_str());
  return r;
}

RunResult expect_ok(const std::vector<std::string>& args) {
  RunResult r = run_cli(args);
  EXPECT_EQ(r.status, 0) << describe(args, r);
  EXPECT_EQ(r.err.find("error"), std::string::npos) << describe(args, r);
  return r;
}

// ---------------------------------------------------------------- GGUF layout

// Offsets inside the SmolLM2 GGUF found by walking its header (GGUF v2/v3).
struct GgufLayout {
  uint64_t meta_begin = 24;   // first metadata key
  uint64_t meta_end = 0;      // first tensor info
  uint64_t infos_end = 0;     // end of the last tensor info
  uint64_t data_start = 0;    // aligned start of tensor data
  uint64_t q_dims = 0;        // blk.0.attn_q.weight: offset of dims[0]
  uint32_t q_ndims = 0;
  uint64_t q_type = 0;        // ... and of its type field
  std::map<std::string, uint64_t> meta_value;  // key -> offset of its value (after the type)
};

struct ByteReader {
  const std::string& b;
  uint64_t pos;
  template <typename T>
  T get() {
    if (pos + sizeof(T) > b.size()) throw std::runtime_error("gguf walk: prefix too short");
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    uint64_t n = get<uint64_t>();
    if (pos + n > b.size()) throw std::runtime_error("gguf walk: prefix too short");
    std::string s = b.substr(pos, n);
    pos += n;
    return s;
  }
  void skip_value(uint32_t t) {
    static const uint64_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) {
      str();
    } else if (t == 9) {
      uint32_t et = get<uint32_t>();
      uint64_t n = get<uint64_t>();
      for (uint64_t i = 0; i < n; ++i) skip_value(et);
    } else if (t < 13) {
      pos += sizes[t];
    } else {
      throw std::runtime_error("gguf walk: bad type");
    }
  }
};

GgufLayout walk_gguf(const std::string& bytes) {
  GgufLayout g;
  ByteReader r{bytes, 8};
  uint64_t n_tensors = r.get<uint64_t>(), n_kv = r.get<uint64_t>();
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.str();
    uint32_t t = r.get<uint32_t>();
    g.meta_value[key] = r.pos;
    if (key == "general.alignment" && t == 4) {
      uint64_t p = r.pos;
      alignment = r.get<uint32_t>();
      r.pos = p;
    }
    r.skip_value(t);
  }
  g.meta_end = r.pos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string name = r.str();
    uint32_t nd = r.get<uint32_t>();
    if (name == "blk.0.attn_q.weight") g.q_dims = r.pos, g.q_ndims = nd;
    r.pos += 8ull * nd;
    if (name == "blk.0.attn_q.weight") g.q_type = r.pos;
    r.pos += 4 + 8;
  }
  g.infos_end = r.pos;
  g.data_start = (g.infos_end + alignment - 1) / alignment * alignment;
  return g;
}

class GgufBad : public ::testing::Test {
 protected:
  static constexpr size_t kPrefix = 8u << 20;  // the header and tensor infos fit well inside
  void SetUp() override {
    CKV_REQUIRE_SHARED();
    if (!fs::exists(smollm())) GTEST_SKIP() << "no " << smollm();
    prefix_ = read_prefix(smollm(), kPrefix);
    ASSERT_EQ(prefix_.substr(0, 4), "GGUF");
    layout_ = walk_gguf(prefix_);
    ASSERT_GT(layout_.q_type, 0u);
    ASSERT_LE(layout_.data_start, prefix_.size());
  }
  // The header (everything up to the tensor data) with a patch applied.
  std::string header_copy() const { return prefix_.substr(0, layout_.data_start); }
  std::string prefix_;
  GgufLayout layout_;
};

}  // namespace

// ------------------------------------------------------------ positive controls

TEST(BadInputControl, TokenizeGivesJsonArray) {
  RunResult r = expect_ok({"tokenize", "-m", stories(), "-p", "Once upon a time"});
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  EXPECT_GT(j.size(), 0u);
}

TEST(BadInputControl, RunGenerates) {
  RunResult r = expect_ok({"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--temp", "0"});
  EXPECT_FALSE(r.out.empty());
  EXPECT_NE(r.err.find("generated tokens"), std::string::npos) << r.err;
}

TEST(BadInputControl, RunSnapKV) {
  RunResult r = expect_ok({"run", "-m", stories(), "-p", "Once upon a time there was a little girl named Lily.",
                           "-n", "4", "--temp", "0", "--kv-method", "snapkv", "--kv-budget", "12", "--kv-window", "4"});
  EXPECT_FALSE(r.out.empty());
}

TEST(BadInputControl, InfoOnEveryFormat) {
  RunResult r = expect_ok({"info", "-m", stories()});
  EXPECT_NE(r.out.find("layers:"), std::string::npos);
  CKV_REQUIRE_SHARED();
  r = expect_ok({"info", "-m", tiny_hf("tiny-qwen3")});
  EXPECT_NE(r.out.find("qwen3"), std::string::npos);
  r = expect_ok({"info", "-m", tiny_hf("tiny-llama3")});
  EXPECT_NE(r.out.find("layers:"), std::string::npos);
  if (fs::exists(smollm())) {
    r = expect_ok({"info", "-m", smollm()});
    EXPECT_NE(r.out.find("layers:         30"), std::string::npos) << r.out;
  }
}

TEST(BadInputControl, Perplexity) {
  TmpDir t("bad_input");
  write_file(t / "text.txt", "Once upon a time there was a little girl. She liked to play.");
  RunResult r = expect_ok({"perplexity", "-m", stories(), "-f", t / "text.txt"});
  // A number, finite and above 1 (a NaN would print null).
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["ppl"].is_number()) << r.out;
  EXPECT_TRUE(std::isfinite(j["ppl"].get<double>())) << r.out;
  EXPECT_GT(j["ppl"].get<double>(), 1.0) << r.out;
  EXPECT_TRUE(std::isfinite(j["mean_nll"].get<double>())) << r.out;
}

TEST(BadInputControl, Bench) {
  RunResult r = expect_ok({"bench", "-m", stories(), "-p", "8", "-n", "4", "-r", "1"});
  EXPECT_FALSE(r.out.empty());
}

// profile import for stories260K's own shape, then compresskv with it.
TEST(BadInputControl, ProfileImportAndCompressKV) {
  TmpDir t("bad_input");
  nlohmann::json heads;
  for (int l = 0; l < 5; ++l) heads[std::to_string(l)] = {3, 1, 0, 2, 4, 5, 6, 7};
  write_file(t / "heads.json", heads.dump());
  expect_ok({"profile", "import", "-m", stories(), "--heads", t / "heads.json", "-o", t / "prof.json"});
  ASSERT_TRUE(fs::exists(t / "prof.json"));
  RunResult r = expect_ok({"run", "-m", stories(), "-p", "Once upon a time there was a little girl named Lily.",
                           "-n", "4", "--temp", "0", "--kv-method", "compresskv", "--kv-budget", "12",
                           "--kv-window", "4", "--kv-profile", t / "prof.json"});
  EXPECT_FALSE(r.out.empty());
}

// ------------------------------------------------------------------ bad GGUF

// Cuts a full copy at descending offsets: header, metadata, tensor infos,
// tensor data and the very last byte. Every cut must be refused.
TEST_F(GgufBad, Truncated) {
  TmpDir t("bad_input");
  const std::string cut = t / "cut.gguf";
  fs::copy_file(smollm(), cut);
  const uint64_t size = fs::file_size(cut);
  const GgufLayout& g = layout_;
  std::vector<uint64_t> offsets = {size - 1,
                                   size - 4096,
                                   size / 2,
                                   g.data_start + 1000,
                                   g.data_start,
                                   g.infos_end - 1,
                                   (g.meta_end + g.infos_end) / 2,
                                   g.meta_end + 10,
                                   g.meta_end - 1,
                                   (g.meta_begin + g.meta_end) / 2,
                                   100,
                                   20,
                                   6};
  for (uint64_t off : offsets) {
    SCOPED_TRACE("cut at " + std::to_string(off) + " of " + std::to_string(size));
    fs::resize_file(cut, off);  // offsets descend, so each cut shortens the copy
    RunResult r = expect_error({"info", "-m", cut}, {cut});
    // Cut short, or a count that no longer fits the bytes left.
    bool says = r.err.find("truncated") != std::string::npos || r.err.find("past end") != std::string::npos ||
                r.err.find("expected at most") != std::string::npos;
    EXPECT_TRUE(says) << "message should say the file is cut short: " << r.err;
  }
  // Shorter than the magic: not GGUF, and no llama2.c header either.
  fs::resize_file(cut, 2);
  expect_error({"info", "-m", cut}, {cut, "header"});
  fs::resize_file(cut, 0);
  expect_error({"info", "-m", cut}, {cut});
}

// A file with neither the GGUF magic nor a valid llama2.c header.
TEST_F(GgufBad, WrongMagic) {
  TmpDir t("bad_input");
  std::string b = header_copy();
  b[3] = 'X';  // "GGUX"
  write_file(t / "m.gguf", b);
  expect_error({"info", "-m", t / "m.gguf"}, {t / "m.gguf", "header"});
  expect_error({"run", "-m", t / "m.gguf", "-p", "hi", "-n", "4"}, {t / "m.gguf"});
  // Text garbage, too.
  write_file(t / "text.bin", std::string("this is not a model file at all, just some text bytes\n"));
  expect_error({"info", "-m", t / "text.bin"}, {t / "text.bin", "header"});
}

TEST_F(GgufBad, WrongVersion) {
  TmpDir t("bad_input");
  std::string b = header_copy();
  put<uint32_t>(b, 4, 7);
  write_file(t / "v7.gguf", b);
  expect_error({"info", "-m", t / "v7.gguf"}, {t / "v7.gguf", "version", "7"});
  put<uint32_t>(b, 4, 0x03000000u);  // big-endian v3
  write_file(t / "be.gguf", b);
  expect_error({"info", "-m", t / "be.gguf"}, {t / "be.gguf", "version", "big-endian"});
}

TEST_F(GgufBad, UnknownTensorType) {
  TmpDir t("bad_input");
  std::string b = header_copy();
  // Also found by the name bytes: the walk and a plain search must agree.
  size_t name = b.find("blk.0.attn_q.weight");
  ASSERT_NE(name, std::string::npos);
  ASSERT_EQ(name + std::strlen("blk.0.attn_q.weight") + 4, layout_.q_dims);
  put<uint32_t>(b, layout_.q_type, 200);
  write_file(t / "type.gguf", b);
  expect_error({"info", "-m", t / "type.gguf"}, {t / "type.gguf", "blk.0.attn_q.weight", "type"});
}

TEST_F(GgufBad, AbsurdDimension) {
  TmpDir t("bad_input");
  std::string b = header_copy();
  put<uint64_t>(b, layout_.q_dims, uint64_t(1) << 50);
  write_file(t / "dim.gguf", b);
  expect_error({"info", "-m", t / "dim.gguf"}, {t / "dim.gguf", "blk.0.attn_q.weight", "dimension"});

  b = header_copy();
  put<uint64_t>(b, layout_.q_dims + 8 * (layout_.q_ndims - 1), 0);  // a zero dimension
  write_file(t / "zero.gguf", b);
  expect_error({"info", "-m", t / "zero.gguf"}, {t / "zero.gguf", "blk.0.attn_q.weight", "dimension"});

  b = header_copy();
  put<uint32_t>(b, layout_.q_dims - 4, 9);  // n_dims
  write_file(t / "ndims.gguf", b);
  expect_error({"info", "-m", t / "ndims.gguf"}, {t / "ndims.gguf", "blk.0.attn_q.weight", "n_dims"});

  // Plausible, but far more data than the (otherwise whole) file holds.
  fs::copy_file(smollm(), t / "big.gguf");
  {
    std::fstream f(t / "big.gguf", std::ios::binary | std::ios::in | std::ios::out);
    const uint64_t rows = uint64_t(1) << 20;
    f.seekp(static_cast<std::streamoff>(layout_.q_dims + 8 * (layout_.q_ndims - 1)));
    f.write(reinterpret_cast<const char*>(&rows), sizeof rows);
    ASSERT_TRUE(f.good());
  }
  expect_error({"info", "-m", t / "big.gguf"}, {t / "big.gguf", "blk.0.attn_q.weight", "past end"});
}

TEST_F(GgufBad, AbsurdMetadata) {
  TmpDir t("bad_input");
  ASSERT_TRUE(layout_.meta_value.count("llama.block_count"));
  ASSERT_TRUE(layout_.meta_value.count("llama.attention.head_count"));
  // Metadata is read after the whole header checks out: patch a full copy.
  const std::string full = t / "meta.gguf";
  fs::copy_file(smollm(), full);
  auto patch_u32 = [&](uint64_t off, uint32_t v) {
    std::fstream f(full, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(off));
    f.write(reinterpret_cast<const char*>(&v), sizeof v);
    ASSERT_TRUE(f.good());
  };
  const uint64_t layers = layout_.meta_value.at("llama.block_count");
  const uint64_t heads = layout_.meta_value.at("llama.attention.head_count");
  for (uint32_t v : {0xFFFFFFFFu, 0u, 100000u}) {
    SCOPED_TRACE("block_count " + std::to_string(v));
    patch_u32(layers, v);
    expect_error({"info", "-m", full}, {full, "layers"});
  }
  patch_u32(layers, 31);  // one more layer than the tensors hold
  expect_error({"info", "-m", full}, {full, "blk.30"});
  patch_u32(layers, 30);
  // 576 is not a multiple of 7. The message blames the derived head dim
  // (rope.dimension_count 64 vs head dim 82) rather than head_count: see the report.
  patch_u32(heads, 7);
  expect_error({"info", "-m", full}, {full, "head"});
  // Huge metadata count: must be refused before anything is allocated for it.
  std::string b = header_copy();
  put<uint64_t>(b, 16, uint64_t(1) << 60);
  write_file(t / "nkv.gguf", b);
  expect_error({"info", "-m", t / "nkv.gguf"}, {t / "nkv.gguf", "metadata count"});
}

// ---------------------------------------------------------------- bad llama2.c

TEST(BadInputLlama2c, Truncated) {
  TmpDir t("bad_input");
  const std::string bin = t / "stories260K.bin";
  fs::copy_file(stories(), bin);
  const uint64_t size = fs::file_size(bin);
  for (uint64_t off : {size - 1, size / 2, uint64_t(28 + 64), uint64_t(28), uint64_t(27), uint64_t(10)}) {
    SCOPED_TRACE("cut at " + std::to_string(off) + " of " + std::to_string(size));
    fs::resize_file(bin, off);
    expect_error({"info", "-m", bin}, {bin, "expected"});
  }
  fs::resize_file(bin, 100);
  expect_error({"run", "-m", bin, "-p", "hi", "-n", "4"}, {bin});
}

TEST(BadInputLlama2c, AbsurdHeader) {
  TmpDir t("bad_input");
  const std::string orig = read_prefix(stories(), 64u << 20);
  struct Case {
    int field;
    int32_t value;
    const char* word;
  };
  for (Case c : {Case{0, 1 << 30, "dim"}, Case{2, 100000, "expected"}, Case{2, -3, "n_layers"},
                 Case{3, 7, "n_heads"}, Case{4, 3, "n_kv_heads"}, Case{6, 0, "seq_len"},
                 Case{5, INT32_MIN, "vocab_size"}, Case{1, 1 << 20, "expected"}}) {
    SCOPED_TRACE("header field " + std::to_string(c.field) + " = " + std::to_string(c.value));
    std::string b = orig;
    put<int32_t>(b, 4 * c.field, c.value);
    const std::string bin = t / ("h" + std::to_string(c.field) + ".bin");
    write_file(bin, b);
    expect_error({"info", "-m", bin}, {bin, c.word});
  }
}

// A llama2.c model whose tokenizer has another vocabulary size.
TEST(BadInputLlama2c, TokenizerDoesNotFit) {
  TmpDir t("bad_input");
  fs::copy_file(stories(), t / "stories260K.bin");
  std::string tok;
  auto i32 = [&](int32_t v) { tok.append(reinterpret_cast<const char*>(&v), 4); };
  auto f32 = [&](float v) { tok.append(reinterpret_cast<const char*>(&v), 4); };
  i32(8);
  for (const char* s : {"<unk>", "<s>", "</s>", "a", "b", "c", "d"}) {
    f32(0.0f);
    i32(static_cast<int32_t>(std::strlen(s)));
    tok += s;
  }
  write_file(t / "tokenizer.bin", tok);
  expect_error({"tokenize", "-m", t / "stories260K.bin", "-p", "hello"}, {t / "tokenizer.bin", "512"});
  expect_error({"run", "-m", t / "stories260K.bin", "-p", "hello", "-n", "4"}, {t / "tokenizer.bin"});
  // The same file through --tokenizer.
  expect_error({"info", "-m", stories(), "--tokenizer", t / "tokenizer.bin"}, {t / "tokenizer.bin", "vocab"});
  // A cut tokenizer.
  write_file(t / "tokenizer.bin", tok.substr(0, tok.size() - 2));
  expect_error({"info", "-m", t / "stories260K.bin"}, {t / "tokenizer.bin", "truncated"});
}

TEST(BadInputLlama2c, NoTokenizer) {
  TmpDir t("bad_input");
  fs::copy_file(stories(), t / "stories260K.bin");
  expect_error({"tokenize", "-m", t / "stories260K.bin", "-p", "hello"}, {t / "stories260K.bin", "tokenizer"});
}

// ---------------------------------------------------------------- safetensors

TEST(BadInputSafetensors, TruncatedShard) {
  CKV_REQUIRE_SHARED();
  TmpDir t("bad_input");
  const std::string dir = copy_tiny(t, "tiny-qwen3");
  const std::string st = dir + "/model.safetensors";
  const uint64_t size = fs::file_size(st);
  for (uint64_t off : {size - 1, size / 2, uint64_t(200), uint64_t(9), uint64_t(4)}) {
    SCOPED_TRACE("cut at " + std::to_string(off) + " of " + std::to_string(size));
    fs::resize_file(st, off);
    expect_error({"info", "-m", dir}, {st});
  }
  // One shard of a sharded checkpoint.
  const std::string dir3 = copy_tiny(t, "tiny-llama3");
  const std::string shard = dir3 + "/model-00002-of-00003.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 1);
  expect_error({"info", "-m", dir3}, {shard});
  // A shard missing altogether.
  fs::remove(shard);
  expect_error({"info", "-m", dir3}, {"model-00002-of-00003.safetensors"});
}

TEST(BadInputSafetensors, BadConfig) {
  CKV_REQUIRE_SHARED();
  TmpDir t("bad_input");
  const std::string dir = copy_tiny(t, "tiny-qwen3");
  const std::string cfg_path = dir + "/config.json";
  const nlohmann::json cfg = nlohmann::json::parse(ckv::test::read_text(cfg_path));

  write_file(cfg_path, "{\"hidden_size\": 64,");
  expect_error({"info", "-m", dir}, {cfg_path, "JSON"});

  auto with = [&](const std::string& key, const nlohmann::json& v) {
    nlohmann::json j = cfg;
    if (v.is_discarded()) j.erase(key);
    else j[key] = v;
    write_file(cfg_path, j.dump());
  };
  with("num_hidden_layers", nlohmann::json(nlohmann::json::value_t::discarded));
  expect_error({"info", "-m", dir}, {cfg_path, "num_hidden_layers"});
  with("hidden_size", -64);
  expect_error({"info", "-m", dir}, {cfg_path, "hidden_size"});
  with("hidden_size", "sixty-four");
  expect_error({"info", "-m", dir}, {cfg_path, "hidden_size"});
  with("num_attention_heads", 3);
  expect_error({"info", "-m", dir}, {cfg_path, "num_attention_heads"});
  with("model_type", "gpt2");
  expect_error({"info", "-m", dir}, {cfg_path, "architecture"});
  // Config promising more layers than the weights hold: names the missing tensor.
  with("num_hidden_layers", 3);
  expect_error({"info", "-m", dir}, {"model.layers.2"});
  write_file(cfg_path, "[1, 2, 3]");
  expect_error({"info", "-m", dir}, {cfg_path});
  fs::remove(cfg_path);
  expect_error({"info", "-m", dir}, {dir, "config.json"});
}

// ------------------------------------------------------------------ options

TEST(BadInputOptions, PromptLongerThanContext) {
  std::string p;
  for (int i = 0; i < 40; ++i) p += "Once upon a time ";
  expect_error({"run", "-m", stories(), "-p", p, "-c", "16", "-n", "4"}, {"-c", "16"});
  // perplexity scores a longer file in windows instead (PerplexityStridedWindows).
}

TEST(BadInputOptions, UnknownKvMethod) {
  expect_error({"run", "-m", stories(), "-p", "hi", "-n", "4", "--kv-method", "bogus", "--kv-budget", "16"},
               {"--kv-method", "bogus"});
}

TEST(BadInputOptions, UnknownMatmulMode) {
  expect_error({"run", "-m", stories(), "-p", "hi", "-n", "4", "--matmul", "int4"}, {"--matmul", "int4"});
  expect_error({"bench", "-m", stories(), "-p", "8", "-n", "0", "--kv-type", "q4"}, {"--kv-type", "q4"});
}

TEST(BadInputOptions, BudgetNotAboveWindow) {
  for (const char* m : {"snapkv", "pyramidkv", "adakv"})
    expect_error({"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--kv-method", m, "--kv-budget", "8",
                  "--kv-window", "8"},
                 {"--kv-budget", "--kv-window"});
  expect_error({"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--kv-method", "snapkv", "--kv-budget",
                "4", "--kv-window", "8"},
               {"--kv-budget", "--kv-window"});
  expect_error({"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--kv-method", "snapkv"},
               {"--kv-budget"});
  expect_error({"run", "-m", stories(), "-p", "hi", "-n", "4", "--kv-method", "snapkv", "--kv-budget", "100000"},
               {"--kv-budget", "context"});
}

TEST(BadInputOptions, CompressKVWithoutProfile) {
  expect_error({"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--kv-method", "compresskv",
                "--kv-budget", "16", "--kv-window", "4"},
               {"--kv-profile", "compresskv"});
}

// serve --kv-profiles: a missing file, a profile of another model, a name
// given twice or the reserved "default": the flag and the entry are named,
// before the server allocates or listens.
TEST(BadInputOptions, ServeProfiles) {
  const std::vector<std::string> base = {"serve", "-m", stories(), "--port", "0", "--kv-profiles"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  expect_error(with({"x=/nonexistent/p.json"}), {"--kv-profiles x=/nonexistent/p.json", "cannot open"});
  const std::string smol_profile = ckv::test::source_dir() + "/profiles/smollm2-135m-instruct.json";
  expect_error(with({"smol=" + smol_profile}), {"--kv-profiles smol=", "30 layers", "5 layers"});
  expect_error(with({"default=" + smol_profile}), {"'default' names the server's own --kv-profile"});
  expect_error(with({"=" + smol_profile}), {"expected NAME=PATH or PATH"});
}

// The authors' Llama-3.1-8B ranking has 32 layers; SmolLM2 has 30.
TEST(BadInputOptions, ProfileImportForOtherModel) {
  CKV_REQUIRE_SHARED();
  TmpDir t("bad_input");
  const std::string heads = published("Llama-3.1-8B-Instruct_head_idx.json");
  if (fs::exists(smollm()))
    expect_error({"profile", "import", "-m", smollm(), "--heads", heads, "-o", t / "p.json"}, {heads, "32", "30"});
  expect_error({"profile", "import", "-m", stories(), "--heads", heads, "-o", t / "p.json"}, {heads, "32", "5"});
  EXPECT_FALSE(fs::exists(t / "p.json"));
  // Right layer count, scores for another model.
  nlohmann::json h;
  for (int l = 0; l < 5; ++l) h[std::to_string(l)] = {0, 1, 2, 3};
  write_file(t / "h5.json", h.dump());
  const std::string scores = published("Llama-3.1-8B-Instruct_layer_score.json");
  expect_error({"profile", "import", "-m", stories(), "--heads", t / "h5.json", "--layer-scores", scores, "-o",
                t / "p.json"},
               {scores, "avg_score"});
  // A head index beyond stories260K's 8 heads.
  h["2"] = {0, 1, 9};
  write_file(t / "h9.json", h.dump());
  expect_error({"profile", "import", "-m", stories(), "--heads", t / "h9.json", "-o", t / "p.json"},
               {t / "h9.json", "2", "9"});
  EXPECT_FALSE(fs::exists(t / "p.json"));
}

// profile import --random-weights: the profile of a random-weights model
// (gpu.sh's serve stage) from a config.json alone, with that model's shape and
// fingerprint; -m with it is refused.
TEST(BadInputOptions, ProfileImportRandomWeights) {
  CKV_REQUIRE_SHARED();
  TmpDir t("bad_input");
  const std::string heads = published("Llama-3.1-8B-Instruct_head_idx.json");
  const std::string scores = published("Llama-3.1-8B-Instruct_layer_score.json");
  const std::string config = ckv::test::source_dir() + "/configs/Llama-3.1-8B.json";
  // (expect_ok would trip on "error-aware budgets" in its report line.)
  RunResult r = ckv::test::run_cli({"profile", "import", "--random-weights", config, "--heads", heads, "--layer-scores",
                                    scores, "-o", t / "p.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("32 layers"), std::string::npos) << r.err;
  nlohmann::json p = ckv::test::read_json(t / "p.json");
  EXPECT_EQ(p["model"]["n_layers"], 32);
  EXPECT_EQ(p["model"]["n_heads"], 32);
  EXPECT_EQ(p["model"]["n_kv_heads"], 8);
  EXPECT_EQ(p["model"]["head_dim"], 128);
  EXPECT_FALSE(p["model"]["fingerprint"].get<std::string>().empty());
  EXPECT_EQ(p["layer_scores"].size(), 32u);
  expect_error({"profile", "import", "--random-weights", config, "-m", stories(), "--heads", heads, "-o", t / "q.json"},
               {"-m", "--random-weights"});
}

// A valid profile for a 32-layer Llama-3.1-8B-shaped model used with stories260K.
TEST(BadInputOptions, ProfileForOtherShape) {
  TmpDir t("bad_input");
  nlohmann::json ranking = nlohmann::json::array();
  for (int l = 0; l < 32; ++l) ranking.push_back({0, 1, 2, 3, 4, 5, 6, 7});
  nlohmann::json j = {{"version", 1},
                      {"model",
                       {{"arch", "llama"},
                        {"n_layers", 32},
                        {"n_heads", 32},
                        {"n_kv_heads", 8},
                        {"head_dim", 128},
                        {"fingerprint", "0123456789abcdef"}}},
                      {"srh", {{"ranking", ranking}, {"scores", nlohmann::json::array()}}},
                      {"retrieval", {{"ranking", nlohmann::json::array()}}},
                      {"layer_scores", nlohmann::json::array()},
                      {"provenance", {{"method", "hand-written for a test"}}}};
  write_file(t / "llama8b.json", j.dump(2));
  expect_error({"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--kv-method", "compresskv",
                "--kv-budget", "16", "--kv-window", "4", "--kv-profile", t / "llama8b.json"},
               {t / "llama8b.json", "32 layers x 32 heads", "5 layers x 8 heads"});
}

TEST(BadInputOptions, MalformedProfile) {
  TmpDir t("bad_input");
  auto run_with = [&](const std::string& path) {
    return std::vector<std::string>{"run", "-m", stories(), "-p", "Once upon a time", "-n", "4", "--kv-method",
                                    "compresskv", "--kv-budget", "16", "--kv-window", "4", "--kv-profile", path};
  };
  write_file(t / "bad.json", "{\"version\": 1, \"model\": {");
  expect_error(run_with(t / "bad.json"), {t / "bad.json", "JSON"});
  write_file(t / "ver.json", "{\"version\": \"one\"}");
  expect_error(run_with(t / "ver.json"), {t / "ver.json", "version"});
  write_file(t / "arr.json", "[]");
  expect_error(run_with(t / "arr.json"), {t / "arr.json"});
  nlohmann::json j = {{"version", 1},
                      {"model", {{"arch", "llama"}, {"n_layers", 5}, {"n_heads", 8}, {"n_kv_heads", 4}, {"head_dim", 8}}},
                      {"srh", {{"ranking", {{0, 1}, {0, 1}, {0, 1}, {0, 1}, {0, 0}}}}}};
  write_file(t / "dup.json", j.dump());
  expect_error(run_with(t / "dup.json"), {t / "dup.json", "srh.ranking[4]"});
  j["srh"]["ranking"] = {{0, 1}, {0, 1}};
  write_file(t / "short.json", j.dump());
  expect_error(run_with(t / "short.json"), {t / "short.json", "srh.ranking"});
  expect_error(run_with(t / "missing.json"), {t / "missing.json"});
}

TEST(BadInputOptions, MissingPromptFile) {
  TmpDir t("bad_input");
  const std::string f = t / "no-such-prompt.txt";
  expect_error({"run", "-m", stories(), "-f", f, "-n", "4"}, {f});
  expect_error({"tokenize", "-m", stories(), "-f", f}, {f});
  expect_error({"perplexity", "-m", stories(), "-f", f}, {f});
}

// std::ifstream opens a directory and reads it as empty: -f must refuse it.
TEST(BadInputOptions, PromptFileIsDirectory) {
  TmpDir t("bad_input");
  expect_error({"run", "-m", stories(), "-f", t.path.string(), "-n", "4"}, {t.path.string()});
  expect_error({"tokenize", "-m", stories(), "-f", t.path.string()}, {t.path.string()});
}

TEST(BadInputOptions, UnknownChatTemplate) {
  expect_error({"run", "-m", stories(), "-p", "hi", "-n", "4", "--chat", "--chat-template", "nonsense"},
               {"--chat-template", "nonsense"});
  // stories260K has no chat template of its own.
  expect_error({"run", "-m", stories(), "-p", "hi", "-n", "4", "--chat"}, {"chat template", "--chat-template"});
}

TEST(BadInputOptions, MissingModel) {
  TmpDir t("bad_input");
  const std::string m = t / "no-such-model.gguf";
  expect_error({"run", "-m", m, "-p", "hi", "-n", "4"}, {m});
  expect_error({"tokenize", "-m", m, "-p", "hi"}, {m});
  expect_error({"info", "-m", m}, {m});
  expect_error({"perplexity", "-m", m, "-f", m}, {m});
  expect_error({"bench", "-m", m, "-p", "8", "-n", "4", "-r", "1"}, {m});
  expect_error({"profile", "import", "-m", m, "--heads", m, "-o", t / "p.json"}, {m});
  // An empty directory is taken as a safetensors checkpoint.
  fs::create_directories(t / "empty");
  expect_error({"info", "-m", t / "empty"}, {t / "empty", "config.json"});
}

// Option values CLI11 cannot convert, and missing required options.
TEST(BadInputOptions, UnparsableOptionValue) {
  expect_error({"run", "-m", stories(), "-p", "hi", "-n", "abc"}, {"--n-predict", "abc"});
  expect_error({"run", "-p", "hi"}, {"--model"});
}

// ------------------------------------------------- hardening (issue 12, item 4)

// NaN or non-positive metadata the forward pass divides by: refused by key.
TEST_F(GgufBad, NonFiniteOrNonPositiveMetadata) {
  TmpDir t("bad_input");
  const std::string full = t / "meta.gguf";
  fs::copy_file(smollm(), full);
  auto patch_f32 = [&](const std::string& key, float v) {
    ASSERT_TRUE(layout_.meta_value.count(key)) << key;
    std::fstream f(full, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(layout_.meta_value.at(key)));
    f.write(reinterpret_cast<const char*>(&v), sizeof v);
    ASSERT_TRUE(f.good());
  };
  const std::string base = "llama.rope.freq_base", eps = "llama.attention.layer_norm_rms_epsilon";
  const float theta = 100000.0f, good_eps = 1e-5f;
  for (float v : {std::nanf(""), -1.0f, 0.0f, INFINITY}) {
    patch_f32(base, v);
    expect_error({"run", "-m", full, "-p", "hi", "-n", "2"}, {full, base});
  }
  patch_f32(base, theta);
  for (float v : {-1.0f, std::nanf("")}) {
    patch_f32(eps, v);
    expect_error({"info", "-m", full}, {full, eps});
  }
  patch_f32(eps, good_eps);
  expect_ok({"info", "-m", full});
}

TEST(BadInputHardening, HeadDimCappedAtLoad) {
  // llama2.c: dim 16384 over 8 heads is a head dim of 2048.
  TmpDir t("bad_input");
  std::string b = read_prefix(stories(), 64u << 20);
  put<int32_t>(b, 0, 16384);
  write_file(t / "hd.bin", b);
  expect_error({"info", "-m", t / "hd.bin"}, {t / "hd.bin", "head dim 2048", "1024"});
  CKV_REQUIRE_SHARED();
  const std::string dir = copy_tiny(t, "tiny-qwen3");
  nlohmann::json cfg = nlohmann::json::parse(ckv::test::read_text(dir + "/config.json"));
  cfg["head_dim"] = 2048;
  write_file(dir + "/config.json", cfg.dump());
  expect_error({"info", "-m", dir}, {dir + "/config.json", "head_dim 2048", "1024"});
}

TEST(BadInputHardening, UntiedCheckpointWithoutLmHead) {
  CKV_REQUIRE_SHARED();
  TmpDir t("bad_input");
  const std::string dir = copy_tiny(t, "tiny-llama3");  // tie_word_embeddings false
  nlohmann::json index = nlohmann::json::parse(ckv::test::read_text(dir + "/model.safetensors.index.json"));
  index["weight_map"].erase("lm_head.weight");
  write_file(dir + "/model.safetensors.index.json", index.dump());
  expect_error({"info", "-m", dir}, {"lm_head.weight", "tie_word_embeddings"});
}

TEST(BadInputHardening, MissingTokenizerJsonNamed) {
  CKV_REQUIRE_SHARED();
  TmpDir t("bad_input");
  const std::string dir = copy_tiny(t, "tiny-qwen3");
  RunResult r = expect_error({"tokenize", "-m", dir, "-p", "hi"}, {dir, "tokenizer.json", "not found"});
  EXPECT_EQ(r.err.find("llama2.c"), std::string::npos) << r.err;
}

TEST(BadInputHardening, NonFiniteLogitsStop) {
  TmpDir t("bad_input");
  std::string b = read_prefix(stories(), 64u << 20);
  put<float>(b, 28, std::nanf(""));  // token_embedding_table[0][0]: the logit of token 0 (tied)
  write_file(t / "stories260K.bin", b);
  fs::copy_file(ckv::test::source_dir() + "/models/stories260k/tok512.bin", t / "tok512.bin");
  RunResult r = expect_error({"run", "-m", t / "stories260K.bin", "-p", "Once upon a time", "-n", "4", "--temp", "0"},
                             {"non-finite logits"});
  EXPECT_EQ(r.err.find("non-finite"), r.err.rfind("non-finite")) << "reported once: " << r.err;
  write_file(t / "text.txt", "Once upon a time there was a little girl.");
  expect_error({"perplexity", "-m", t / "stories260K.bin", "-f", t / "text.txt"}, {"non-finite logits", t / "text.txt"});
}

// Every numeric flag has a range and says it in one sentence.
TEST(BadInputHardening, NumericFlagRanges) {
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const std::string m = stories();
  const std::vector<Case> cases = {
      {{"run", "-m", m, "-p", "hi", "-c", "0"}, "--ctx-size must be an integer >= 1"},
      {{"run", "-m", m, "-p", "hi", "-c", "-5"}, "--ctx-size must be an integer >= 1"},
      {{"run", "-m", m, "-p", "hi", "--temp", "nan"}, "--temp must be in [0, 100]"},
      {{"run", "-m", m, "-p", "hi", "--temp", "-1"}, "--temp must be in [0, 100]"},
      {{"run", "-m", m, "-p", "hi", "--top-p", "2"}, "--top-p must be in (0, 1]"},
      {{"run", "-m", m, "-p", "hi", "--top-p", "0"}, "--top-p must be in (0, 1]"},
      {{"run", "-m", m, "-p", "hi", "--frequency-penalty", "2.5"}, "--frequency-penalty must be in [-2, 2]"},
      {{"run", "-m", m, "-p", "hi", "--presence-penalty", "nan"}, "--presence-penalty must be in [-2, 2]"},
      {{"run", "-m", m, "-p", "hi", "--repeat-penalty", "0"}, "--repeat-penalty must be in (0, 10]"},
      {{"run", "-m", m, "-p", "hi", "--logit-bias", "12x"}, "--logit-bias 12x: no + or -"},
      {{"run", "-m", m, "-p", "hi", "-l", "5+big"}, "--logit-bias 5+big: the bias is not a number"},
      {{"run", "-m", m, "-p", "hi", "-l", "99999+1"}, "token 99999 is past the vocabulary (512 tokens)"},
      {{"run", "-m", m, "-p", "hi", "--top-k", "-5"}, "--top-k must be an integer >= 0"},
      {{"run", "-m", m, "-p", "hi", "-n", "-2"}, "--n-predict must be an integer >= -1"},
      {{"run", "-m", m, "-p", "hi", "-n", "99999999999999999999999"}, "--n-predict must be an integer >= -1"},
      {{"run", "-m", m, "-p", "hi", "-s", "-7"}, "--seed must be an integer >= -1"},
      {{"run", "-m", m, "-p", "hi", "-t", "-1"}, "--threads must be an integer from 0 to 4096"},
      {{"run", "-m", m, "-p", "hi", "--kv-budget", "0"}, "--kv-budget must be an integer >= 1"},
      {{"run", "-m", m, "-p", "hi", "--kv-window", "0"}, "--kv-window must be an integer >= 1"},
      {{"run", "-m", m, "-p", "hi", "--kv-kernel", "x"}, "--kv-kernel must be an integer >= 1"},
      {{"run", "-m", m, "-p", "hi", "--kv-srh", "0"}, "--kv-srh must be an integer >= 1"},
      {{"run", "-m", m, "-p", "hi", "--kv-sinks", "-1"}, "--kv-sinks must be an integer >= 0"},
      {{"run", "-m", m, "-p", "hi", "--kv-alpha", "1.5"}, "--kv-alpha must be in [0, 1]"},
      {{"run", "-m", m, "-p", "hi", "--kv-beta", "0"}, "--kv-beta must be an integer >= 1"},
      {{"perplexity", "-m", m, "-f", m, "-c", "1"}, "--ctx-size must be an integer >= 2"},
      {{"bench", "-m", m, "-p", "-1"}, "--n-prompt must be an integer >= 0"},
      {{"bench", "-m", m, "-p", "8", "-n", "-3"}, "--n-gen must be an integer >= 0"},
      {{"bench", "-m", m, "-d", "-5"}, "--n-depth must be an integer >= 0"},
      {{"bench", "-m", m, "-r", "0"}, "--repetitions must be an integer >= 1"},
  };
  for (const Case& c : cases) {
    RunResult r = expect_error(c.args, {c.says});
    EXPECT_EQ(r.err.find("e+"), std::string::npos) << "no printed floating bound: " << r.err;
  }
  // -ngl (llama.cpp's GPU layers) is named, not read as "-n gl".
  expect_error({"run", "-m", m, "-p", "hi", "-ngl", "99"}, {"unknown option '-ngl'"});
  expect_error({"run", "-m", m, "-p", "hi", "--bogus"}, {"--bogus"});
}

TEST(BadInputHardening, UnknownSubcommandAndVersion) {
  expect_error({"generate", "-m", stories()}, {"unknown subcommand 'generate'", "run"});
  RunResult r = run_cli({"--version"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.rfind("compresskv ", 0), 0u) << r.out;
  // --help shows the defaults.
  r = run_cli({"run", "--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* d : {"0.8", "0.95", "40", "-1", "full", "f32"}) EXPECT_NE(r.out.find(d), std::string::npos) << d;
}

// Flags that do nothing in the combination given say so, and the run goes on.
TEST(BadInputHardening, IgnoredFlagsWarn) {
  const std::string m = stories();
  struct Case {
    std::vector<std::string> extra;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{{{"--kv-budget", "16"}, "--kv-budget does nothing with --kv-method full"},
                                         {{"--kv-method", "snapkv", "--kv-budget", "12", "--kv-window", "4",
                                           "--kv-profile", "p.json"},
                                          "--kv-profile does nothing with --kv-method snapkv"},
                                         {{"--system", "be brief"}, "--system does nothing without --chat"},
                                         {{"--top-k", "5"}, "--top-k does nothing with --temp 0"}}) {
    std::vector<std::string> args = {"run", "-m", m, "-p", "Once upon a time there was", "-n", "2", "--temp", "0"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    RunResult r = run_cli(args);
    EXPECT_EQ(r.status, 0) << describe(args, r);
    EXPECT_NE(r.err.find("warning: " + std::string(c.says)), std::string::npos) << describe(args, r);
  }
  RunResult r = run_cli({"bench", "-m", m, "-p", "8", "-n", "0", "-r", "1", "--kv-dump-kept", "x.json"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("warning: --kv-dump-kept does nothing in bench"), std::string::npos) << r.err;
  if (!ckv::test::have_shared() || !fs::exists(smollm())) return;
  r = run_cli({"info", "-m", smollm(), "--tokenizer", m});
  EXPECT_NE(r.err.find("warning: --tokenizer is only read for llama2.c"), std::string::npos) << r.err;
}

TEST(BadInputHardening, MethodCheckedBeforeBudgetAndPathsBeforeWork) {
  expect_error({"run", "-m", stories(), "-p", "hi", "--kv-method", "bogus"}, {"unknown --kv-method 'bogus'"});
  TmpDir t("bad_input");
  const std::string out = t / "no-such-dir/kept.json";
  RunResult r = expect_error({"run", "-m", stories(), "-p", "Once upon a time", "-n", "2", "--kv-method", "snapkv",
                              "--kv-budget", "12", "--kv-window", "4", "--kv-dump-kept", out},
                             {"--kv-dump-kept", out, "does not exist"});
  EXPECT_EQ(r.err.find("prompt tokens"), std::string::npos) << "refused before the work: " << r.err;
  nlohmann::json heads;
  for (int l = 0; l < 5; ++l) heads[std::to_string(l)] = {0, 1, 2, 3, 4, 5, 6, 7};
  write_file(t / "heads.json", heads.dump());
  expect_error({"profile", "import", "-m", stories(), "--heads", t / "heads.json", "-o", t.path.string()},
               {"-o", "is a directory"});
}

// `> /dev/full`: every subcommand that writes to stdout fails.
TEST(BadInputHardening, FullDiskFails) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  TmpDir t("bad_input");
  write_file(t / "text.txt", "Once upon a time there was a little girl. She liked to play.");
  const std::string bin = ckv::test::binary(), m = stories();
  for (const std::string& cmd : {"run -m " + m + " -p 'Once upon' -n 4 --temp 0", "tokenize -m " + m + " -p hello",
                                 "info -m " + m, "perplexity -m " + m + " -f " + t / "text.txt",
                                 "bench -m " + m + " -p 8 -n 0 -r 1", std::string("--version")}) {
    int st = std::system((bin + " " + cmd + " > /dev/full 2>" + t / "err").c_str());
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0) << cmd;
    EXPECT_NE(ckv::test::read_text(t / "err").find("writing standard output failed"), std::string::npos) << cmd;
  }
}

// run ... > f 2>&1: the text and its newline come before the statistics.
TEST(BadInputHardening, StdoutFlushedBeforeStatistics) {
  TmpDir t("bad_input");
  const std::string cmd = ckv::test::binary() + " run -m " + stories() + " -p 'Once upon a time' -n 8 --temp 0 > " +
                          t / "all.txt" + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string all = ckv::test::read_text(t / "all.txt");
  size_t stats = all.find("prompt tokens:");
  ASSERT_NE(stats, std::string::npos) << all;
  ASSERT_GT(stats, 0u) << all;
  EXPECT_EQ(all[stats - 1], '\n') << all;
}

TEST(BadInputHardening, PromptFromStdinAndTokenizeNeedsText) {
  RunResult r = run_cli({"tokenize", "-m", stories(), "-f", "-"}, "Once upon a time");
  EXPECT_EQ(r.status, 0) << r.err;
  RunResult p = run_cli({"tokenize", "-m", stories(), "-p", "Once upon a time"});
  EXPECT_EQ(r.out, p.out);
  expect_error({"tokenize", "-m", stories()}, {"-p", "-f"});
}

// Bytes that are not UTF-8 become U+FFFD (Python's errors='replace'), said once.
TEST(BadInputHardening, InvalidUtf8PromptReplaced) {
  CKV_REQUIRE_SHARED();
  if (!fs::exists(smollm())) GTEST_SKIP() << "no " << smollm();
  TmpDir t("bad_input");
  write_file(t / "bad.txt", "caf\xC3 ok \xE2\x82 x \xFF\xFE end");
  RunResult r = run_cli({"tokenize", "-m", smollm(), "-f", t / "bad.txt"});
  EXPECT_EQ(r.status, 0) << r.err;
  RunResult want = run_cli({"tokenize", "-m", smollm(), "-p", "caf\xEF\xBF\xBD ok \xEF\xBF\xBD x \xEF\xBF\xBD\xEF\xBF\xBD end"});
  EXPECT_EQ(r.out, want.out);
  EXPECT_EQ(nlohmann::json::parse(r.out)[0], nlohmann::json::parse(want.out)[0]);
  EXPECT_EQ(r.err.find("warning"), r.err.rfind("warning")) << "one warning: " << r.err;
  EXPECT_NE(r.err.find("4 byte sequences that are not UTF-8 replaced with U+FFFD"), std::string::npos) << r.err;
  EXPECT_TRUE(want.err.empty()) << want.err;
  // No token 0 (<|endoftext|>) from stray bytes.
  for (int id : nlohmann::json::parse(r.out)) EXPECT_NE(id, 0);
}

// perplexity over more tokens than -c: llama.cpp's non-overlapping windows,
// second half of each scored.
TEST(BadInputHardening, PerplexityStridedWindows) {
  TmpDir t("bad_input");
  std::string text;
  for (int i = 0; i < 12; ++i) text += "Once upon a time there was a little girl named Lily. ";
  write_file(t / "long.txt", text);
  RunResult r = expect_ok({"perplexity", "-m", stories(), "-f", t / "long.txt", "-c", "32"});
  nlohmann::json j = nlohmann::json::parse(r.out);
  const int64_t n = j["tokens"];
  ASSERT_GT(n, 64);
  EXPECT_EQ(j["windows"], n / 32);
  EXPECT_EQ(j["scored"], (n / 32) * 15);  // predictions from positions 16..30 of each window
  EXPECT_TRUE(std::isfinite(j["ppl"].get<double>()));
  EXPECT_GT(j["ppl"].get<double>(), 1.0);
}
