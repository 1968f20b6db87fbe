// Hugging Face checkpoint directory: config.json, model.safetensors or shards
// listed in model.safetensors.index.json, optional tokenizer.json. Matrices
// stay memory-mapped in their stored type; norms and biases become F32.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/hf_config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ckv {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// The checkpoint's files and where each tensor lives.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir) {
    std::string index = dir + "/model.safetensors.index.json";
    std::string single = dir + "/model.safetensors";
    std::error_code ec;
    if (fs::exists(index, ec)) {
      index_path_ = index;
      read_index(dir, index);
    } else if (fs::exists(single, ec)) {
      files_.push_back(std::make_unique<SafetensorsFile>(single));
    } else {
      throw file_error(dir, "no model.safetensors or model.safetensors.index.json");
    }
  }

  // The tensor, or nullptr when the checkpoint does not have it.
  const Tensor* find(const std::string& name) const {
    if (index_path_.empty()) return files_[0]->find(name);
    auto it = weight_map_.find(name);
    if (it == weight_map_.end()) return nullptr;
    const SafetensorsFile& f = *files_[it->second];
    const Tensor* t = f.find(name);
    if (!t) throw file_error(f.path(), "missing tensor '" + name + "' (listed in " + index_path_ + ")");
    return t;
  }

  // File a missing tensor is reported against.
  std::string where(const std::string& name) const {
    if (index_path_.empty()) return files_[0]->path();
    auto it = weight_map_.find(name);
    return it == weight_map_.end() ? index_path_ : files_[it->second]->path();
  }

  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  void read_index(const std::string& dir, const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw file_error(path, "cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    json j;
    try {
      j = json::parse(ss.str());
    } catch (const json::exception& e) {
      throw file_error(path, std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw file_error(path, "missing object 'weight_map'");
    std::map<std::string, size_t> opened;  // shard name -> files_ index
    for (auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string() || shard.get<std::string>().empty())
        throw file_error(path, "weight_map entry for '" + name + "' is not a file name");
      std::string s = shard.get<std::string>();
      auto it = opened.find(s);
      if (it == opened.end()) {
        files_.push_back(std::make_unique<SafetensorsFile>(dir + "/" + s));
        it = opened.emplace(s, files_.size() - 1).first;
      }
      weight_map_[name] = it->second;
    }
    if (files_.empty()) throw file_error(path, "weight_map is empty");
  }

  std::string index_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> weight_map_;
};

class Builder {
 public:
  Builder(Model& m, const Checkpoint& ck) : m_(m), ck_(ck) {}

  // A required tensor with the given shape, safe to read through its type.
  Tensor get(const std::string& name, const std::vector<int64_t>& shape) {
    const Tensor* t = ck_.find(name);
    if (!t) throw file_error(ck_.where(name), "missing tensor '" + name + "'");
    if (t->shape != shape)
      throw file_error(ck_.where(name), "tensor '" + name + "': expected shape " + shape_str(shape) + ", found " +
                                            shape_str(t->shape));
    Tensor r = *t;
    // Header lengths need not keep data aligned; misaligned typed reads are UB.
    size_t align = r.type == DType::F32 ? 4 : 2;
    if (reinterpret_cast<uintptr_t>(r.data) % align != 0) r.data = m_.own(r.data, r.nbytes);
    return r;
  }
  Tensor get_f32(const std::string& name, const std::vector<int64_t>& shape) { return m_.to_f32(get(name, shape)); }

 private:
  Model& m_;
  const Checkpoint& ck_;
};

}  // namespace

void load_safetensors_model(Model& m, const std::string& dir) {
  std::string config_path = dir + "/config.json";
  std::error_code ec;
  if (!fs::exists(config_path, ec)) throw file_error(dir, "no config.json in this directory");
  m.config = read_hf_config(config_path);
  m.format = "safetensors";
  if (m.path.empty()) m.path = dir;
  if (m.name.empty()) {
    fs::path p = fs::path(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
    m.name = p.filename().string();
  }

  Checkpoint ck(dir);
  for (auto& f : ck.files()) m.storage.push_back(f->file());

  ModelConfig& c = m.config;
  Builder b(m, ck);
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, HD = c.head_dim;
  const int64_t Q = int64_t(c.n_heads) * HD, KV = int64_t(c.n_kv_heads) * HD;

  m.tok_embd = b.get("model.embed_tokens.weight", {V, D});
  m.output_norm = b.get_f32("model.norm.weight", {D});
  // HF ties lm_head to the embedding when asked, whatever lm_head holds;
  // untied without lm_head, transformers would use random weights: refuse.
  if (c.tied_output) {
    m.output = m.tok_embd;
  } else if (!ck.find("lm_head.weight")) {
    throw file_error(ck.where("lm_head.weight"), "missing tensor 'lm_head.weight', and " + config_path +
                                                     " has tie_word_embeddings false (or unset): the output "
                                                     "projection has no weights");
  } else {
    m.output = b.get("lm_head.weight", {V, D});
  }

  m.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    l.attn_norm = b.get_f32(p + "input_layernorm.weight", {D});
    l.wq = b.get(p + "self_attn.q_proj.weight", {Q, D});
    l.wk = b.get(p + "self_attn.k_proj.weight", {KV, D});
    l.wv = b.get(p + "self_attn.v_proj.weight", {KV, D});
    l.wo = b.get(p + "self_attn.o_proj.weight", {D, Q});
    if (c.qkv_bias) {
      l.bq = b.get_f32(p + "self_attn.q_proj.bias", {Q});
      l.bk = b.get_f32(p + "self_attn.k_proj.bias", {KV});
      l.bv = b.get_f32(p + "self_attn.v_proj.bias", {KV});
    }
    if (c.qk_norm) {
      l.q_norm = b.get_f32(p + "self_attn.q_norm.weight", {HD});
      l.k_norm = b.get_f32(p + "self_attn.k_norm.weight", {HD});
    }
    l.ffn_norm = b.get_f32(p + "post_attention_layernorm.weight", {D});
    l.w_gate = b.get(p + "mlp.gate_proj.weight", {F, D});
    l.w_up = b.get(p + "mlp.up_proj.weight", {F, D});
    l.w_down = b.get(p + "mlp.down_proj.weight", {D, F});
  }

  // A bias the forward pass would not add (o_proj, mlp, or q/k/v outside
  // qwen2) means a variant we do not implement: refuse rather than ignore.
  for (auto& f : ck.files())
    for (const Tensor& t : f->tensors()) {
      const std::string& n = t.name;
      if (n.size() < 5 || n.compare(n.size() - 5, 5, ".bias") != 0) continue;
      bool expected = c.qkv_bias && (n.find(".self_attn.q_proj.") != std::string::npos ||
                                     n.find(".self_attn.k_proj.") != std::string::npos ||
                                     n.find(".self_attn.v_proj.") != std::string::npos);
      if (!expected) throw file_error(f->path(), "unsupported tensor '" + n + "' (this architecture has no such bias)");
    }

  if (fs::exists(dir + "/tokenizer.json", ec)) m.vocab = read_hf_tokenizer(dir);
}

}  // namespace ckv
