// Format detection, shared shape checks and owned storage for every loader.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "model/model.h"
#include "model/quant.h"
#include "util/error.h"

namespace ckv {

const void* Model::own(const void* data, size_t nbytes) {
  size_t padded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, padded ? padded : 64);
  if (!p) throw Error("out of memory allocating " + std::to_string(nbytes) + " bytes");
  if (nbytes) std::memcpy(p, data, nbytes);
  storage.emplace_back(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return p;
}

Tensor Model::to_f32(const Tensor& t) {
  if (t.empty()) return t;
  std::vector<float> v = dequantize(t);
  Tensor r = t;
  r.type = DType::F32;
  r.nbytes = v.size() * sizeof(float);
  r.data = own(v.data(), r.nbytes);
  return r;
}

std::string Model::fingerprint() const {
  // FNV-1a over names, types and shapes: identifies a checkpoint layout and
  // quantisation without hashing the weights themselves.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  auto add = [&](const Tensor& t) {
    mix(t.name);
    mix(dtype_name(t.type));
    for (auto d : t.shape) mix(std::to_string(d));
  };
  add(tok_embd);
  add(output);
  for (auto& l : layers)
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) add(*t);
  std::ostringstream ss;
  ss << std::hex << h;
  return ss.str();
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void validate_model(const Model& m) {
  const ModelConfig& c = m.config;
  auto fail = [&](const std::string& what) { throw file_error(m.path, what); };
  if (c.n_layers <= 0 || c.dim <= 0 || c.hidden_dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.head_dim <= 0 || c.vocab_size <= 0)
    fail("invalid dimensions: layers " + std::to_string(c.n_layers) + ", dim " + std::to_string(c.dim) +
         ", ffn " + std::to_string(c.hidden_dim) + ", heads " + std::to_string(c.n_heads) + ", kv heads " +
         std::to_string(c.n_kv_heads) + ", head dim " + std::to_string(c.head_dim) + ", vocab " +
         std::to_string(c.vocab_size));
  if (c.context <= 0) fail("invalid context length " + std::to_string(c.context));
  if (c.n_heads % c.n_kv_heads != 0)
    fail("heads (" + std::to_string(c.n_heads) + ") not a multiple of KV heads (" + std::to_string(c.n_kv_heads) + ")");
  if (c.head_dim % 2 != 0) fail("head dim " + std::to_string(c.head_dim) + " is odd; RoPE needs pairs");
  if (c.head_dim > kMaxHeadDim)
    fail("head dim " + std::to_string(c.head_dim) + " is larger than the " + std::to_string(kMaxHeadDim) +
         " this engine supports");
  auto finite_positive = [&](double v, const std::string& what) {
    if (!std::isfinite(v) || !(v > 0)) fail(what + " must be a finite positive number, found " + std::to_string(v));
  };
  finite_positive(c.norm_eps, "RMSNorm epsilon");
  finite_positive(c.rope.theta, "RoPE base frequency (theta)");
  finite_positive(c.rope.factor, "RoPE scaling factor");
  if (c.rope.scaling == "llama3") {
    finite_positive(c.rope.low_freq_factor, "llama3 RoPE low_freq_factor");
    finite_positive(c.rope.high_freq_factor, "llama3 RoPE high_freq_factor");
    if (c.rope.original_context <= 0) fail("llama3 RoPE original context must be positive");
  }
  if (static_cast<int>(m.layers.size()) != c.n_layers)
    fail("expected " + std::to_string(c.n_layers) + " layers, found " + std::to_string(m.layers.size()));
  auto check = [&](const Tensor& t, const std::string& what, std::vector<int64_t> want) {
    if (t.empty()) fail("missing tensor " + what);
    std::vector<int64_t> got = t.shape;
    if (got.size() == 1 && want.size() == 2 && want[0] == 1) want = {want[1]};
    if (got != want)
      fail("tensor " + t.name + ": expected shape " + shape_str(want) + ", found " + shape_str(got));
    if (t.cols() % dtype_block_elems(t.type) != 0)
      fail("tensor " + t.name + ": row of " + std::to_string(t.cols()) + " not a multiple of the " +
           dtype_name(t.type) + " block");
  };
  auto check_f32 = [&](const Tensor& t, const std::string& what, int64_t n) {
    check(t, what, {n});
    if (t.type != DType::F32) fail("tensor " + t.name + " should have been converted to F32");
  };
  int64_t q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  check(m.tok_embd, "token embedding", {c.vocab_size, c.dim});
  check(m.output, "output", {c.vocab_size, c.dim});
  check_f32(m.output_norm, "output norm", c.dim);
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerWeights& l = m.layers[i];
    std::string p = "layer " + std::to_string(i) + " ";
    check_f32(l.attn_norm, p + "attention norm", c.dim);
    check_f32(l.ffn_norm, p + "ffn norm", c.dim);
    check(l.wq, p + "q", {q, c.dim});
    check(l.wk, p + "k", {kv, c.dim});
    check(l.wv, p + "v", {kv, c.dim});
    check(l.wo, p + "output projection", {c.dim, q});
    check(l.w_gate, p + "ffn gate", {c.hidden_dim, c.dim});
    check(l.w_up, p + "ffn up", {c.hidden_dim, c.dim});
    check(l.w_down, p + "ffn down", {c.dim, c.hidden_dim});
    if (c.qkv_bias) {
      check_f32(l.bq, p + "q bias", q);
      check_f32(l.bk, p + "k bias", kv);
      check_f32(l.bv, p + "v bias", kv);
    }
    if (c.qk_norm) {
      check_f32(l.q_norm, p + "q norm", c.head_dim);
      check_f32(l.k_norm, p + "k norm", c.head_dim);
    }
  }
  if (c.rope.scaling != "default" && c.rope.scaling != "linear" && c.rope.scaling != "llama3")
    fail("unsupported rope scaling type '" + c.rope.scaling + "' (supported: default, linear, llama3)");
  if (!m.vocab.tokens.empty() && static_cast<int>(m.vocab.tokens.size()) > c.vocab_size)
    fail("tokenizer has " + std::to_string(m.vocab.tokens.size()) + " tokens but the model's vocabulary is " +
         std::to_string(c.vocab_size));
}

static bool has_magic(const std::string& path, const char* magic) {
  std::ifstream f(path, std::ios::binary);
  char buf[4] = {};
  return f.read(buf, 4) && std::memcmp(buf, magic, 4) == 0;
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opt) {
  namespace fs = std::filesystem;
  auto m = std::make_unique<Model>();
  m->path = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw file_error(path, "no such file or directory");
  if (fs::is_directory(path, ec)) {
    m->format = "safetensors";
    load_safetensors_model(*m, path);
  } else if (has_magic(path, "GGUF")) {
    m->format = "gguf";
    load_gguf_model(*m, path);
  } else {
    m->format = "llama2c";
    try {
      load_llama2c_model(*m, path, opt.tokenizer_path);
    } catch (const Error& e) {
      // Anything without GGUF magic is tried as llama2.c: say both.
      throw Error(std::string(e.what()) + " (the file is neither GGUF, whose magic is \"GGUF\", nor a valid llama2.c checkpoint)");
    }
  }
  if (m->name.empty()) m->name = fs::path(path).filename().string();
  validate_model(*m);
  return m;
}

}  // namespace ckv
