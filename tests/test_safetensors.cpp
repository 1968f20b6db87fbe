// Safetensors reader, config.json parsing and the HF directory loader: the
// four tiny-hf checkpoints load with their config's values, and every kind of
// damaged file or config gives a ckv::Error naming the file and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "model/hf_config.h"
#include "model/model.h"
#include "model/quant.h"
#include "model/safetensors.h"
#include "test_util.h"

using ckv::test::error_of;
using ckv::test::TmpDir;
using ckv::test::write_file;
#include "util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string tiny(const std::string& name) { return ckv::test::shared_dir() + "/models/tiny-hf/" + name; }

// A scratch directory removed at the end of the test.

// 8-byte length + header text + data.
std::string st_bytes(const std::string& header, const std::string& data = "") {
  uint64_t n = header.size();
  std::string s(reinterpret_cast<const char*>(&n), 8);
  return s + header + data;
}

// Splits a safetensors file into its parsed header and its data section.
void split(const std::string& path, json& header, std::string& data) {
  std::string s = ckv::test::read_text(path);
  uint64_t n;
  std::memcpy(&n, s.data(), 8);
  header = json::parse(s.substr(8, n));
  data = s.substr(8 + n);
}

// Rewrites a safetensors file with an edited header, the header padded with
// spaces to `pad_to` modulo 8 (offsets are relative to the data, so any
// length is valid).
void edit_header(const std::string& path, const std::function<void(json&, std::string&)>& edit, int pad_to = 0) {
  json h;
  std::string data;
  split(path, h, data);
  edit(h, data);
  std::string text = h.dump();
  while (text.size() % 8 != static_cast<size_t>(pad_to)) text += ' ';
  write_file(path, st_bytes(text, data));
}

// Copy of a checkpoint directory into a writable scratch dir.
void copy_dir(const std::string& from, const TmpDir& to) {
  for (auto& e : fs::directory_iterator(from))
    fs::copy_file(e.path(), to.path / e.path().filename(), fs::copy_options::overwrite_existing);
  for (auto& e : fs::directory_iterator(to.path))
    fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write);
}


std::vector<float> as_f32(const ckv::Tensor& t) {
  EXPECT_EQ(t.type, ckv::DType::F32);
  std::vector<float> v(t.numel());
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

// Raw stored values of a tensor, converted to float for comparison.
std::vector<float> stored_values(const ckv::Tensor& t) {
  std::vector<float> v(t.numel());
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    if (t.type == ckv::DType::F32) {
      std::memcpy(&v[i], static_cast<const char*>(t.data) + 4 * i, 4);
      continue;
    }
    std::memcpy(&h, static_cast<const char*>(t.data) + 2 * i, 2);
    v[i] = t.type == ckv::DType::F16 ? ckv::f16_to_f32(h) : ckv::bf16_to_f32(h);
  }
  return v;
}

// The checkpoint's tensor of that name, from whichever file holds it.
ckv::Tensor file_tensor(const std::string& dir, const std::string& name,
                        std::vector<std::unique_ptr<ckv::SafetensorsFile>>& keep) {
  for (auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    keep.push_back(std::make_unique<ckv::SafetensorsFile>(e.path().string()));
    if (const ckv::Tensor* t = keep.back()->find(name)) return *t;
  }
  ADD_FAILURE() << "no tensor " << name << " in " << dir;
  return {};
}

struct Expect {
  std::string name, arch;
  ckv::DType type;
  bool tied, bias, qk_norm;
  std::string rope;
};

}  // namespace

class TinyHF : public ::testing::TestWithParam<Expect> {};

