// GGUF file -> Model: hyperparameters from "<arch>.*" metadata, tensors by
// llama.cpp's names (blk.N.attn_q.weight, ...), tokenizer from tokenizer.ggml.*.
#include <cmath>
#include <set>

#include "model/gguf.h"
#include "model/model.h"
#include "tokenizer/gguf_vocab.h"
#include "util/error.h"

namespace ckv {

void load_gguf_model(Model& m, const std::string& path) {
  auto f = std::make_shared<GGUFFile>(path);
  m.storage.push_back(f);
  ModelConfig& c = m.config;
  std::string arch = f->get_str("general.architecture");
  static const std::set<std::string> known = {"llama", "mistral", "qwen2", "qwen3"};
  if (!known.count(arch))
    throw file_error(path, "unsupported architecture '" + arch + "' (supported: llama, mistral, qwen2, qwen3)");
  c.arch = arch;
  m.name = f->get_str("general.name", "");
  auto key = [&](const char* k) { return arch + "." + k; };
  c.n_layers = static_cast<int>(f->get_int(key("block_count")));
  c.dim = static_cast<int>(f->get_int(key("embedding_length")));
  c.hidden_dim = static_cast<int>(f->get_int(key("feed_forward_length")));
  c.n_heads = static_cast<int>(f->get_int(key("attention.head_count")));
  c.n_kv_heads = static_cast<int>(f->get_int(key("attention.head_count_kv"), c.n_heads));
  if (c.n_heads <= 0 || c.n_layers <= 0 || c.dim <= 0 || c.n_layers > 4096 || c.n_heads > 4096)
    throw file_error(path, "invalid dimensions in metadata: " + std::to_string(c.n_layers) + " layers, " +
                               std::to_string(c.n_heads) + " heads, embedding " + std::to_string(c.dim));
  if (!f->has(key("attention.key_length")) && c.dim % c.n_heads != 0)
    throw file_error(path, key("attention.head_count") + " " + std::to_string(c.n_heads) +
                               " does not divide the embedding length " + std::to_string(c.dim));
  int64_t head_dim = f->get_int(key("attention.key_length"), c.dim / c.n_heads);
  int64_t context = f->get_int(key("context_length"), 4096);
  if (head_dim <= 0 || head_dim > kMaxHeadDim)
    throw file_error(path, key("attention.key_length") + " (head dim) " + std::to_string(head_dim) +
                               " is out of range: expected 1.." + std::to_string(kMaxHeadDim));
  if (context <= 0 || context > (int64_t(1) << 30))
    throw file_error(path, key("context_length") + " out of range: " + std::to_string(context));
  c.head_dim = static_cast<int>(head_dim);
  c.context = static_cast<int>(context);
  // Values the forward pass divides by or takes powers of: finite and positive.
  auto positive = [&](const std::string& k, double dflt) {
    double v = f->get_float(k, dflt);
    if (!std::isfinite(v) || !(v > 0) || !std::isfinite(float(v)) || float(v) == 0.0f)
      throw file_error(path, "metadata " + k + ": expected a finite positive number, found " + std::to_string(v));
    return static_cast<float>(v);
  };
  c.norm_eps = positive(key("attention.layer_norm_rms_epsilon"), 1e-5);
  c.rope.theta = positive(key("rope.freq_base"), 10000.0);
  int64_t rope_dims = f->get_int(key("rope.dimension_count"), c.head_dim);
  if (rope_dims != c.head_dim)
    throw file_error(path, "partial rotary embeddings are not supported: rope.dimension_count " +
                               std::to_string(rope_dims) + ", head dim " + std::to_string(c.head_dim));
  std::string scaling = f->get_str(key("rope.scaling.type"), "none");
  if (scaling == "linear") {
    c.rope.scaling = "linear";
    c.rope.factor = positive(key("rope.scaling.factor"), 1.0);
  } else if (scaling != "none") {
    throw file_error(path, "unsupported rope scaling type '" + scaling + "' (supported: none, linear, llama3)");
  }
  // llama.cpp's convention: rows of Q/K are permuted for adjacent-pair rotation
  // in llama-family files; qwen files keep the half-split ("NeoX") layout.
  c.rope.interleaved = (arch == "llama" || arch == "mistral");
  c.qkv_bias = (arch == "qwen2");
  c.qk_norm = (arch == "qwen3");

  auto get = [&](const std::string& name, bool required = true) -> Tensor {
    const Tensor* t = f->find(name);
    if (!t) {
      if (required) throw file_error(path, "missing tensor " + name);
      return Tensor{};
    }
    return *t;
  };
  m.tok_embd = get("token_embd.weight");
  c.vocab_size = static_cast<int>(m.tok_embd.rows());
  m.output_norm = m.to_f32(get("output_norm.weight"));
  m.output = get("output.weight", false);
  c.tied_output = m.output.empty();
  if (c.tied_output) m.output = m.tok_embd;
  if (const Tensor* rf = f->find("rope_freqs.weight")) {
    // Llama 3.1 files carry their rope scaling as per-frequency divisors.
    Tensor r = m.to_f32(*rf);
    if (r.numel() != c.head_dim / 2)
      throw file_error(path, "rope_freqs.weight: expected " + std::to_string(c.head_dim / 2) + " values, found " +
                                 std::to_string(r.numel()));
    const float* p = static_cast<const float*>(r.data);
    for (int64_t i = 0; i < r.numel(); ++i)
      if (!std::isfinite(p[i]) || !(p[i] > 0))
        throw file_error(path, "rope_freqs.weight[" + std::to_string(i) + "]: expected a finite positive divisor, found " +
                                   std::to_string(p[i]));
    c.rope.freq_factors.assign(p, p + r.numel());
    c.rope.scaling = "llama3";
  }
  m.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& l = m.layers[i];
    l.attn_norm = m.to_f32(get(p + "attn_norm.weight"));
    l.wq = get(p + "attn_q.weight");
    l.wk = get(p + "attn_k.weight");
    l.wv = get(p + "attn_v.weight");
    l.wo = get(p + "attn_output.weight");
    if (c.qkv_bias) {
      l.bq = m.to_f32(get(p + "attn_q.bias"));
      l.bk = m.to_f32(get(p + "attn_k.bias"));
      l.bv = m.to_f32(get(p + "attn_v.bias"));
    }
    if (c.qk_norm) {
      l.q_norm = m.to_f32(get(p + "attn_q_norm.weight"));
      l.k_norm = m.to_f32(get(p + "attn_k_norm.weight"));
    }
    l.ffn_norm = m.to_f32(get(p + "ffn_norm.weight"));
    l.w_gate = get(p + "ffn_gate.weight");
    l.w_up = get(p + "ffn_up.weight");
    l.w_down = get(p + "ffn_down.weight");
  }
  if (f->has("tokenizer.ggml.model")) m.vocab = read_gguf_tokenizer(*f);
}

}  // namespace ckv
