// llama2.c "legacy" checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; negative vocab = separate classifier), then
// fp32 tensors in run.c's order. Every tensor is a view into the mapping.
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mmap_file.h"

namespace ckv {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kHeaderBytes = 28;
// Per-field sanity limit; real models are far below it, and it keeps every
// size product below 2^63.
constexpr int32_t kMaxField = 1 << 20;

uint64_t mul(uint64_t a, uint64_t b, const std::string& path) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw file_error(path, "header sizes overflow");
  return r;
}

// Walks the file in run.c's order, handing out F32 views.
class Cursor {
 public:
  explicit Cursor(const uint8_t* base) : p_(base + kHeaderBytes) {}
  Tensor take(const std::string& name, std::vector<int64_t> shape) {
    Tensor t;
    t.name = name;
    t.type = DType::F32;
    t.shape = std::move(shape);
    t.data = p_;
    t.nbytes = static_cast<size_t>(t.numel()) * sizeof(float);
    p_ += t.nbytes;
    return t;
  }
  void skip(uint64_t floats) { p_ += floats * sizeof(float); }

 private:
  const uint8_t* p_;
};

}  // namespace

void load_llama2c_model(Model& m, const std::string& path, const std::string& tokenizer_path) {
  auto file = MappedFile::open(path);
  if (file->size() < kHeaderBytes)
    throw file_error(path, "llama2.c header: expected " + std::to_string(kHeaderBytes) + " bytes, found " +
                               std::to_string(file->size()));
  int32_t h[7];
  std::memcpy(h, file->data(), sizeof(h));
  static const char* kNames[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  const bool shared = h[5] > 0;
  if (h[5] < 0 && h[5] != INT32_MIN) h[5] = -h[5];
  for (int i = 0; i < 7; ++i)
    if (h[i] <= 0 || h[i] > kMaxField)
      throw file_error(path, std::string("llama2.c header: ") + kNames[i] + " = " + std::to_string(h[i]) +
                                 " is out of range (1.." + std::to_string(kMaxField) + ")");
  const int64_t dim = h[0], hidden = h[1], L = h[2], heads = h[3], kv_heads = h[4], vocab = h[5], seq = h[6];
  if (dim % heads != 0)
    throw file_error(path, "llama2.c header: dim " + std::to_string(dim) + " is not a multiple of n_heads " +
                               std::to_string(heads));
  if (heads % kv_heads != 0)
    throw file_error(path, "llama2.c header: n_heads " + std::to_string(heads) + " is not a multiple of n_kv_heads " +
                               std::to_string(kv_heads));
  const int64_t hd = dim / heads, kv_dim = kv_heads * hd;
  if (hd % 2 != 0) throw file_error(path, "llama2.c header: head dim " + std::to_string(hd) + " (dim/n_heads) is odd");
  if (hd > kMaxHeadDim)
    throw file_error(path, "llama2.c header: head dim " + std::to_string(hd) + " (dim/n_heads) is out of range: "
                           "expected at most " + std::to_string(kMaxHeadDim));

  // Float count implied by the header (run.c's memory_map_weights).
  uint64_t n = 0;
  auto add = [&](uint64_t a, uint64_t b, uint64_t c = 1) { n += mul(mul(a, b, path), c, path); };
  add(vocab, dim);                 // token embedding
  add(L, dim);                     // rms_att
  add(L, dim, dim);                // wq
  add(L, kv_dim, dim);             // wk
  add(L, kv_dim, dim);             // wv
  add(L, dim, dim);                // wo
  add(L, dim);                     // rms_ffn
  add(L, hidden, dim);             // w1
  add(L, dim, hidden);             // w2
  add(L, hidden, dim);             // w3
  add(dim, 1);                     // rms_final
  add(seq, hd);                    // freq_cis_real + imag, seq * hd/2 each
  if (!shared) add(vocab, dim);    // classifier
  const uint64_t need = kHeaderBytes + mul(n, sizeof(float), path);
  if (file->size() < need)
    throw file_error(path, "llama2.c weights for this header: expected " + std::to_string(need) + " bytes, found " +
                               std::to_string(file->size()));

  ModelConfig& c = m.config;
  c.arch = "llama";
  c.dim = static_cast<int>(dim);
  c.hidden_dim = static_cast<int>(hidden);
  c.n_layers = static_cast<int>(L);
  c.n_heads = static_cast<int>(heads);
  c.n_kv_heads = static_cast<int>(kv_heads);
  c.head_dim = static_cast<int>(hd);
  c.vocab_size = static_cast<int>(vocab);
  c.context = static_cast<int>(seq);
  c.norm_eps = 1e-5f;
  c.rope = RopeConfig{};
  c.rope.theta = 10000.0f;
  c.rope.interleaved = true;  // run.c rotates (x[2i], x[2i+1])
  c.tied_output = shared;
  m.format = "llama2c";
  if (m.path.empty()) m.path = path;
  if (m.name.empty()) m.name = fs::path(path).stem().string();

  // Each weight is stored for all layers at once: slice per layer.
  Cursor cur(file->data());
  m.tok_embd = cur.take("token_embedding_table", {vocab, dim});
  m.layers.assign(L, LayerWeights{});
  auto per_layer = [&](const char* name, std::vector<int64_t> shape, Tensor LayerWeights::*field) {
    for (int64_t l = 0; l < L; ++l)
      m.layers[l].*field = cur.take(std::string(name) + "[" + std::to_string(l) + "]", shape);
  };
  per_layer("rms_att_weight", {dim}, &LayerWeights::attn_norm);
  per_layer("wq", {dim, dim}, &LayerWeights::wq);
  per_layer("wk", {kv_dim, dim}, &LayerWeights::wk);
  per_layer("wv", {kv_dim, dim}, &LayerWeights::wv);
  per_layer("wo", {dim, dim}, &LayerWeights::wo);
  per_layer("rms_ffn_weight", {dim}, &LayerWeights::ffn_norm);
  per_layer("w1", {hidden, dim}, &LayerWeights::w_gate);
  per_layer("w2", {dim, hidden}, &LayerWeights::w_down);
  per_layer("w3", {hidden, dim}, &LayerWeights::w_up);
  m.output_norm = cur.take("rms_final_weight", {dim});
  cur.skip(static_cast<uint64_t>(seq * hd));  // freq_cis_real/imag: RoPE is computed instead
  m.output = shared ? m.tok_embd : cur.take("wcls", {vocab, dim});
  m.storage.push_back(file);

  // Tokenizer: explicit path, else llama2.c's names beside the weights.
  std::string tok = tokenizer_path;
  if (tok.empty()) {
    fs::path folder = fs::path(path).parent_path();
    for (std::string cand : {"tok" + std::to_string(vocab) + ".bin", std::string("tokenizer.bin")}) {
      std::error_code ec;
      fs::path p = folder / cand;
      if (fs::is_regular_file(p, ec)) {
        tok = p.string();
        break;
      }
    }
  }
  if (!tok.empty()) m.vocab = read_llama2c_tokenizer(tok, c.vocab_size);
}

}  // namespace ckv
