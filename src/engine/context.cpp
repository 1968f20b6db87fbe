#include "engine/context.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "util/error.h"

namespace ckv {

namespace {
constexpr int kMaxDecodeTokens = 8;  // new tokens per sequence in a decode step
}

Context::Context(const Model& m, std::unique_ptr<Backend> backend, const ContextOptions& opt)
    : m_(m), b_(std::move(backend)), opt_(opt) {
  const ModelConfig& c = m.config;
  if (opt_.n_ctx <= 0) opt_.n_ctx = c.context;
  if (opt_.max_seqs < 1) throw Error("context: max_seqs must be at least 1");
  if (m.shard.size > 1 && (!opt_.comm || opt_.comm->size() != m.shard.size || opt_.comm->rank() != m.shard.rank))
    throw Error("context: a tensor-parallel rank's model needs its rank's communicator");
  if (const char* e = std::getenv("CKV_NO_GRAPHS"); e && std::string(e) == "1") opt_.record_steps = false;
  if (opt_.chunk <= 0) opt_.chunk = b_->preferred_chunk();
  opt_.chunk = std::min<int64_t>(opt_.chunk, std::max(opt_.n_ctx, 1));
  opt_.max_window = std::max(1, opt_.max_window);
  decode_rows_ = opt_.max_seqs * kMaxDecodeTokens;
  const int64_t N = opt_.n_ctx;
  b_->prepare(m, BackendLimits{std::max(decode_rows_, opt_.chunk), opt_.max_seqs, N});

  const int64_t dim = c.dim, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  const int64_t R = decode_rows_, rows = std::max<int64_t>(R, opt_.chunk), ff = c.hidden_dim;
  ws_.rows = static_cast<int>(rows);
  ws_.logit_rows = std::max(16, opt_.max_seqs);
  auto take = [&](int64_t floats, const char* what) {
    void* p = b_->alloc(sizeof(float) * std::max<int64_t>(floats, 1), std::string("the workspace's ") + what);
    allocs_.push_back(p);
    ws_.bytes += sizeof(float) * floats;
    return static_cast<float*>(p);
  };
  try {
    ws_.x = take(R * dim, "residual stream");
    ws_.xb = take(rows * dim, "normed rows");
    ws_.q = take(rows * qd, "queries");
    ws_.k = take(R * kvd, "new keys");
    ws_.v = take(R * kvd, "new values");
    ws_.att = take(rows * qd, "attention output");
    ws_.gate = take(rows * ff, "FFN gate");
    ws_.up = take(rows * ff, "FFN up");
    ws_.dense_k = take(N * kvd, "layer keys");
    ws_.dense_v = take(N * kvd, "layer values");
    ws_.qw = take(int64_t(opt_.max_window) * qd, "window queries");
    // A rank's presses gather the whole model's per-head rows (press/scoring.h).
    const ShardInfo& sh = m.shard;
    const int64_t score_rows = sh.size > 1 ? int64_t(sh.total_kv_heads) + sh.total_heads + 1 : int64_t(c.n_heads) + 1;
    ws_.score = take(score_rows * N, "press scores");
    ws_.xn = take(int64_t(ws_.logit_rows) * dim, "output norm");
    ws_.logits = take(int64_t(ws_.logit_rows) * c.vocab_size, "logits");
    // The pool after the workspace, so that a size_kv_pool hook sees what is left.
    const int P = b_->kv_page_rows();
    int64_t pages = opt_.kv_pages;
    if (opt_.size_kv_pool) {
      pages = opt_.size_kv_pool(*b_, KvPool::page_bytes_for(P, c.head_dim, opt_.kv_type));
    } else if (pages <= 0) {
      // 0: max_seqs full caches; -k: k times that.
      pages = std::max<int64_t>(1, -pages) * opt_.max_seqs * c.n_layers * c.n_kv_heads * ((N + P - 1) / P);
    }
    pool_ = std::make_unique<KvPool>(*b_, c.head_dim, opt_.kv_type, P, pages);
  } catch (...) {
    for (void* p : allocs_) b_->free(p);
    throw;
  }
  ws_.tokens.reserve(R), ws_.pos.reserve(R);
  ws_.items.reserve(opt_.max_seqs), ws_.appends.reserve(opt_.max_seqs), ws_.shape.reserve(opt_.max_seqs);
  ws_.probe_mass.resize(c.n_heads), ws_.probe_arg.resize(c.n_heads);
  ws_.host_q.resize(qd), ws_.host_att.resize(qd);
  ws_.host_logits.resize(int64_t(ws_.logit_rows) * c.vocab_size);
  ws_.top_vals.resize(int64_t(ws_.logit_rows) * Backend::kMaxTopLogits);
  ws_.top_ids.resize(int64_t(ws_.logit_rows) * Backend::kMaxTopLogits);
  recordings_ = std::make_unique<StepRecordings>(*b_);
}

Context::~Context() {
  recordings_.reset();
  for (void* p : allocs_) b_->free(p);
}

LayerView Context::layer_view(int layer, int T, const float* q, int q_rows, const float* k) {
  const ModelConfig& c = m_.config;
  const ShardInfo& sh = m_.shard;
  LayerView lv{layer, c.n_layers, T, c.n_heads, c.n_kv_heads, c.head_dim, q, q_rows, k, b_.get(), ws_.score};
  if (sh.size > 1) {
    lv.head0 = sh.head0;
    lv.kv_head0 = sh.kv_head0;
    lv.total_heads = sh.total_heads;
    lv.total_kv_heads = sh.total_kv_heads;
    lv.comm = opt_.comm;
  }
  return lv;
}

size_t Context::fixed_bytes() const { return ws_.bytes + b_->scratch_bytes() + b_->weight_bytes(); }

}  // namespace ckv