TEST_P(TinyHF, LoadsWithConfigValues) {
  CKV_REQUIRE_SHARED();
  const Expect& e = GetParam();
  const std::string dir = tiny(e.name);
  json cfg = ckv::test::read_json(dir + "/config.json");
  auto m = ckv::load_model(dir);
  const ckv::ModelConfig& c = m->config;

  EXPECT_EQ(m->format, "safetensors");
  EXPECT_EQ(m->name, e.name);
  EXPECT_EQ(c.arch, e.arch);
  EXPECT_EQ(c.dim, cfg["hidden_size"].get<int>());
  EXPECT_EQ(c.hidden_dim, cfg["intermediate_size"].get<int>());
  EXPECT_EQ(c.n_layers, cfg["num_hidden_layers"].get<int>());
  EXPECT_EQ(c.n_heads, cfg["num_attention_heads"].get<int>());
  EXPECT_EQ(c.n_kv_heads, cfg["num_key_value_heads"].get<int>());
  int hd = cfg.contains("head_dim") ? cfg["head_dim"].get<int>() : c.dim / c.n_heads;
  EXPECT_EQ(c.head_dim, hd);
  EXPECT_EQ(c.vocab_size, cfg["vocab_size"].get<int>());
  EXPECT_EQ(c.context, cfg["max_position_embeddings"].get<int>());
  EXPECT_FLOAT_EQ(c.norm_eps, cfg["rms_norm_eps"].get<float>());
  const json& rp = cfg.contains("rope_parameters") ? cfg["rope_parameters"] : cfg;
  EXPECT_FLOAT_EQ(c.rope.theta, rp["rope_theta"].get<float>());
  EXPECT_EQ(c.rope.scaling, e.rope);
  EXPECT_FALSE(c.rope.interleaved);
  if (e.rope == "llama3") {
    const json& s = cfg["rope_scaling"];
    EXPECT_FLOAT_EQ(c.rope.factor, s["factor"].get<float>());
    EXPECT_FLOAT_EQ(c.rope.low_freq_factor, s["low_freq_factor"].get<float>());
    EXPECT_FLOAT_EQ(c.rope.high_freq_factor, s["high_freq_factor"].get<float>());
    EXPECT_EQ(c.rope.original_context, s["original_max_position_embeddings"].get<int>());
  }
  EXPECT_EQ(c.qkv_bias, e.bias);
  EXPECT_EQ(c.qk_norm, e.qk_norm);
  EXPECT_EQ(c.tied_output, e.tied);
  EXPECT_TRUE(m->vocab.tokens.empty());  // no tokenizer.json in these

  // Shapes and types: matrices keep the stored type, norms/biases are F32.
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, Q = c.n_heads * hd, KV = c.n_kv_heads * hd;
  EXPECT_EQ(m->tok_embd.shape, (std::vector<int64_t>{V, D}));
  EXPECT_EQ(m->tok_embd.type, e.type);
  EXPECT_EQ(m->output.shape, (std::vector<int64_t>{V, D}));
  EXPECT_EQ(m->output.data == m->tok_embd.data, e.tied);
  EXPECT_EQ(m->output_norm.type, ckv::DType::F32);
  ASSERT_EQ(m->layers.size(), size_t(c.n_layers));
  for (const ckv::LayerWeights& l : m->layers) {
    EXPECT_EQ(l.wq.shape, (std::vector<int64_t>{Q, D}));
    EXPECT_EQ(l.wk.shape, (std::vector<int64_t>{KV, D}));
    EXPECT_EQ(l.wv.shape, (std::vector<int64_t>{KV, D}));
    EXPECT_EQ(l.wo.shape, (std::vector<int64_t>{D, Q}));
    EXPECT_EQ(l.w_gate.shape, (std::vector<int64_t>{F, D}));
    EXPECT_EQ(l.w_up.shape, (std::vector<int64_t>{F, D}));
    EXPECT_EQ(l.w_down.shape, (std::vector<int64_t>{D, F}));
    for (const ckv::Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      EXPECT_EQ(t->type, e.type) << t->name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % (e.type == ckv::DType::F32 ? 4 : 2), 0u) << t->name;
    }
    for (const ckv::Tensor* t : {&l.attn_norm, &l.ffn_norm}) {
      EXPECT_EQ(t->type, ckv::DType::F32);
      EXPECT_EQ(t->shape, (std::vector<int64_t>{D}));
    }
    EXPECT_EQ(l.bq.empty(), !e.bias);
    if (e.bias) {
      EXPECT_EQ(l.bq.shape, (std::vector<int64_t>{Q}));
      EXPECT_EQ(l.bk.shape, (std::vector<int64_t>{KV}));
      EXPECT_EQ(l.bv.type, ckv::DType::F32);
    }
    EXPECT_EQ(l.q_norm.empty(), !e.qk_norm);
    if (e.qk_norm) {
      EXPECT_EQ(l.q_norm.shape, (std::vector<int64_t>{hd}));
      EXPECT_EQ(l.k_norm.type, ckv::DType::F32);
    }
  }

  // Values: the embedding is the stored bytes; norms are their conversion.
  std::vector<std::unique_ptr<ckv::SafetensorsFile>> keep;
  ckv::Tensor emb = file_tensor(dir, "model.embed_tokens.weight", keep);
  ASSERT_EQ(emb.nbytes, m->tok_embd.nbytes);
  EXPECT_EQ(std::memcmp(emb.data, m->tok_embd.data, emb.nbytes), 0);
  EXPECT_EQ(as_f32(m->output_norm), stored_values(file_tensor(dir, "model.norm.weight", keep)));
  EXPECT_EQ(as_f32(m->layers[1].ffn_norm),
            stored_values(file_tensor(dir, "model.layers.1.post_attention_layernorm.weight", keep)));
  if (e.qk_norm) {
    EXPECT_EQ(as_f32(m->layers[0].k_norm), stored_values(file_tensor(dir, "model.layers.0.self_attn.k_norm.weight", keep)));
  }
  if (e.bias) {
    EXPECT_EQ(as_f32(m->layers[1].bv), stored_values(file_tensor(dir, "model.layers.1.self_attn.v_proj.bias", keep)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, TinyHF,
    ::testing::Values(Expect{"tiny-llama3", "llama", ckv::DType::BF16, false, false, false, "llama3"},
                      Expect{"tiny-qwen2", "qwen2", ckv::DType::F32, true, true, false, "default"},
                      Expect{"tiny-qwen3", "qwen3", ckv::DType::BF16, true, false, true, "default"},
                      Expect{"tiny-mistral", "mistral", ckv::DType::F16, false, false, false, "default"}),
    [](const auto& info) {
      std::string n = info.param.name.substr(5);
      return n;
    });

TEST(TinyHFDir, ShardedKeepsEveryShardMapped) {
  CKV_REQUIRE_SHARED();
  auto m = ckv::load_model(tiny("tiny-llama3") + "/");
  EXPECT_EQ(m->name, "tiny-llama3");
  EXPECT_GE(m->storage.size(), 3u);
}

// ---- The parser on hand-made files ----

TEST(SafetensorsParser, MinimalFiles) {
  TmpDir d("st");
  write_file(d / "empty.st", st_bytes("{}"));
  EXPECT_TRUE(ckv::SafetensorsFile(d / "empty.st").tensors().empty());
  // Header padded with spaces; metadata; a zero-sized tensor.
  std::string data(16, '\0');
  float one = 1.0f;
  std::memcpy(data.data(), &one, 4);
  write_file(d / "ok.st", st_bytes(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],)"
                                   R"("data_offsets":[0,16]},"z":{"dtype":"BF16","shape":[0],"data_offsets":[16,16]}}   )",
                                   data));
  ckv::SafetensorsFile f(d / "ok.st");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const ckv::Tensor* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a->nbytes, 16u);
  EXPECT_EQ(as_f32(*a)[0], 1.0f);
  EXPECT_EQ(f.find("b"), nullptr);
}

