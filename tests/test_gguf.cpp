// GGUF reader: a small file built here (and the golden one) read back, then
// broken in every way the reader must catch. Every failure is a ckv::Error
// naming the file; none may crash (these also run under ASan/UBSan).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/quant.h"
#include "test_util.h"
#include "util/error.h"

using namespace ckv;

namespace {

using Bytes = std::vector<uint8_t>;

// Minimal little-endian GGUF writer: enough to make valid files and then
// corrupt exactly one field.
struct Writer {
  Bytes b;
  template <typename T>
  void put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void key(const std::string& k, uint32_t type) {
    str(k);
    put<uint32_t>(type);
  }
  void pad(size_t align) {
    while (b.size() % align) b.push_back(0);
  }
};

enum : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 };

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;  // GGUF order: ne[0] is the row length
  uint32_t type;
  uint64_t nbytes;
};

// The small test file: 3 tensors (F32 3x8, F16 8, Q8_0 2x32) and metadata of
// every value type. Options let one field be wrong.
struct Small {
  uint32_t version = 3;
  uint64_t alignment = 0;  // 0: no general.alignment key (default 32)
  std::vector<TensorSpec> tensors = {
      {"tok_embd.weight", {8, 3}, 0, 8 * 3 * 4},
      {"output_norm.weight", {8}, 1, 8 * 2},
      {"blk.0.attn_q.weight", {32, 2}, 8, 2 * 34},
  };
  std::vector<uint64_t> offsets;  // filled by build() unless preset

  size_t header_end = 0;  // where the tensor data region starts

  Bytes build() {
    Writer w;
    w.b = {'G', 'G', 'U', 'F'};
    w.put<uint32_t>(version);
    w.put<uint64_t>(tensors.size());
    w.put<uint64_t>(alignment ? 11 : 10);
    w.key("general.architecture", STR), w.str("llama");
    w.key("llama.block_count", U32), w.put<uint32_t>(2);
    w.key("llama.rope.freq_base", F32), w.put<float>(10000.0f);
    w.key("t.i8", I8), w.put<int8_t>(-5);
    w.key("t.u64", U64), w.put<uint64_t>(1ull << 40);
    w.key("t.f64", F64), w.put<double>(0.25);
    w.key("t.bool", BOOL), w.put<uint8_t>(1);
    w.key("tokenizer.ggml.tokens", ARR), w.put<uint32_t>(STR), w.put<uint64_t>(3);
    w.str("<s>"), w.str("a"), w.str("");
    w.key("tokenizer.ggml.token_type", ARR), w.put<uint32_t>(I32), w.put<uint64_t>(3);
    w.put<int32_t>(3), w.put<int32_t>(1), w.put<int32_t>(-1);
    w.key("tokenizer.ggml.scores", ARR), w.put<uint32_t>(F32), w.put<uint64_t>(2);
    w.put<float>(-1.5f), w.put<float>(2.0f);
    if (alignment) w.key("general.alignment", U32), w.put<uint32_t>(uint32_t(alignment));
    const uint64_t align = alignment ? alignment : 32;
    bool preset = !offsets.empty();
    uint64_t off = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      w.str(t.name);
      w.put<uint32_t>(uint32_t(t.ne.size()));
      for (uint64_t n : t.ne) w.put<uint64_t>(n);
      w.put<uint32_t>(t.type);
      if (!preset) offsets.push_back(off);
      w.put<uint64_t>(offsets[i]);
      off = (off + t.nbytes + align - 1) / align * align;
    }
    w.pad(align);
    header_end = w.b.size();
    // Data: byte k of tensor i is (i * 37 + k) & 0x7f, so F32/F16 values are
    // finite and Q8_0 scales are finite halves.
    for (size_t i = 0; i < tensors.size(); ++i) {
      w.pad(align);
      for (uint64_t k = 0; k < tensors[i].nbytes; ++k) w.b.push_back(uint8_t((i * 37 + k) & 0x7f));
    }
    return w.b;
  }
};

