// fuzz_seeds OUT: writes the seed corpus of every fuzz target into
// OUT/<target>/, made at run time from the real files (../shared: SmolLM2's
// GGUF metadata and tokenizer, the tiny-hf checkpoints, the golden texts and
// chat renderings, the authors' published profiles; models/: stories260K and
// tok512) so that nothing large is committed. Tiny models keep the real
// files' metadata and tokenizers with small shapes, so the fuzzers reach the
// forward step quickly. Without ../shared the seeds come from models/ alone.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "model/gguf.h"
#include "model/tensor.h"
#include "profile/profile.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/pretokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using ckv::DType;

namespace {

std::string out_dir;
const std::string kShared = CKV_SHARED_DIR;
const std::string kSource = CKV_SOURCE_DIR;
const std::string kSmol = kShared + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kTok512 = kSource + "/models/stories260k/tok512.bin";
int n_written = 0;

bool exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(out_dir + "/" + target);
  std::ofstream f(out_dir + "/" + target + "/" + name, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write seed " + target + "/" + name);
  ++n_written;
}

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? std::string(ckv::fuzz::kPartSep) : "") + parts[i];
  return s;
}

// Deterministic pseudo-random numbers for tensor contents.
struct Lcg {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint32_t next() { return static_cast<uint32_t>((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33); }
  float uniform() { return (next() & 0xFFFFFF) / float(0x1000000) - 0.5f; }
};

uint16_t f16_bits(float f) {  // small normal values only
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xFF, m = x & 0x7FFFFF;
  if (e < 103) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | ((e - 112) << 10) | (m >> 13));
}

// Bytes of a tensor of `rows` x `cols` of type t, random but with sane block scales.
std::string tensor_bytes(DType t, int64_t rows, int64_t cols, Lcg& r) {
  const int64_t nb = cols / ckv::dtype_block_elems(t) * rows, bb = ckv::dtype_block_bytes(t);
  std::string b(static_cast<size_t>(nb * bb), '\0');
  auto put16 = [&](size_t off, uint16_t v) { std::memcpy(&b[off], &v, 2); };
  for (int64_t i = 0; i < nb; ++i) {
    const size_t o = static_cast<size_t>(i * bb);
    switch (t) {
      case DType::F32: {
        float v = r.uniform() * 0.2f;
        std::memcpy(&b[o], &v, 4);
        break;
      }
      case DType::F16: put16(o, f16_bits(r.uniform() * 0.2f)); break;
      case DType::BF16: {
        float v = r.uniform() * 0.2f;
        uint32_t x;
        std::memcpy(&x, &v, 4);
        put16(o, static_cast<uint16_t>(x >> 16));
        break;
      }
      default:
        for (int64_t k = 0; k < bb; ++k) b[o + k] = static_cast<char>(r.next());
        // Scales: d (and m/dmin) lead the block, except Q6_K whose d ends it.
        if (t == DType::Q6_K) {
          put16(o + bb - 2, f16_bits(0.002f));
        } else {
          put16(o, f16_bits(0.002f));
          if (t == DType::Q4_1 || t == DType::Q4_K || t == DType::Q5_K) put16(o + 2, f16_bits(0.001f));
        }
    }
  }
  return b;
}

// A minimal GGUF v3 writer.
class GgufWriter {
 public:
  void u32(const std::string& k, uint32_t v) { key(k, 4), pod(kv_, v), ++n_kv_; }
  void f32(const std::string& k, float v) { key(k, 6), pod(kv_, v), ++n_kv_; }
  void boolean(const std::string& k, bool v) { key(k, 7), kv_ += char(v), ++n_kv_; }
  void str(const std::string& k, const std::string& v) { key(k, 8), string(kv_, v), ++n_kv_; }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9), pod(kv_, uint32_t(8)), pod(kv_, uint64_t(v.size()));
    for (auto& s : v) string(kv_, s);
    ++n_kv_;
  }
  void f32s(const std::string& k, const std::vector<float>& v) {
    key(k, 9), pod(kv_, uint32_t(6)), pod(kv_, uint64_t(v.size()));
    for (float x : v) pod(kv_, x);
    ++n_kv_;
  }
  void i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, 9), pod(kv_, uint32_t(5)), pod(kv_, uint64_t(v.size()));
    for (int32_t x : v) pod(kv_, x);
    ++n_kv_;
  }
  // shape outermost first ({rows, cols} or {n}).
  void tensor(const std::string& name, DType t, std::vector<int64_t> shape, Lcg& r) {
    const int64_t cols = shape.back(), rows = shape.size() == 2 ? shape[0] : 1;
    std::string bytes = tensor_bytes(t, rows, cols, r);
    while (data_.size() % 32) data_ += '\0';
    string(infos_, name);
    pod(infos_, uint32_t(shape.size()));
    for (auto it = shape.rbegin(); it != shape.rend(); ++it) pod(infos_, uint64_t(*it));
    pod(infos_, uint32_t(t));
    pod(infos_, uint64_t(data_.size()));
    data_ += bytes;
    ++n_tensors_;
  }
  std::string finish() const {
    std::string out = "GGUF";
    pod(out, uint32_t(3));
    pod(out, n_tensors_);
    pod(out, n_kv_);
    out += kv_ + infos_;
    while (out.size() % 32) out += '\0';
    return out + data_;
  }

 private:
  template <class T>
  static void pod(std::string& s, T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static void string(std::string& s, const std::string& v) { pod(s, uint64_t(v.size())), s += v; }
  void key(const std::string& k, uint32_t type) { string(kv_, k), pod(kv_, type); }
  std::string kv_, infos_, data_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
};

