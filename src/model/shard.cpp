// Tensor-parallel sharding (model/shard.h): which heads, FFN columns and
// weight rows/columns each rank holds, and the rank's Model built from them.
#include "model/shard.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "model/quant.h"
#include "util/error.h"

namespace ckv {

ShardPlan shard_plan(const ModelConfig& c, int rank, int size, int ff_align) {
  const std::string tp = "--tp " + std::to_string(size);
  if (size < 1) throw Error(tp + " must be at least 1");
  if (c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads != 0)
    throw Error(tp + ": the model's " + std::to_string(c.n_heads) + " query heads are not a multiple of its " +
                std::to_string(c.n_kv_heads) + " KV heads");
  if (c.n_kv_heads % size != 0)
    throw Error(tp + " does not divide the model's " + std::to_string(c.n_kv_heads) +
                " KV heads: tensor parallelism splits whole KV heads (with their query heads) across devices, so "
                "--tp must divide " + std::to_string(c.n_kv_heads));
  if (rank < 0 || rank >= size) throw Error(tp + ": rank " + std::to_string(rank) + " out of range");
  ff_align = std::max(1, ff_align);
  if (c.hidden_dim % ff_align != 0 || c.hidden_dim / ff_align < size)
    throw Error(tp + ": the FFN's " + std::to_string(c.hidden_dim) + " columns cannot be split into " +
                std::to_string(size) + " parts of whole " + std::to_string(ff_align) + "-column blocks");
  ShardPlan p;
  p.rank = rank;
  p.size = size;
  p.n_kv_heads = c.n_kv_heads / size;
  p.kv_head0 = rank * p.n_kv_heads;
  const int r = c.n_heads / c.n_kv_heads;  // query heads per KV head
  p.n_heads = p.n_kv_heads * r;
  p.head0 = p.kv_head0 * r;
  const int units = c.hidden_dim / ff_align, base = units / size, extra = units % size;
  p.ff0 = (rank * base + std::min(rank, extra)) * ff_align;
  p.n_ff = (base + (rank < extra ? 1 : 0)) * ff_align;
  return p;
}

Tensor slice_rows(const Tensor& t, int64_t row0, int64_t n) {
  if (t.shape.empty()) return t;
  Tensor s = t;
  if (t.shape.size() == 1) {  // a vector (F32: biases)
    if (row0 < 0 || row0 + n > t.cols()) throw Error("slice of " + t.name + " out of range");
    s.shape = {n};
    s.nbytes = static_cast<size_t>(dtype_row_bytes(t.type, n));
    if (t.data) s.data = static_cast<const uint8_t*>(t.data) + dtype_row_bytes(t.type, row0);
    s.col0 = t.col0 + row0;
    s.full_cols = t.full_cols ? t.full_cols : t.cols();
    return s;
  }
  if (row0 < 0 || row0 + n > t.rows()) throw Error("row slice of " + t.name + " out of range");
  s.shape = {n, t.cols()};
  s.nbytes = static_cast<size_t>(n * t.row_bytes());
  if (t.data) s.data = t.row(row0);
  s.row0 = t.row0 + row0;
  s.full_cols = t.full_cols ? t.full_cols : t.cols();
  return s;
}

Tensor slice_cols(Model& owner, const Tensor& t, int64_t col0, int64_t n) {
  if (col0 < 0 || col0 + n > t.cols() || t.shape.size() != 2) throw Error("column slice of " + t.name + " out of range");
  Tensor s = t;
  s.shape = {t.rows(), n};
  s.col0 = t.col0 + col0;
  s.full_cols = t.full_cols ? t.full_cols : t.cols();
  const int64_t blk = dtype_block_elems(t.type), rows = t.rows();
  if (!t.data) {  // random weights: a shape, filled by the backend
    s.nbytes = static_cast<size_t>(rows * dtype_row_bytes(t.type, n));
    return s;
  }
  if (col0 % blk == 0 && n % blk == 0) {  // whole blocks: the bytes themselves
    const int64_t rb = dtype_row_bytes(t.type, n), off = dtype_row_bytes(t.type, col0);
    std::vector<uint8_t> buf(static_cast<size_t>(rows * rb));
    for (int64_t r = 0; r < rows; ++r) std::memcpy(&buf[r * rb], t.row(r) + off, rb);
    s.nbytes = buf.size();
    s.data = owner.own(buf.data(), buf.size());
    return s;
  }
  // Columns inside quantisation blocks: dequantised (exactly) to F32.
  std::vector<float> row(static_cast<size_t>(t.cols())), buf(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(t.type, t.row(r), row.data(), t.cols());
    std::copy(row.begin() + col0, row.begin() + col0 + n, buf.begin() + r * n);
  }
  s.type = DType::F32;
  s.nbytes = buf.size() * sizeof(float);
  s.data = owner.own(buf.data(), s.nbytes);
  return s;
}

std::unique_ptr<Model> shard_model(const Model& full, int rank, int size) {
  const ModelConfig& c = full.config;
  if (full.shard.size != 1) throw Error("shard_model: the model is already a rank's part");
  int ff_align = 1;
  for (const LayerWeights& l : full.layers) ff_align = std::max<int>(ff_align, dtype_block_elems(l.w_down.type));
  const ShardPlan p = shard_plan(c, rank, size, ff_align);
  auto m = std::make_unique<Model>();
  m->path = full.path;
  m->format = full.format;
  m->name = full.name;
  m->config = c;
  m->config.n_heads = p.n_heads;
  m->config.n_kv_heads = p.n_kv_heads;
  m->config.hidden_dim = p.n_ff;
  m->storage = full.storage;  // the mapped files and owned vectors the views point into
  m->tok_embd = full.tok_embd;
  m->output_norm = full.output_norm;
  m->output = full.output;
  m->shard = {rank, size, p.head0, p.kv_head0, p.ff0, c.n_heads, c.n_kv_heads, c.hidden_dim};
  const int64_t hd = c.head_dim;
  const int64_t q0 = p.head0 * hd, nq = p.n_heads * hd, k0 = p.kv_head0 * hd, nk = p.n_kv_heads * hd;
  m->layers.resize(full.layers.size());
  for (size_t i = 0; i < full.layers.size(); ++i) {
    const LayerWeights& f = full.layers[i];
    LayerWeights& l = m->layers[i];
    l.attn_norm = f.attn_norm;
    l.ffn_norm = f.ffn_norm;
    l.q_norm = f.q_norm;
    l.k_norm = f.k_norm;
    l.wq = slice_rows(f.wq, q0, nq);
    l.wk = slice_rows(f.wk, k0, nk);
    l.wv = slice_rows(f.wv, k0, nk);
    if (c.qkv_bias) {
      l.bq = slice_rows(f.bq, q0, nq);
      l.bk = slice_rows(f.bk, k0, nk);
      l.bv = slice_rows(f.bv, k0, nk);
    }
    l.wo = slice_cols(*m, f.wo, q0, nq);
    l.w_gate = slice_rows(f.w_gate, p.ff0, p.n_ff);
    l.w_up = slice_rows(f.w_up, p.ff0, p.n_ff);
    l.w_down = slice_cols(*m, f.w_down, p.ff0, p.n_ff);
  }
  if (!full.layers.empty() && full.layers[0].wq.data) validate_model(*m);  // the rank's shapes agree with its config
  return m;
}

}  // namespace ckv
