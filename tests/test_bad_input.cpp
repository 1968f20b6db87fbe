// CLI-level bad-input tests: the real compresskv binary is run on corrupted
// models, mismatched tokenizers and profiles and bad options. Every case must
// end with a non-zero exit status (not a signal), a stderr that starts with
// "error: " and names the file/field/parameter at fault, and nothing on
// stdout. One positive control per subcommand keeps the harness honest.
// Model work stays tiny (stories260K, -n 4): these also run under ASan/UBSan.
#include <gtest/gtest.h>
#include <stdlib.h>

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
  if (!ckv::test::have_shared()) return;
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
  EXPECT_FALSE(r.out.empty());
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
  TmpDir t("bad_input");
  write_file(t / "long.txt", p);
  expect_error({"perplexity", "-m", stories(), "-f", t / "long.txt", "-c", "16"}, {t / "long.txt", "16"});
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