TEST(SafetensorsParser, RefusesBadFiles) {
  TmpDir d("st");
  const std::string p = d / "bad.safetensors";
  auto bad = [&](const std::string& bytes, std::vector<std::string> want) {
    write_file(p, bytes);
    std::string msg = error_of([&] { ckv::SafetensorsFile f(p); });
    want.push_back(p);
    for (auto& w : want) EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
  };
  auto hdr = [](const std::string& tensor_json, size_t data_bytes = 16) {
    return st_bytes(R"({"t":)" + tensor_json + "}", std::string(data_bytes, '\0'));
  };
  bad("", {"too short"});
  bad("1234567", {"too short"});
  uint64_t huge = uint64_t(1) << 40;
  bad(std::string(reinterpret_cast<const char*>(&huge), 8) + "{}", {"absurd"});
  uint64_t thousand = 1000;
  bad(std::string(reinterpret_cast<const char*>(&thousand), 8) + "{}", {"past the end"});
  bad(st_bytes("{\"t\": {\"dtype\""), {"not valid JSON"});
  bad(st_bytes(""), {"not valid JSON"});
  bad(st_bytes("[1, 2]"), {"not a JSON object"});
  bad(st_bytes(R"({"t": 3})"), {"'t'", "not an object"});
  bad(hdr(R"({"shape":[4],"data_offsets":[0,16]})"), {"missing dtype"});
  bad(hdr(R"({"dtype":"F32","data_offsets":[0,16]})"), {"missing shape"});
  bad(hdr(R"({"dtype":"F32","shape":[4]})"), {"missing data_offsets"});
  bad(hdr(R"({"dtype":7,"shape":[4],"data_offsets":[0,16]})"), {"dtype is not a string"});
  bad(hdr(R"({"dtype":"I64","shape":[2],"data_offsets":[0,16]})"), {"I64", "not supported"});
  bad(hdr(R"({"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]})"), {"F8_E4M3"});
  bad(hdr(R"({"dtype":"WHAT","shape":[4],"data_offsets":[0,16]})"), {"WHAT"});
  bad(hdr(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})"), {"shape is not an array"});
  bad(hdr(R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})"), {"shape entry", "-4"});
  bad(hdr(R"({"dtype":"F32","shape":[4.5],"data_offsets":[0,16]})"), {"shape entry"});
  bad(hdr(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]})"), {"too large"});
  bad(hdr(R"({"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]})"), {"too large"});
  bad(hdr(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})"), {"data_offsets"});
  bad(hdr(R"({"dtype":"F32","shape":[4],"data_offsets":[16,0]})"), {"out of order"});
  bad(hdr(R"({"dtype":"F32","shape":[4],"data_offsets":[-1,16]})"), {"data_offsets begin"});
  bad(hdr(R"({"dtype":"F32","shape":[4],"data_offsets":[16,32]})"), {"past the end"});
  bad(hdr(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 15), {"past the end"});
  bad(hdr(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})"), {"needs 12 bytes", "give 16"});
  bad(st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
               R"("b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})",
               std::string(20, '\0')),
      {"overlap"});
  bad(st_bytes(R"({"__metadata__": [1]})"), {"__metadata__"});
}