// SmolLM2's tokenizer cut to its first n tokens and merges (kept consistent:
// the ids of BOS/EOS/specials are below n).
ckv::TokenizerData smol_vocab(size_t n) {
  ckv::GGUFFile f(kSmol);
  ckv::TokenizerData d = ckv::read_gguf_tokenizer(f);
  d.tokens.resize(n);
  d.types.resize(n);
  if (!d.scores.empty()) d.scores.resize(n);
  d.merges.resize(std::min<size_t>(d.merges.size(), n));
  d.eog.erase(std::remove_if(d.eog.begin(), d.eog.end(), [&](int id) { return id >= int(n); }), d.eog.end());
  return d;
}

ckv::TokenizerData tok512_vocab() { return ckv::read_llama2c_tokenizer(kTok512, 512); }

void gguf_tokenizer(GgufWriter& w, const ckv::TokenizerData& d, const std::string& pre) {
  w.str("tokenizer.ggml.model", d.kind == "bpe" ? "gpt2" : "llama");
  if (d.kind == "bpe") w.str("tokenizer.ggml.pre", pre);
  w.strs("tokenizer.ggml.tokens", d.tokens);
  if (!d.scores.empty()) w.f32s("tokenizer.ggml.scores", d.scores);
  std::vector<int32_t> types;
  for (auto t : d.types) types.push_back(static_cast<int32_t>(t));
  w.i32s("tokenizer.ggml.token_type", types);
  if (!d.merges.empty()) w.strs("tokenizer.ggml.merges", d.merges);
  if (d.bos >= 0) w.u32("tokenizer.ggml.bos_token_id", d.bos);
  if (d.eos >= 0) w.u32("tokenizer.ggml.eos_token_id", d.eos);
  if (d.unk >= 0) w.u32("tokenizer.ggml.unknown_token_id", d.unk);
  w.boolean("tokenizer.ggml.add_bos_token", d.add_bos);
  if (!d.chat_template.empty()) w.str("tokenizer.chat_template", d.chat_template);
}

struct TinyShape {
  std::string arch = "llama";
  int layers = 1, dim = 32, heads = 4, kv_heads = 2, head_dim = 8, hidden = 64, vocab = 0, context = 64;
  DType matrix = DType::F32;
  bool rope_freqs = false;
};

