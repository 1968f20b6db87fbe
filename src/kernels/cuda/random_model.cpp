// --random-weights: a Model of a config.json's shape without a weights file.
// Plain C++ (built with or without CUDA); only the CUDA backend can run it,
// since it fills the matrices (data == nullptr) on the device at prepare().
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "model/hf_config.h"
#include "util/error.h"

namespace ckv {

namespace {

// A matrix Tensor with a shape and no bytes: the backend generates it.
Tensor shaped(const std::string& name, int64_t rows, int64_t cols) {
  Tensor t;
  t.name = name;
  t.type = DType::BF16;
  t.shape = {rows, cols};
  t.nbytes = static_cast<size_t>(rows * cols) * 2;
  return t;
}

// An F32 vector of one value, owned by the model (norm weights, biases).
Tensor constant(Model& m, const std::string& name, int64_t n, float value) {
  std::vector<float> v(static_cast<size_t>(n), value);
  Tensor t;
  t.name = name;
  t.type = DType::F32;
  t.shape = {n};
  t.nbytes = v.size() * sizeof(float);
  t.data = m.own(v.data(), t.nbytes);
  return t;
}

}  // namespace

std::unique_ptr<Model> make_random_model(const std::string& config_json) {
  auto m = std::make_unique<Model>();
  m->path = config_json;
  m->format = "random";
  m->config = read_hf_config(config_json);
  const ModelConfig& c = m->config;
  if (c.n_layers <= 0 || c.dim <= 0 || c.hidden_dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.head_dim <= 0 || c.vocab_size <= 0 || c.n_heads % c.n_kv_heads != 0)
    throw file_error(config_json, "invalid model shape for --random-weights");
  m->name = "random " + c.arch;
  const int64_t q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  m->tok_embd = shaped("token_embd.weight", c.vocab_size, c.dim);
  m->output = c.tied_output ? m->tok_embd : shaped("output.weight", c.vocab_size, c.dim);
  m->output_norm = constant(*m, "output_norm.weight", c.dim, 1.0f);
  m->layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = constant(*m, p + "attn_norm.weight", c.dim, 1.0f);
    l.ffn_norm = constant(*m, p + "ffn_norm.weight", c.dim, 1.0f);
    l.wq = shaped(p + "attn_q.weight", q, c.dim);
    l.wk = shaped(p + "attn_k.weight", kv, c.dim);
    l.wv = shaped(p + "attn_v.weight", kv, c.dim);
    l.wo = shaped(p + "attn_output.weight", c.dim, q);
    l.w_gate = shaped(p + "ffn_gate.weight", c.hidden_dim, c.dim);
    l.w_up = shaped(p + "ffn_up.weight", c.hidden_dim, c.dim);
    l.w_down = shaped(p + "ffn_down.weight", c.dim, c.hidden_dim);
    if (c.qkv_bias) {
      l.bq = constant(*m, p + "attn_q.bias", q, 0.0f);
      l.bk = constant(*m, p + "attn_k.bias", kv, 0.0f);
      l.bv = constant(*m, p + "attn_v.bias", kv, 0.0f);
    }
    if (c.qk_norm) {
      l.q_norm = constant(*m, p + "attn_q_norm.weight", c.head_dim, 1.0f);
      l.k_norm = constant(*m, p + "attn_k_norm.weight", c.head_dim, 1.0f);
    }
  }
  return m;
}

}  // namespace ckv