// ---- Damaged copies of real checkpoints ----

TEST(SafetensorsLoader, TruncatedFilesAreRefused) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-qwen3"), d);
  const std::string st = d / "model.safetensors";
  const std::string full = ckv::test::read_text(st);
  uint64_t hlen;
  std::memcpy(&hlen, full.data(), 8);
  std::vector<size_t> cuts;
  for (size_t i = 0; i <= 16; ++i) cuts.push_back(i);
  for (size_t c : {hlen + 7, hlen + 8, hlen + 9, full.size() - 1}) cuts.push_back(c);
  for (size_t c = 17; c < full.size(); c += 1009) cuts.push_back(c);
  for (size_t cut : cuts) {
    write_file(st, full.substr(0, cut));
    std::string msg = error_of([&] { ckv::load_model(d.path.string()); });
    EXPECT_NE(msg.find(st), std::string::npos) << "cut at " << cut << ": " << msg;
  }
  write_file(st, full);
  EXPECT_NO_THROW(ckv::load_model(d.path.string()));
}

TEST(SafetensorsLoader, RandomHeaderDamageNeverCrashes) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-mistral"), d);
  const std::string st = d / "model.safetensors";
  const std::string full = ckv::test::read_text(st);
  uint64_t hlen;
  std::memcpy(&hlen, full.data(), 8);
  uint32_t rng = 12345;
  auto next = [&] { return rng = rng * 1664525u + 1013904223u; };
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::string bad = full;
    for (int k = 0; k < 1 + i % 3; ++k) bad[(next() >> 8) % (8 + hlen)] = static_cast<char>(next() >> 24);
    write_file(st, bad);
    try {
      ckv::load_model(d.path.string());  // some flips are harmless (e.g. in a float literal's digits)
    } catch (const ckv::Error& e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find(d.path.string()), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(refused, 200);
}

TEST(SafetensorsLoader, TruncatedShardIsRefused) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-llama3"), d);
  const std::string shard = d / "model-00002-of-00003.safetensors";
  const std::string full = ckv::test::read_text(shard);
  for (size_t cut : {size_t(0), size_t(5), size_t(300), full.size() / 2, full.size() - 2}) {
    write_file(shard, full.substr(0, cut));
    EXPECT_ERROR(ckv::load_model(d.path.string()), shard);
  }
}