// A tiny GGUF model of arch s.arch with tokenizer d (or none when d.kind is "").
std::string tiny_gguf(const TinyShape& s, const ckv::TokenizerData& d, const std::string& pre) {
  GgufWriter w;
  Lcg r;
  const std::string a = s.arch;
  w.str("general.architecture", a);
  w.str("general.name", "fuzz seed " + a);
  w.u32("general.alignment", 32);
  w.u32(a + ".block_count", s.layers);
  w.u32(a + ".context_length", s.context);
  w.u32(a + ".embedding_length", s.dim);
  w.u32(a + ".feed_forward_length", s.hidden);
  w.u32(a + ".attention.head_count", s.heads);
  w.u32(a + ".attention.head_count_kv", s.kv_heads);
  if (s.head_dim != s.dim / s.heads) w.u32(a + ".attention.key_length", s.head_dim);
  w.f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.f32(a + ".rope.freq_base", 10000.0f);
  w.u32(a + ".rope.dimension_count", s.head_dim);
  if (!d.kind.empty()) gguf_tokenizer(w, d, pre);
  const int64_t V = s.vocab, D = s.dim, Q = int64_t(s.heads) * s.head_dim, KV = int64_t(s.kv_heads) * s.head_dim;
  // Embeddings Q8_0 as in SmolLM2's file when the matrices are quantised.
  w.tensor("token_embd.weight", s.matrix == DType::F32 ? DType::F32 : DType::Q8_0, {V, D}, r);
  w.tensor("output_norm.weight", DType::F32, {D}, r);
  if (s.rope_freqs) w.tensor("rope_freqs.weight", DType::F32, {s.head_dim / 2}, r);
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w.tensor(p + "attn_norm.weight", DType::F32, {D}, r);
    w.tensor(p + "attn_q.weight", s.matrix, {Q, D}, r);
    w.tensor(p + "attn_k.weight", s.matrix, {KV, D}, r);
    w.tensor(p + "attn_v.weight", s.matrix, {KV, D}, r);
    w.tensor(p + "attn_output.weight", s.matrix, {D, Q}, r);
    if (a == "qwen2") {
      w.tensor(p + "attn_q.bias", DType::F32, {Q}, r);
      w.tensor(p + "attn_k.bias", DType::F32, {KV}, r);
      w.tensor(p + "attn_v.bias", DType::F32, {KV}, r);
    }
    if (a == "qwen3") {
      w.tensor(p + "attn_q_norm.weight", DType::F32, {s.head_dim}, r);
      w.tensor(p + "attn_k_norm.weight", DType::F32, {s.head_dim}, r);
    }
    w.tensor(p + "ffn_norm.weight", DType::F32, {D}, r);
    w.tensor(p + "ffn_gate.weight", s.matrix, {s.hidden, D}, r);
    w.tensor(p + "ffn_up.weight", s.matrix, {s.hidden, D}, r);
    w.tensor(p + "ffn_down.weight", s.matrix, {D, s.hidden}, r);
  }
  if (a != "qwen2") w.tensor("output.weight", s.matrix == DType::F32 ? DType::F32 : DType::Q8_0, {V, D}, r);
  return w.finish();
}

void gguf_seeds() {
  const bool smol = exists(kSmol);
  const ckv::TokenizerData none;
  const ckv::TokenizerData bpe = smol ? smol_vocab(320) : none;
  const ckv::TokenizerData spm = tok512_vocab();
  auto both = [&](const std::string& name, const std::string& bytes) {
    seed("fuzz_gguf", name, bytes);
    seed("fuzz_gguf_model", name, bytes);
  };
  TinyShape s;
  s.vocab = smol ? 320 : 512;
  const ckv::TokenizerData& tok = smol ? bpe : spm;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    s.matrix = t;
    both("llama_" + ckv::dtype_name(t) + ".gguf", tiny_gguf(s, tok, "smollm"));
  }
  s.matrix = DType::F32;
  s.rope_freqs = true;
  both("llama3_rope_freqs.gguf", tiny_gguf(s, tok, "llama-bpe"));
  s.rope_freqs = false;
  s.arch = "qwen2";
  s.matrix = DType::F16;
  both("qwen2_f16.gguf", tiny_gguf(s, tok, "qwen2"));
  s.arch = "qwen3";
  s.matrix = DType::BF16;
  s.head_dim = 16;
  both("qwen3_bf16.gguf", tiny_gguf(s, tok, "qwen2"));
  s = TinyShape{};
  s.arch = "mistral";
  s.vocab = 512;
  s.matrix = DType::Q8_0;
  both("mistral_spm_q8_0.gguf", tiny_gguf(s, spm, ""));
  // K-quants need rows of 256.
  s = TinyShape{};
  s.dim = 256, s.hidden = 256, s.heads = 4, s.kv_heads = 1, s.head_dim = 64, s.vocab = 32;
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    s.matrix = t;
    both("llama_" + ckv::dtype_name(t) + ".gguf", tiny_gguf(s, none, ""));
  }
  const std::string qb = kShared + "/golden/gguf/quant_blocks.gguf";
  if (exists(qb)) seed("fuzz_gguf", "quant_blocks.gguf", read(qb));
}