std::string tmp_path(const std::string& tag) {
  return "/tmp/ckv_test_gguf_" + std::to_string(getpid()) + "_" + tag + ".gguf";
}

// Unlinks first: rewriting a file truncated in place makes ext4 flush it to
// disk on close (auto_da_alloc), which made the loops below take seconds.
void write_file(const Bytes& b, const std::string& p) {
  std::remove(p.c_str());
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::string write_tmp(const Bytes& b, const std::string& tag) {
  std::string p = tmp_path(tag);
  write_file(b, p);
  return p;
}

// Opens bytes as a file and expects a ckv::Error whose message has the path
// and every needle. Returns the message.
std::string expect_error(const Bytes& b, const std::vector<std::string>& needles, const std::string& tag = "bad") {
  std::string p = write_tmp(b, tag);
  std::string msg;
  try {
    GGUFFile f(p);
    ADD_FAILURE() << "no error for " << tag;
  } catch (const Error& e) {
    msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "want '" << n << "' in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
  std::remove(p.c_str());
  return msg;
}

template <typename T>
void poke(Bytes& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}

// Offset of the first occurrence of s in b (a field name, to find its neighbours).
size_t find(const Bytes& b, const std::string& s) {
  auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
  EXPECT_NE(it, b.end()) << s;
  return size_t(it - b.begin());
}

// Tries to open the bytes: it must either parse, with every tensor inside the
// file, or throw ckv::Error naming the file. Returns whether it parsed.
bool parses_or_errors(const Bytes& b, const std::string& p) {
  write_file(b, p);
  try {
    GGUFFile f(p);
    const uint8_t* lo = f.file()->data();
    for (const auto& t : f.tensors()) {
      const uint8_t* d = static_cast<const uint8_t*>(t.data);
      EXPECT_TRUE(d >= lo && t.nbytes <= f.file()->size() && size_t(d - lo) <= f.file()->size() - t.nbytes)
          << t.name;
      EXPECT_EQ(size_t(t.rows()) * size_t(t.row_bytes()), t.nbytes) << t.name;
      (void)dequantize(t);  // touches every byte: out of the mapping would crash
    }
    return true;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
  return false;
}

}  // namespace

TEST(GGUF, ReadsMetadataAndTensors) {
  Small s;
  Bytes b = s.build();
  std::string p = write_tmp(b, "good");
  GGUFFile f(p);
  EXPECT_EQ(f.path(), p);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 10u);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 2);
  EXPECT_EQ(f.get_float("llama.block_count"), 2.0);  // ints read as floats too
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f.get_int("t.i8"), -5);
  EXPECT_EQ(f.get_int("t.u64"), int64_t(1) << 40);
  EXPECT_EQ(f.get_float("t.f64"), 0.25);
  EXPECT_TRUE(f.get_bool("t.bool", false));
  EXPECT_EQ(f.get_str_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"<s>", "a", ""}));
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type"), (std::vector<int64_t>{3, 1, -1}));
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores"), (std::vector<double>{-1.5, 2.0}));
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.token_type"), (std::vector<double>{3, 1, -1}));
  // Defaults and errors.
  EXPECT_EQ(f.get_int("missing.key", 7), 7);
  EXPECT_EQ(f.get_float("missing.key", 1.5), 1.5);
  EXPECT_EQ(f.get_str("missing.key", "x"), "x");
  EXPECT_FALSE(f.get_bool("missing.key", false));
  EXPECT_FALSE(f.has("missing.key"));
  for (auto fn : {+[](const GGUFFile& g) { g.get_int("missing.key"); },
                  +[](const GGUFFile& g) { g.get_int("general.architecture"); },
                  +[](const GGUFFile& g) { g.get_str("llama.block_count"); },
                  +[](const GGUFFile& g) { g.get_float("t.bool"); },
                  +[](const GGUFFile& g) { g.get_bool("t.i8", true); },
                  +[](const GGUFFile& g) { g.get_str_array("tokenizer.ggml.scores"); },
                  +[](const GGUFFile& g) { g.get_int_array("tokenizer.ggml.tokens"); }}) {
    try {
      fn(f);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  try {
    f.get_int("general.architecture");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos) << e.what();
  }

  // Tensors: shapes outermost first, data where the writer put it.
  ASSERT_EQ(f.tensors().size(), 3u);
  const Tensor* emb = f.find("tok_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, DType::F32);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(emb->rows(), 3);
  EXPECT_EQ(emb->nbytes, 96u);
  EXPECT_EQ(static_cast<const uint8_t*>(emb->data) - f.file()->data(), int64_t(s.header_end));
  EXPECT_EQ(std::memcmp(emb->data, b.data() + s.header_end, 96), 0);
  const Tensor* norm = f.find("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->type, DType::F16);
  EXPECT_EQ(norm->shape, (std::vector<int64_t>{8}));
  const Tensor* q = f.find("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, DType::Q8_0);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(q->nbytes, 68u);
  EXPECT_EQ(static_cast<const uint8_t*>(q->data) - f.file()->data(), int64_t(s.header_end + 128));
  EXPECT_EQ(dequantize(*q).size(), 64u);
  EXPECT_EQ(f.find("nope"), nullptr);
  std::remove(p.c_str());
}

TEST(GGUF, VersionTwoAndAlignment) {
  Small s;
  s.version = 2;
  s.alignment = 64;
  Bytes b = s.build();
  std::string p = write_tmp(b, "v2");
  GGUFFile f(p);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_int("general.alignment"), 64);
  for (const auto& t : f.tensors()) EXPECT_EQ((static_cast<const uint8_t*>(t.data) - f.file()->data()) % 64, 0) << t.name;
  std::remove(p.c_str());
}

TEST(GGUF, GoldenFileReads) {
  CKV_REQUIRE_SHARED();
  GGUFFile f(test::shared_dir() + "/golden/gguf/quant_blocks.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  ASSERT_NE(f.find("q6_k"), nullptr);
  EXPECT_EQ(f.find("q6_k")->shape, (std::vector<int64_t>{4, 256}));
}

TEST(GGUF, HeaderErrors) {
  Small s;
  const Bytes good = s.build();
  Bytes b = good;
  b[0] = 'X';
  expect_error(b, {"magic", "expected \"GGUF\"", "XGUF"});
  expect_error(Bytes{}, {"magic"});
  expect_error(Bytes{'G', 'G'}, {"magic"});
  expect_error(Bytes{'G', 'G', 'U', 'F', 3, 0}, {"truncated", "version"});
  for (uint32_t v : {1u, 4u, 0x03000000u}) {
    b = good;
    poke<uint32_t>(b, 4, v);
    expect_error(b, {"version", "expected 2 or 3", "found " + std::to_string(v)});
  }
  b = good;
  poke<uint64_t>(b, 8, uint64_t(1) << 62);
  expect_error(b, {"tensor count", std::to_string(uint64_t(1) << 62)});
  b = good;
  poke<uint64_t>(b, 16, ~uint64_t(0));
  expect_error(b, {"metadata count"});
}

TEST(GGUF, MetadataErrors) {
  Small s;
  const Bytes good = s.build();
  // Key string length absurd.
  Bytes b = good;
  poke<uint64_t>(b, 24, uint64_t(1) << 60);
  expect_error(b, {"metadata key 0", "truncated"});
  // A value string length absurd.
  b = good;
  size_t at = find(b, "general.architecture") + 20 + 4;  // after key and type: the value's length
  poke<uint64_t>(b, at, ~uint64_t(0) - 3);
  expect_error(b, {"general.architecture", "truncated"});
  // Unknown value type names the key.
  b = good;
  poke<uint32_t>(b, find(b, "llama.block_count") + 17, 13);
  expect_error(b, {"llama.block_count", "unknown value type", "found 13"});
  // Array count absurd, and an unknown array element type.
  b = good;
  at = find(b, "tokenizer.ggml.tokens") + 21 + 4;
  poke<uint64_t>(b, at + 4, uint64_t(1) << 61);
  expect_error(b, {"tokenizer.ggml.tokens", "array count", std::to_string(uint64_t(1) << 61)});
  b = good;
  poke<uint32_t>(b, at, 77);
  expect_error(b, {"tokenizer.ggml.tokens", "element type", "found 77"});
  b = good;
  poke<uint32_t>(b, at, ARR);
  expect_error(b, {"tokenizer.ggml.tokens", "nested"});
  // A bool that is neither 0 nor 1.
  b = good;
  b[find(b, "t.bool") + 6 + 4] = 2;
  expect_error(b, {"t.bool", "found 2"});
  // Duplicate key: rename t.f64 to t.u64.
  b = good;
  std::memcpy(b.data() + find(b, "t.f64"), "t.u64", 5);
  expect_error(b, {"t.u64", "duplicate"});
  // Bad alignment values.
  for (uint64_t a : {48u, 3u}) {
    Small sa;
    sa.alignment = 64;
    b = sa.build();
    poke<uint32_t>(b, find(b, "general.alignment") + 17 + 4, uint32_t(a));
    expect_error(b, {"general.alignment", "power of two", std::to_string(a)});
  }
  {
    Small sa;
    sa.alignment = 64;
    b = sa.build();
    poke<uint32_t>(b, find(b, "general.alignment") + 17 + 4, 0);
    expect_error(b, {"general.alignment", "power of two"});
  }
}

// Alignments 1 and 2 are powers of two but leave F32 data unaligned for a
// float read in place: refused, saying what is accepted.
TEST(GGUF, AlignmentBelowFourRefused) {
  for (uint64_t a : {1u, 2u}) {
    Small s;
    s.alignment = a;
    expect_error(s.build(), {"general.alignment", "power of two from 4", "found " + std::to_string(a)});
  }
  Small s;
  s.alignment = 4;
  const std::string p = write_tmp(s.build(), "align4");
  EXPECT_NO_THROW(GGUFFile f(p));
  std::remove(p.c_str());
}

TEST(GGUF, TensorInfoErrors) {
  auto with = [](auto edit) {
    Small s;
    edit(s);
    return s.build();
  };
  expect_error(with([](Small& s) { s.tensors[2].type = 6; }),
               {"tensor blk.0.attn_q.weight: unsupported tensor type Q5_0"});
  expect_error(with([](Small& s) { s.tensors[2].type = 99; }),
               {"tensor blk.0.attn_q.weight: unsupported tensor type 99"});
  expect_error(with([](Small& s) { s.tensors[0].ne = {}; }), {"tok_embd.weight", "n_dims", "found 0"});
  expect_error(with([](Small& s) { s.tensors[0].ne = {8, 3, 1, 1, 1}; }), {"tok_embd.weight", "n_dims", "found 5"});
  expect_error(with([](Small& s) { s.tensors[0].ne = {8, 0}; }), {"tok_embd.weight", "dimension 1", "found 0"});
  expect_error(with([](Small& s) { s.tensors[0].ne = {1ull << 32, 1ull << 32}; }), {"tok_embd.weight", "dimension"});
  expect_error(with([](Small& s) { s.tensors[0].ne = {~0ull, ~0ull, ~0ull, ~0ull}; }), {"tok_embd.weight", "dimension 0"});
  expect_error(with([](Small& s) { s.tensors[0].ne = {1ull << 20, 1ull << 20, 2}; }), {"tok_embd.weight", "dimension 2"});
  expect_error(with([](Small& s) { s.tensors[2].ne = {16, 2}; }), {"blk.0.attn_q.weight", "multiple of 32", "found 16"});
  expect_error(with([](Small& s) { s.tensors[1].name = s.tensors[0].name; }), {"tok_embd.weight", "duplicate"});
  expect_error(with([](Small& s) { s.tensors[1].name = ""; }), {"tensor 1", "empty"});
  // Offsets: misaligned, past the end, and a size running past the end.
  expect_error(with([](Small& s) { s.offsets = {0, 100, 160}; }), {"output_norm.weight", "multiple of 32", "found 100"});
  expect_error(with([](Small& s) { s.offsets = {0, 128, 1ull << 62}; }), {"blk.0.attn_q.weight", "past end"});
  expect_error(with([](Small& s) { s.offsets = {0, 128, ~0ull - 31}; }), {"blk.0.attn_q.weight", "past end"});
  // A larger shape than the data written: the size runs past the end.
  expect_error(with([](Small& s) { s.tensors[2].ne = {32, 4}; }), {"blk.0.attn_q.weight", "past end"});
  // Two tensors sharing bytes: output_norm inside tok_embd's 96 bytes.
  expect_error(with([](Small& s) { s.offsets = {0, 64, 128}; }),
               {"output_norm.weight", "overlaps tensor tok_embd.weight", "expected offset >= 96"});
  // Same offset for two tensors.
  expect_error(with([](Small& s) { s.offsets = {0, 128, 128}; }), {"overlaps", "output_norm.weight"});
  // A huge name length.
  Bytes b = Small().build();
  poke<uint64_t>(b, find(b, "tok_embd.weight") - 8, uint64_t(1) << 50);
  expect_error(b, {"tensor 0 name", "truncated"});
}

// Every prefix of a valid file shorter than its data must fail cleanly.
TEST(GGUF, TruncatedSmallFile) {
  Small s;
  const Bytes good = s.build();
  const std::string p = tmp_path("trunc_small");
  int parsed = 0;
  for (size_t cut = 0; cut < good.size(); ++cut) {
    Bytes b(good.begin(), good.begin() + long(cut));
    if (parses_or_errors(b, p)) ++parsed;
  }
  EXPECT_EQ(parsed, 0);
  EXPECT_TRUE(parses_or_errors(good, p));
  std::remove(p.c_str());
}

TEST(GGUF, TruncatedGoldenFile) {
  CKV_REQUIRE_SHARED();
  const std::string src = test::shared_dir() + "/golden/gguf/quant_blocks.gguf";
  const std::string text = test::read_text(src);
  const Bytes good(text.begin(), text.end());
  size_t data_end = 0, data_begin = good.size();
  {
    GGUFFile f(src);
    for (const auto& t : f.tensors()) {
      size_t off = size_t(static_cast<const uint8_t*>(t.data) - f.file()->data());
      data_begin = std::min(data_begin, off);
      data_end = std::max(data_end, off + t.nbytes);
    }
  }
  const std::string p = tmp_path("trunc_golden");
  // Every offset through the header and metadata, then a sample of the data.
  std::vector<size_t> cuts;
  for (size_t c = 0; c <= data_begin; ++c) cuts.push_back(c);
  for (size_t c = data_begin + 1; c < data_end; c += 13) cuts.push_back(c);
  cuts.push_back(data_end - 1);
  for (size_t cut : cuts) {
    Bytes b(good.begin(), good.begin() + long(cut));
    EXPECT_FALSE(parses_or_errors(b, p)) << "cut at " << cut;
  }
  std::remove(p.c_str());
}

// Corrupting any single header byte must parse or fail cleanly, never crash.
TEST(GGUF, CorruptedHeaderBytes) {
  Small s;
  const Bytes good = s.build();
  const std::string p = tmp_path("corrupt");
  for (size_t at = 0; at < s.header_end; ++at) {
    for (uint8_t v : {uint8_t(0), uint8_t(0xff), uint8_t(0x80), uint8_t(good[at] + 1), uint8_t(good[at] ^ 0x40)}) {
      Bytes b = good;
      b[at] = v;
      parses_or_errors(b, p);
    }
  }
  std::remove(p.c_str());
}

TEST(GGUF, MissingFile) {
  const std::string p = tmp_path("does_not_exist");
  try {
    GGUFFile f(p);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
  }
}