TEST(SafetensorsLoader, DamagedHeaders) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-qwen3"), d);
  const std::string st = d / "model.safetensors";
  const std::string full = ckv::test::read_text(st);
  auto reset = [&] { write_file(st, full); };
  auto load = [&] { ckv::load_model(d.path.string()); };

  // Corrupted JSON: a brace in the header becomes garbage.
  std::string broken = full;
  broken[8] = '#';
  write_file(st, broken);
  EXPECT_ERROR(load(), st, "not valid JSON");

  reset();
  edit_header(st, [](json& h, std::string&) { h["model.norm.weight"]["dtype"] = "I64"; });
  EXPECT_ERROR(load(), st, "model.norm.weight", "I64");

  reset();
  edit_header(st, [](json& h, std::string&) { h["model.norm.weight"]["dtype"] = "F8_E4M3"; });
  EXPECT_ERROR(load(), st, "F8_E4M3");

  reset();
  edit_header(st, [](json& h, std::string& data) {
    h["model.norm.weight"]["data_offsets"] = {data.size() - 64, data.size() + 64};
  });
  EXPECT_ERROR(load(), st, "model.norm.weight", "past the end");

  reset();
  edit_header(st, [](json& h, std::string&) { h.erase("model.layers.1.self_attn.q_norm.weight"); });
  EXPECT_ERROR(load(), st, "missing tensor 'model.layers.1.self_attn.q_norm.weight'");

  reset();
  edit_header(st, [](json& h, std::string&) { h["model.layers.0.self_attn.q_proj.weight"]["shape"] = {64, 128}; });
  EXPECT_ERROR(load(), st, "model.layers.0.self_attn.q_proj.weight", "expected shape [128, 64], found [64, 128]");

  reset();
  edit_header(st, [](json& h, std::string& data) {
    h["model.layers.0.self_attn.o_proj.bias"] = {
        {"dtype", "BF16"}, {"shape", {64}}, {"data_offsets", {data.size(), data.size() + 128}}};
    data += std::string(128, '\0');
  });
  EXPECT_ERROR(load(), st, "o_proj.bias");
}

TEST(SafetensorsLoader, MisalignedDataIsCopied) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-qwen2"), d);  // F32: needs 4-byte alignment
  edit_header(d / "model.safetensors", [](json&, std::string&) {}, 1);
  auto ref = ckv::load_model(tiny("tiny-qwen2"));
  auto m = ckv::load_model(d.path.string());
  for (size_t i = 0; i < m->layers.size(); ++i) {
    const ckv::Tensor& a = m->layers[i].w_down;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % 4, 0u);
    ASSERT_EQ(a.nbytes, ref->layers[i].w_down.nbytes);
    EXPECT_EQ(std::memcmp(a.data, ref->layers[i].w_down.data, a.nbytes), 0);
    EXPECT_EQ(as_f32(m->layers[i].bq), as_f32(ref->layers[i].bq));
  }
}

TEST(SafetensorsLoader, BadIndex) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-llama3"), d);
  const std::string idx = d / "model.safetensors.index.json";
  json j = ckv::test::read_json(idx);
  auto with = [&](const json& v) { write_file(idx, v.dump()); };

  json moved = j;  // listed in the wrong shard
  moved["weight_map"]["model.norm.weight"] = "model-00001-of-00003.safetensors";
  with(moved);
  EXPECT_ERROR(ckv::load_model(d.path.string()), "model-00001-of-00003.safetensors",
               "missing tensor 'model.norm.weight'");

  json gone = j;
  gone["weight_map"]["model.norm.weight"] = "model-00009-of-00003.safetensors";
  with(gone);
  EXPECT_ERROR(ckv::load_model(d.path.string()), "model-00009-of-00003.safetensors");

  json unlisted = j;
  unlisted["weight_map"].erase("model.layers.0.mlp.up_proj.weight");
  with(unlisted);
  EXPECT_ERROR(ckv::load_model(d.path.string()), idx, "model.layers.0.mlp.up_proj.weight");

  write_file(idx, "{\"weight_map\": ");
  EXPECT_ERROR(ckv::load_model(d.path.string()), idx, "not valid JSON");
  write_file(idx, "{}");
  EXPECT_ERROR(ckv::load_model(d.path.string()), idx, "weight_map");
}

TEST(SafetensorsLoader, MissingFiles) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  EXPECT_ERROR(ckv::load_model(d.path.string()), "config.json");
  fs::copy_file(tiny("tiny-qwen3") + "/config.json", d.path / "config.json");
  EXPECT_ERROR(ckv::load_model(d.path.string()), "no model.safetensors");
}

// ---- config.json ----