void hf_seeds() {
  const std::string root = kShared + "/models/tiny-hf";
  if (!exists(root)) return;
  for (const char* name : {"tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"}) {
    const std::string dir = root + "/" + name;
    const std::string config = read(dir + "/config.json");
    seed("fuzz_hf_config", std::string(name) + ".json", config);
    std::vector<std::string> parts = {config};
    if (exists(dir + "/model.safetensors")) {
      const std::string st = read(dir + "/model.safetensors");
      seed("fuzz_safetensors", std::string(name) + ".safetensors", st);
      parts.push_back("");
      parts.push_back(st);
    } else {
      // The fuzzer names shards model-0000N.safetensors: rename them in the index.
      std::string index = read(dir + "/model.safetensors.index.json");
      for (int i = 1; i <= 3; ++i) {
        const std::string from = "model-0000" + std::to_string(i) + "-of-00003.safetensors";
        const std::string to = "model-0000" + std::to_string(i) + ".safetensors";
        for (size_t p; (p = index.find(from)) != std::string::npos;) index.replace(p, from.size(), to);
      }
      parts.push_back(index);
      for (int i = 1; i <= 3; ++i) {
        const std::string st = read(dir + "/model-0000" + std::to_string(i) + "-of-00003.safetensors");
        seed("fuzz_safetensors", std::string(name) + "-" + std::to_string(i) + ".safetensors", st);
        parts.push_back(st);
      }
    }
    seed("fuzz_hf_checkpoint", name, join(parts));
  }
  // A small hand-made file with metadata and every dtype.
  json h = {{"__metadata__", {{"format", "pt"}}},
            {"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
            {"b", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {16, 24}}}},
            {"c", {{"dtype", "BF16"}, {"shape", json::array()}, {"data_offsets", {24, 26}}}},
            {"e", {{"dtype", "F32"}, {"shape", {0, 3}}, {"data_offsets", {26, 26}}}}};
  std::string hs = h.dump();
  uint64_t n = hs.size();
  std::string st(reinterpret_cast<const char*>(&n), 8);
  seed("fuzz_safetensors", "small.safetensors", st + hs + std::string(26, '\x3c'));
}

// tokenizer.json in Hugging Face's layout for a byte-level vocabulary.
json hf_bpe_json(const ckv::TokenizerData& d, const json& pre, bool ignore_merges) {
  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    vocab[d.tokens[i]] = i;
    if (d.types[i] == ckv::TokenType::Control)
      added.push_back({{"id", i}, {"content", d.tokens[i]}, {"special", true}});
  }
  json merges = json::array();
  for (auto& m : d.merges) merges.push_back(m);
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges},
                     {"byte_fallback", false}}}};
}

