// llama2.c legacy checkpoints: stories260K loads with the header values from
// its README as views into the file; truncated files and bad headers give a
// ckv::Error naming the file and the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "model/model.h"
#include "test_util.h"

using ckv::test::error_of;
using ckv::test::TmpDir;
using ckv::test::write_file;
#include "util/error.h"

namespace fs = std::filesystem;

namespace {

std::string model_dir() { return ckv::test::source_dir() + "/models/stories260k"; }
std::string model_bin() { return model_dir() + "/stories260K.bin"; }



// The file with header field i replaced.
std::string with_field(std::string bytes, int i, int32_t v) {
  std::memcpy(bytes.data() + 4 * i, &v, 4);
  return bytes;
}

}  // namespace

TEST(Llama2c, Stories260K) {
  auto m = ckv::load_model(model_bin());
  const ckv::ModelConfig& c = m->config;
  EXPECT_EQ(m->format, "llama2c");
  EXPECT_EQ(m->name, "stories260K");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.context, 512);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.scaling, "default");
  EXPECT_TRUE(c.rope.interleaved);
  EXPECT_TRUE(c.tied_output);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);

  // Views into the file, in run.c's order.
  const std::string raw = ckv::test::read_text(model_bin());
  auto at = [&](const ckv::Tensor& t, size_t float_offset) {
    EXPECT_EQ(t.type, ckv::DType::F32) << t.name;
    ASSERT_LE(28 + float_offset * 4 + t.nbytes, raw.size()) << t.name;
    EXPECT_EQ(std::memcmp(t.data, raw.data() + 28 + float_offset * 4, t.nbytes), 0) << t.name;
  };
  const size_t D = 64, F = 172, L = 5, V = 512, KV = 32;
  EXPECT_EQ(m->tok_embd.shape, (std::vector<int64_t>{512, 64}));
  at(m->tok_embd, 0);
  EXPECT_EQ(m->output.data, m->tok_embd.data);
  size_t off = V * D;
  at(m->layers[0].attn_norm, off);
  at(m->layers[4].attn_norm, off + 4 * D);
  off += L * D;
  at(m->layers[1].wq, off + D * D);
  off += L * D * D;
  at(m->layers[2].wk, off + 2 * KV * D);
  EXPECT_EQ(m->layers[2].wk.shape, (std::vector<int64_t>{32, 64}));
  off += 2 * L * KV * D;  // wk, wv
  at(m->layers[3].wo, off + 3 * D * D);
  off += L * D * D;
  at(m->layers[0].ffn_norm, off);
  off += L * D;
  at(m->layers[1].w_gate, off + F * D);
  EXPECT_EQ(m->layers[1].w_gate.shape, (std::vector<int64_t>{172, 64}));
  off += L * F * D;
  at(m->layers[4].w_down, off + 4 * D * F);
  EXPECT_EQ(m->layers[4].w_down.shape, (std::vector<int64_t>{64, 172}));
  off += L * D * F;
  at(m->layers[4].w_up, off + 4 * F * D);
  off += L * F * D;
  at(m->output_norm, off);

  // tok512.bin beside the weights is picked up.
  EXPECT_EQ(m->vocab.tokens.size(), 512u);
}

TEST(Llama2c, TokenizerLookup) {
  TmpDir d("l2c");
  fs::copy_file(model_bin(), d.path / "m.bin");
  auto m = ckv::load_model(d / "m.bin");
  EXPECT_TRUE(m->vocab.tokens.empty());  // none beside it: left empty

  ckv::LoadOptions opt;
  opt.tokenizer_path = model_dir() + "/tok512.bin";
  m = ckv::load_model(d / "m.bin", opt);
  EXPECT_EQ(m->vocab.tokens.size(), 512u);

  fs::copy_file(model_dir() + "/tok512.bin", d.path / "tokenizer.bin");
  m = ckv::load_model(d / "m.bin");
  EXPECT_EQ(m->vocab.tokens.size(), 512u);

  opt.tokenizer_path = d / "missing.bin";
  EXPECT_ERROR(ckv::load_model(d / "m.bin", opt), "missing.bin");
}

TEST(Llama2c, TruncatedFilesAreRefused) {
  TmpDir d("l2c");
  const std::string p = d / "t.bin";
  const std::string full = ckv::test::read_text(model_bin());
  std::vector<size_t> cuts = {0, 1, 3, 4, 27, 28, 29, 32, full.size() - 4, full.size() - 1};
  for (size_t c = 100; c < full.size(); c += 40009) cuts.push_back(c);
  for (size_t cut : cuts) {
    write_file(p, full.substr(0, cut));
    std::string msg = error_of([&] { ckv::load_model(p); });
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_NE(msg.find("found " + std::to_string(cut)), std::string::npos) << msg;
    if (cut >= 28) {
      EXPECT_NE(msg.find("expected " + std::to_string(full.size()) + " bytes"), std::string::npos) << msg;
    }
  }
  // Extra bytes after the weights are tolerated.
  write_file(p, full + std::string(16, '\0'));
  EXPECT_NO_THROW(ckv::load_model(p));
}

TEST(Llama2c, BadHeaders) {
  TmpDir d("l2c");
  const std::string p = d / "h.bin";
  const std::string full = ckv::test::read_text(model_bin());
  auto bad = [&](int field, int32_t v, std::vector<std::string> want) {
    write_file(p, with_field(full, field, v));
    std::string msg = error_of([&] { ckv::load_model(p); });
    want.push_back(p);
    for (auto& w : want) EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
  };
  bad(0, 0, {"dim = 0"});
  bad(0, -64, {"dim = -64"});
  bad(1, 0, {"hidden_dim"});
  bad(2, -1, {"n_layers"});
  bad(3, 0, {"n_heads"});
  bad(4, 0, {"n_kv_heads"});
  bad(5, 0, {"vocab_size"});
  bad(5, INT_MIN, {"vocab_size"});
  bad(6, 0, {"seq_len"});
  bad(0, INT_MAX, {"dim", "out of range"});
  bad(3, 7, {"not a multiple of n_heads"});
  bad(4, 3, {"not a multiple of n_kv_heads"});
  bad(3, 64, {"odd"});  // head dim 1
  bad(0, 1 << 20, {"head dim 131072", "at most 1024"});  // over 8 heads: a head dim past the cap
  bad(0, 4096, {"expected", "bytes, found"});  // plausible header, far too little data
  bad(2, 1 << 20, {"expected", "bytes, found"});
  // Negative vocab: a separate classifier follows, which this file lacks.
  bad(5, -512, {"expected " + std::to_string(full.size() + 512 * 64 * 4) + " bytes"});
}

TEST(Llama2c, UnsharedClassifier) {
  TmpDir d("l2c");
  const std::string p = d / "u.bin";
  std::string full = ckv::test::read_text(model_bin());
  std::string cls(512 * 64 * 4, '\0');
  for (size_t i = 0; i < cls.size(); i += 4) {
    float v = static_cast<float>(i % 97) * 0.01f;
    std::memcpy(cls.data() + i, &v, 4);
  }
  write_file(p, with_field(full, 5, -512) + cls);
  auto m = ckv::load_model(p);
  EXPECT_FALSE(m->config.tied_output);
  EXPECT_EQ(m->config.vocab_size, 512);
  EXPECT_NE(m->output.data, m->tok_embd.data);
  EXPECT_EQ(m->output.shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(std::memcmp(m->output.data, cls.data(), cls.size()), 0);
}