TEST(HFConfig, DamagedConfigsAreRefused) {
  CKV_REQUIRE_SHARED();
  TmpDir d("st");
  copy_dir(tiny("tiny-llama3"), d);
  const std::string cp = d / "config.json";
  const json orig = ckv::test::read_json(cp);
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = orig;
    edit(j);
    write_file(cp, j.dump());
  };
  auto load = [&] { ckv::load_model(d.path.string()); };

  with([](json& j) {
    j["model_type"] = "gpt2";
    j["architectures"] = {"GPT2LMHeadModel"};
  });
  EXPECT_ERROR(load(), cp, "unsupported architecture 'gpt2'");
  with([](json& j) {
    j.erase("model_type");
    j["architectures"] = {"FalconForCausalLM"};
  });
  EXPECT_ERROR(load(), cp, "FalconForCausalLM");
  with([](json& j) { j["rope_scaling"]["rope_type"] = "yarn"; });
  EXPECT_ERROR(load(), cp, "unsupported rope type 'yarn'");
  with([](json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; });
  EXPECT_ERROR(load(), cp, "dynamic");
  with([](json& j) { j["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 10000.0}}; });
  EXPECT_ERROR(load(), cp, "longrope");
  with([](json& j) { j["rope_scaling"].erase("low_freq_factor"); });
  EXPECT_ERROR(load(), cp, "rope_scaling.low_freq_factor");
  with([](json& j) { j.erase("hidden_size"); });
  EXPECT_ERROR(load(), cp, "missing field 'hidden_size'");
  with([](json& j) { j.erase("vocab_size"); });
  EXPECT_ERROR(load(), cp, "vocab_size");
  with([](json& j) { j["num_attention_heads"] = -4; });
  EXPECT_ERROR(load(), cp, "num_attention_heads", "-4");
  with([](json& j) { j["num_key_value_heads"] = 3; });
  EXPECT_ERROR(load(), cp, "num_key_value_heads");
  with([](json& j) { j["intermediate_size"] = "128"; });
  EXPECT_ERROR(load(), cp, "intermediate_size");
  with([](json& j) { j["rms_norm_eps"] = 0; });
  EXPECT_ERROR(load(), cp, "rms_norm_eps");
  with([](json& j) { j["hidden_act"] = "gelu"; });
  EXPECT_ERROR(load(), cp, "gelu");
  with([](json& j) { j["attention_bias"] = true; });
  EXPECT_ERROR(load(), cp, "attention_bias");
  // A config that disagrees with the weights: shapes report expected vs found.
  with([](json& j) { j["intermediate_size"] = 96; });
  EXPECT_ERROR(load(), "mlp.gate_proj.weight", "expected shape [96, 64], found [128, 64]");
  write_file(cp, "{ not json");
  EXPECT_ERROR(load(), cp, "not valid JSON");
}

TEST(HFConfig, RopeLayouts) {
  json base = {{"model_type", "llama"},       {"hidden_size", 256},       {"intermediate_size", 512},
               {"num_hidden_layers", 2},      {"num_attention_heads", 8}, {"vocab_size", 1000},
               {"max_position_embeddings", 4096}};
  ckv::ModelConfig c = ckv::parse_hf_config(base, "c.json");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_kv_heads, 8);  // defaults to heads
  EXPECT_EQ(c.head_dim, 32);   // hidden / heads
  EXPECT_EQ(c.rope.scaling, "default");
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_FALSE(c.tied_output);

  json lin = base;
  lin["rope_theta"] = 50000.0;
  lin["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  c = ckv::parse_hf_config(lin, "c.json");
  EXPECT_EQ(c.rope.scaling, "linear");
  EXPECT_FLOAT_EQ(c.rope.factor, 4.0f);
  EXPECT_FLOAT_EQ(c.rope.theta, 50000.0f);

  json l3 = base;  // newer layout, theta inside
  l3["rope_parameters"] = {{"rope_type", "llama3"},        {"rope_theta", 500000.0},
                           {"factor", 32.0},               {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},      {"original_max_position_embeddings", 8192}};
  c = ckv::parse_hf_config(l3, "c.json");
  EXPECT_EQ(c.rope.scaling, "llama3");
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_FLOAT_EQ(c.rope.factor, 32.0f);
  EXPECT_EQ(c.rope.original_context, 8192);

  json q3 = base;  // architecture from the class name; qwen3's own head_dim default
  q3.erase("model_type");
  q3["architectures"] = {"Qwen3ForCausalLM"};
  q3["num_key_value_heads"] = 2;
  c = ckv::parse_hf_config(q3, "c.json");
  EXPECT_EQ(c.arch, "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 128);

  json odd = base;
  odd["num_attention_heads"] = 7;
  EXPECT_ERROR(ckv::parse_hf_config(odd, "c.json"), "c.json", "not a multiple");
  json none = base;
  none.erase("model_type");
  EXPECT_ERROR(ckv::parse_hf_config(none, "c.json"), "c.json", "unsupported architecture");
  json noparams = base;
  noparams["rope_scaling"] = {{"factor", 2.0}};
  EXPECT_ERROR(ckv::parse_hf_config(noparams, "c.json"), "rope_scaling.rope_type");
}