void tokenizer_seeds() {
  // tok512 for the llama2.c tokenizer reader: vocabulary size, then the file.
  const std::string tok = read(kTok512);
  seed("fuzz_llama2c_tokenizer", "tok512", std::string("\x00\x02", 2) + tok);
  {
    // Its first 40 tokens.
    size_t pos = 4;
    for (int i = 0; i < 40; ++i) {
      int32_t len;
      std::memcpy(&len, tok.data() + pos + 4, 4);
      pos += 8 + len;
    }
    seed("fuzz_llama2c_tokenizer", "tok40", std::string("\x28\x00", 2) + tok.substr(0, pos));
  }

  // The texts of the golden tokenizer cases and essay openings, for every tokenizer.
  std::vector<std::string> texts = {"Hello world", "", " \n\t x", "a\xFF\xFE\xC0 broken \xE2\x82", "<|im_start|>user\nhi<|im_end|>"};
  const std::string golden = kShared + "/golden/smollm2/tokenizer.jsonl";
  if (exists(golden)) {
    std::istringstream in(read(golden));
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) texts.push_back(json::parse(line)["text"].get<std::string>());
  }
  const std::string essays = kShared + "/data/pg_essays";
  if (exists(essays)) {
    std::vector<std::string> files;
    for (auto& e : fs::directory_iterator(essays)) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (size_t i = 0; i < files.size() && i < 4; ++i) texts.push_back(read(files[i]).substr(0, 1500));
  }
  for (size_t i = 0; i < texts.size(); ++i)
    for (int sel = 0; sel < 5; ++sel)
      seed("fuzz_tokenize", "t" + std::to_string(i) + "_" + std::to_string(sel),
           std::string(1, char(sel | (i % 2 ? 8 : 0))) + texts[i]);

  // tokenizer.json: SmolLM2's vocabulary cut short under each family's pre-tokenizer.
  if (!exists(kSmol)) return;
  const ckv::TokenizerData d = smol_vocab(400);
  const json bytelevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const json bytelevel_noregex = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  auto split = [](const char* re) {
    return json{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  const json smollm = {{"type", "Sequence"},
                       {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, bytelevel}}};
  const json llama3 = {{"type", "Sequence"}, {"pretokenizers", {split(ckv::kLlama3Regex), bytelevel_noregex}}};
  const json qwen2 = {{"type", "Sequence"}, {"pretokenizers", {split(ckv::kQwen2Regex), bytelevel_noregex}}};
  const json custom = {{"type", "Sequence"},
                       {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}},
                                          bytelevel_noregex}}};
  const json config = {{"bos_token", d.tokens[d.bos]},
                       {"eos_token", {{"content", d.tokens[d.eos]}, {"special", true}}},
                       {"unk_token", d.tokens[0]},
                       {"add_bos_token", false},
                       {"chat_template", d.chat_template}};
  const std::string gen = R"({"bos_token_id": 1, "eos_token_id": [2, 0]})";
  const std::string llama3_jinja =
      "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
      "message['content'] | trim + '<|eot_id|>' }}{% endfor %}";
  seed("fuzz_hf_tokenizer", "smollm", join({hf_bpe_json(d, smollm, false).dump(1), config.dump(1), gen, ""}));
  seed("fuzz_hf_tokenizer", "gpt2", join({hf_bpe_json(d, bytelevel, false).dump(), "", "", ""}));
  seed("fuzz_hf_tokenizer", "llama3", join({hf_bpe_json(d, llama3, true).dump(), "{}", "", llama3_jinja}));
  seed("fuzz_hf_tokenizer", "qwen2", join({hf_bpe_json(d, qwen2, false).dump(), config.dump(), "", ""}));
  seed("fuzz_hf_tokenizer", "custom", join({hf_bpe_json(d, custom, false).dump(), "", gen, ""}));

  // A SentencePiece-style tokenizer.json from tok512: "▁" normaliser and merges by rank.
  const ckv::TokenizerData s = tok512_vocab();
  json vocab = json::object();
  std::map<std::string, int> ids;
  for (size_t i = 0; i < s.tokens.size(); ++i) vocab[s.tokens[i]] = i, ids[s.tokens[i]] = int(i);
  std::vector<std::pair<float, std::string>> merges;
  for (size_t i = 0; i < s.tokens.size(); ++i)
    for (size_t cut = 1; cut < s.tokens[i].size(); ++cut) {
      std::string l = s.tokens[i].substr(0, cut), r = s.tokens[i].substr(cut);
      if (ids.count(l) && ids.count(r)) merges.push_back({-s.scores[i], l + " " + r});
    }
  std::sort(merges.begin(), merges.end());
  json jm = json::array();
  for (auto& [score, m] : merges) jm.push_back(m);
  json spm = {{"added_tokens", {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
              {"normalizer", {{"type", "Sequence"},
                              {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                               {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
              {"pre_tokenizer", nullptr},
              {"post_processor", {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", jm}, {"unk_token", "<unk>"}, {"byte_fallback", true}}}};
  seed("fuzz_hf_tokenizer", "spm", join({spm.dump(), R"({"bos_token": "<s>", "eos_token": "</s>"})", "", ""}));
  json meta = spm;
  meta["normalizer"] = nullptr;
  meta["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}};
  seed("fuzz_hf_tokenizer", "metaspace", join({meta.dump(), "", "", ""}));
}

void llama2c_seeds() {
  seed("fuzz_llama2c_model", "stories260K.bin", read(kSource + "/models/stories260k/stories260K.bin"));
  // Tiny ones: shared classifier with tok512's vocabulary, and a separate one.
  for (int32_t vocab : {512, -32}) {
    const int32_t dim = 8, hidden = 16, layers = 1, heads = 2, kv = 1, seq = 8;
    std::string b;
    for (int32_t v : {dim, hidden, layers, heads, kv, vocab, seq}) b.append(reinterpret_cast<const char*>(&v), 4);
    const int64_t V = std::abs(vocab), hd = dim / heads;
    int64_t floats = V * dim + layers * (dim + dim * dim + 2 * kv * hd * dim + dim * dim + dim + 3 * hidden * dim) +
                     dim + seq * hd + (vocab < 0 ? V * dim : 0);
    Lcg r;
    for (int64_t i = 0; i < floats; ++i) {
      float x = r.uniform() * 0.2f;
      b.append(reinterpret_cast<const char*>(&x), 4);
    }
    seed("fuzz_llama2c_model", "tiny" + std::to_string(vocab) + ".bin", b);
  }
}

void chat_seeds() {
  std::vector<std::string> templates = {
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
      "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
      "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
      "<|im_start|>",
      "{%- set date_string = \"26 Jul 2024\" %}<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge "
      "Date: December 2023\\nToday Date: {{ date_string }}",
      "{{ bos_token }}<|start_header_id|>{{ message['role'] }}<|end_header_id|>",
      "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}",
      "[INST] <<SYS>>\\n{{ system }}\\n<</SYS>>\\n\\n",
      "no family here"};
  if (exists(kSmol)) {
    ckv::GGUFFile f(kSmol);
    templates.push_back(f.get_str("tokenizer.chat_template", ""));
  }
  std::vector<std::vector<std::string>> convs = {{"user", "What is the capital of France?"},
                                                 {"system", "Be brief.", "user", "  Hi  ", "assistant", "Hello.", "user", "Bye"}};
  const std::string golden = kShared + "/golden/smollm2/chat_template.json";
  if (exists(golden))
    for (const json& c : json::parse(read(golden))) {
      std::vector<std::string> m;
      for (const json& x : c["messages"]) m.push_back(x["role"]), m.push_back(x["content"]);
      convs.push_back(m);
    }
  int i = 0;
  for (const auto& t : templates)
    for (const auto& c : convs) {
      std::vector<std::string> parts = {t, "<s>", ""};
      parts.insert(parts.end(), c.begin(), c.end());
      seed("fuzz_chat_template", "c" + std::to_string(i++), join(parts));
    }
  for (const char* name : {"chatml", "llama3", "llama2", "mistral", "vicuna"})
    seed("fuzz_chat_template", std::string("named_") + name, join({"", "<s>", name, "user", "hi"}));
}

void profile_seeds() {
  const std::string pub = kShared + "/data/compresskv-published/";
  struct Pub {
    const char *heads, *scores;
    int layers, heads_n, kv_heads;
  };
  for (Pub p : {Pub{"Llama-3.1-8B-Instruct_head_idx.json", "Llama-3.1-8B-Instruct_layer_score.json", 32, 32, 8},
                Pub{"Mistral-7B-Instruct-v0.3_head_idx.json", "Mistral-7B-Instruct-v0.3_layer_score.json", 32, 32, 8},
                Pub{"Qwen2.5-7B-Instruct_head_idx.json", "Qwen2.5-7B-Instruct_layer_score.jsonl", 28, 28, 4}}) {
    if (!exists(pub + p.heads)) continue;
    const std::string shape = {char(p.layers - 1), char(p.heads_n - 1)};
    seed("fuzz_profile_import", p.heads, shape + join({read(pub + p.heads), read(pub + p.scores)}));
    seed("fuzz_profile_import", std::string("heads_only_") + p.heads, shape + read(pub + p.heads));
    ckv::Profile prof = ckv::import_published_profile(pub + p.heads, pub + p.scores, "llama", p.layers, p.heads_n, p.kv_heads,
                                                      128, "0123456789abcdef");
    seed("fuzz_profile", p.heads, prof.to_json().dump(1));
  }
  // A small full profile: scores, retrieval ranking, layer scores, provenance.
  ckv::Profile q;
  q.arch = "llama", q.n_layers = 2, q.n_heads = 4, q.n_kv_heads = 2, q.head_dim = 8, q.fingerprint = "ab";
  q.srh_ranking = {{3, 1, 0, 2}, {0, 1}};
  q.srh_scores = {{0.4, 0.3, 0.2, 0.1}, {1.5, -0.5}};
  q.retrieval_ranking = {{0}, {1, 2, 3}};
  q.layer_scores = {0.25, 0.75};
  q.provenance = {{"method", "fuzz seed"}, {"probe_lengths", {512, 1024}}};
  seed("fuzz_profile", "small.json", q.to_json().dump());
  json heads = {{"0", {1, 0}}, {"1", {0}}};
  seed("fuzz_profile_import", "small", std::string("\x01\x01", 2) + join({heads.dump(), R"({"avg_score": [1, 3]})"}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_seeds OUT_DIR\n";
    return 2;
  }
  out_dir = argv[1];
  try {
    gguf_seeds();
    hf_seeds();
    tokenizer_seeds();
    llama2c_seeds();
    chat_seeds();
    profile_seeds();
  } catch (const std::exception& e) {
    std::cerr << "fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "fuzz_seeds: " << n_written << " seeds in " << out_dir << (exists(kShared) ? "" : " (no ../shared)")
            << "\n";
  return 0;
}
