// A loaded model: hyperparameters, weight views and the tokenizer's data.
// Every loader (GGUF, safetensors directory, llama2.c) produces this.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/tensor.h"
#include "tokenizer/vocab.h"

namespace ckv {

struct RopeConfig {
  float theta = 10000.0f;
  // "default", "linear" or "llama3"; anything else is refused by the loader.
  std::string scaling = "default";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  int original_context = 8192;    // llama3 original_max_position_embeddings
  // true: rotate adjacent pairs (x[2i], x[2i+1]) -- llama2.c and GGUF llama;
  // false: rotate halves (x[i], x[i+d/2]) -- safetensors, GGUF qwen2/qwen3.
  bool interleaved = false;
  // Per-frequency divisors (GGUF rope_freqs.weight, llama3 scaling baked in),
  // head_dim/2 values; empty when the scaling is computed from the fields above.
  std::vector<float> freq_factors;
};

// Largest head dimension accepted at load (real models use 64-256); the CPU
// RoPE kernel keeps head_dim/2 angles on the stack.
constexpr int kMaxHeadDim = 1024;

struct ModelConfig {
  std::string arch;  // "llama", "mistral", "qwen2", "qwen3"
  int n_layers = 0;
  int dim = 0;         // hidden size
  int hidden_dim = 0;  // feed-forward size
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int context = 0;  // maximum positions the model was trained for
  float norm_eps = 1e-5f;
  RopeConfig rope;
  bool qkv_bias = false;  // qwen2
  bool qk_norm = false;   // qwen3: RMSNorm over head_dim on q and k before RoPE
  bool tied_output = false;
};

// Matrices are {out, in}. Norm weights and biases are always F32 (loaders
// convert them), so kernels only ever see quantised/half types in matrices.
struct LayerWeights {
  Tensor attn_norm;       // [dim]
  Tensor wq, wk, wv, wo;  // [n_heads*hd, dim], [n_kv*hd, dim], [n_kv*hd, dim], [dim, n_heads*hd]
  Tensor bq, bk, bv;      // qwen2 biases, empty otherwise
  Tensor q_norm, k_norm;  // qwen3 [head_dim], empty otherwise
  Tensor ffn_norm;        // [dim]
  Tensor w_gate, w_down, w_up;  // [hidden, dim], [dim, hidden], [hidden, dim]
};

// What part of a model split over `size` devices this one is (tensor
// parallelism, model/shard.h). A rank's Model has its own head counts and FFN
// width in `config` (so every buffer and kernel is sized for the rank); the
// whole model's are here. An unsplit model: size 1, totals 0.
struct ShardInfo {
  int rank = 0, size = 1;
  int head0 = 0, kv_head0 = 0, ff0 = 0;  // first query head, KV head and FFN column held
  int total_heads = 0, total_kv_heads = 0, total_hidden = 0;
};

struct Model {
  std::string path;    // what the user passed
  std::string format;  // "gguf", "safetensors", "llama2c"
  std::string name;    // general.name or folder name
  ModelConfig config;
  Tensor tok_embd;     // [vocab, dim]
  Tensor output_norm;  // [dim]
  Tensor output;       // [vocab, dim]; equals tok_embd when tied
  std::vector<LayerWeights> layers;
  TokenizerData vocab;  // empty tokens when the source has no tokenizer
  ShardInfo shard;      // a tensor-parallel rank's part of a model

  // Keeps mapped files and converted buffers alive.
  std::vector<std::shared_ptr<const void>> storage;

  // Copy of data into storage the model owns; returns the pointer (64-byte aligned).
  const void* own(const void* data, size_t nbytes);
  // An F32 tensor the model owns, converted from any supported type.
  Tensor to_f32(const Tensor& t);
  // Short fingerprint of the weights' metadata (names, types, shapes).
  std::string fingerprint() const;
};

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: explicit tokenizer file
};

// Detects the format: a directory (safetensors + config.json), a GGUF file by
// magic, else the llama2.c legacy format. Throws ckv::Error naming the file.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opt = {});

// Per-format loaders (model/gguf_model.cpp, safetensors_model.cpp, llama2c.cpp).
void load_gguf_model(Model& m, const std::string& path);
void load_safetensors_model(Model& m, const std::string& dir);
void load_llama2c_model(Model& m, const std::string& path, const std::string& tokenizer_path);

// Shared checks: shapes of every tensor against the config; throws naming the
// tensor, expected and found shapes.
void validate_model(const Model& m);

}  // namespace ckv
