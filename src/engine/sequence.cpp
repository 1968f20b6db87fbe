#include "engine/sequence.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "engine/forward.h"
#include "util/error.h"

namespace ckv {

// A tensor-parallel rank's press is the whole model's: its settings and
// profile are checked against every head (its LayerView says which it holds).
std::unique_ptr<Press> Sequence::make_press_for(const SequenceOptions& o, const Model& m) {
  const ModelConfig& c = m.config;
  const bool split = m.shard.size > 1;
  const PressShape shape{c.n_layers, split ? m.shard.total_heads : c.n_heads,
                         split ? m.shard.total_kv_heads : c.n_kv_heads, c.head_dim};
  if (!o.select.empty() || !o.alloc.empty()) {
    if (o.select.empty() || o.alloc.empty()) throw Error("--kv-select and --kv-alloc go together: give both");
    return make_press_pair(o.select, o.alloc, o.press, shape, o.profile);
  }
  return make_press(o.method, o.press, shape, o.profile);
}

int64_t Sequence::pages_bound(const Context& ctx, const SequenceOptions& opt, int64_t prompt, int64_t generated) {
  const ModelConfig& c = ctx.model().config;
  const int P = ctx.pool().page_rows();
  // A read of one token is appended whole; a longer first read is compressed
  // layer by layer to the press's budgets for this prompt length.
  std::unique_ptr<Press> press = make_press_for(opt, ctx.model());
  if (prompt > 1) press->begin(c.n_layers, static_cast<int>(prompt));
  int64_t pages = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    const int64_t kept = prompt > 1 ? press->layer_budget(l) : prompt;
    pages += layer_pages_bound(c.n_kv_heads, kept, prompt, generated, P);
  }
  return pages;
}

int window_suffix(const SequenceOptions& o) { return o.press.window_at == WindowAt::User ? o.user_suffix : 0; }
int window_rows(const SequenceOptions& o) { return o.press.window + window_suffix(o); }

Sequence::Sequence(Context& ctx, const SequenceOptions& opt)
    : ctx_(ctx),
      opt_(opt),
      press_(make_press_for(opt, ctx.model())),
      kv_(ctx.pool(), ctx.model().config.n_layers, ctx.model().config.n_kv_heads, ctx.n_ctx()) {
  const ModelConfig& c = ctx.model().config;
  const int max_window = ctx.options().max_window;
  if (press_->name() != "full" && opt.press.budget > ctx.n_ctx())
    throw Error("--kv-budget " + std::to_string(opt.press.budget) + " exceeds the context size " +
                std::to_string(ctx.n_ctx()) + " (-c)");
  if (opt.user_suffix < 0) throw Error("user suffix " + std::to_string(opt.user_suffix) + " must be >= 0");
  if (opt.press.window > max_window || opt.keep_queries > max_window)
    throw Error("--kv-window " + std::to_string(std::max(opt.press.window, opt.keep_queries)) +
                " exceeds the context's window room of " + std::to_string(max_window) + " query rows");
  if (window_rows(opt) > max_window)
    throw Error("--kv-window " + std::to_string(opt.press.window) + " with --kv-window-at user and a chat template "
                "suffix of " + std::to_string(opt.user_suffix) + " tokens needs " + std::to_string(window_rows(opt)) +
                " query rows; the context has room for " + std::to_string(max_window));
  if (opt.keep_queries > 0) {
    kept_query_rows_ = opt.keep_queries;
    const size_t floats = static_cast<size_t>(c.n_layers) * opt.keep_queries * c.n_heads * c.head_dim;
    queries_ = static_cast<float*>(ctx.backend().alloc(sizeof(float) * floats, "the kept prompt queries"));
  }
  note_peak();
}

Sequence::~Sequence() {
  fail_read();
  if (queries_) ctx_.backend().free(queries_);
}

void Sequence::note_peak(size_t transient) {
  const ModelConfig& c = ctx_.model().config;
  size_t q = queries_ ? sizeof(float) * c.n_layers * kept_query_rows_ * c.n_heads * c.head_dim : 0;
  peak_ = std::max(peak_, kv_.bytes() + kv_.table_bytes() + kept_bytes_ + q + transient);
}

void Sequence::begin_read(std::span<const int> tokens) {
  const ModelConfig& c = ctx_.model().config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (read_.active) throw Error("read: the sequence is already reading");
  if (n == 0) throw Error("empty prompt: nothing to read");
  if (n_past_ + n > ctx_.n_ctx())
    throw Error("sequence of " + std::to_string(n_past_ + n) + " tokens exceeds the context size " +
                std::to_string(ctx_.n_ctx()) + " (-c)");
  for (int t : tokens)
    if (t < 0 || t >= c.vocab_size)
      throw Error("token id " + std::to_string(t) + " out of range [0, " + std::to_string(c.vocab_size) + ")");
  if (n_past_ == 0 && window_suffix(opt_) > n)
    throw Error("the prompt has " + std::to_string(n) + " tokens, fewer than its chat template suffix of " +
                std::to_string(window_suffix(opt_)) + " (--kv-window-at user)");
  Read& rd = read_;
  rd.first = n_past_ == 0;
  rd.compress = rd.first && n > 1;
  rd.n = n;
  rd.tokens.assign(tokens.begin(), tokens.end());
  rd.pos.resize(n);
  std::iota(rd.pos.begin(), rd.pos.end(), static_cast<int32_t>(n_past_));
  rd.start.assign(c.n_kv_heads, 0);
  rd.first_new = 0;
  if (!rd.first) {
    // A later read: room for its rows in every head now (all or nothing);
    // each head's prefix goes right-aligned before the new rows.
    for (int l = 0; l < c.n_layers; ++l)
      for (int g = 0; g < c.n_kv_heads; ++g) rd.first_new = std::max<int64_t>(rd.first_new, kv_.len(l, g));
  }
  if (!rd.compress) kv_.grow(static_cast<int>(n));  // the rows are appended as they are
  try {
    rd.x = static_cast<float*>(ctx_.backend().alloc(sizeof(float) * n * c.dim, "a prompt's residual stream"));
  } catch (...) {
    if (!rd.compress) kv_.shrink(static_cast<int>(n));
    throw;
  }
  if (rd.compress) {
    press_->begin(c.n_layers, static_cast<int>(n));
    kept_.assign(c.n_layers, {});
  }
  rd.next_layer = 0;
  rd.active = true;
  ctx_.backend().embed(rd.tokens, rd.x);
  note_peak(sizeof(float) * n * c.dim);
}

bool Sequence::read_layers(int n) {
  if (!read_.active) throw Error("read: no read in progress");
  const ModelConfig& c = ctx_.model().config;
  try {
    for (int i = 0; i < n && read_.next_layer < c.n_layers; ++i) {
      const int l = read_.next_layer;
      if (!read_.first) {
        // Per-head prefix starts of this layer (heads may differ: Ada-KV).
        for (int g = 0; g < c.n_kv_heads; ++g) read_.start[g] = read_.first_new - (kv_.len(l, g) - read_.n);
      }
      read_layer(ctx_, *this, l);
      ++read_.next_layer;
      if (read_.compress) {
        for (const auto& h : kept_[l]) kept_bytes_ += h.capacity() * sizeof(int32_t);
      }
      note_peak(sizeof(float) * read_.n * c.dim);
    }
  } catch (...) {
    fail_read();
    throw;
  }
  return read_.next_layer == c.n_layers;
}

void Sequence::finish_read(float* logits_last, const std::function<void(int64_t, const float*)>& each) {
  if (!read_.active || read_.next_layer != ctx_.model().config.n_layers)
    throw Error("read: finish_read before every layer was read");
  try {
    read_logits(ctx_, *this, logits_last, each);
  } catch (...) {
    fail_read();
    throw;
  }
  n_past_ += read_.n;
  ctx_.backend().free(read_.x);
  read_.x = nullptr;
  read_.active = false;
}

void Sequence::read(std::span<const int> tokens, float* logits_last,
                    const std::function<void(int64_t, const float*)>& each) {
  begin_read(tokens);
  while (!read_layers(ctx_.model().config.n_layers)) {
  }
  finish_read(logits_last, each);
}

void Sequence::cancel_read() { fail_read(); }

// A read that failed half-way leaves nothing behind: a first read empties the
// cache, a later read gives back the rows it reserved.
void Sequence::fail_read() {
  if (!read_.active) return;
  if (read_.first) {
    kv_.clear();
    kept_.clear();
    kept_bytes_ = 0;
  } else {
    kv_.shrink(static_cast<int>(read_.n));
  }
  ctx_.backend().free(read_.x);
  read_.x = nullptr;
  read_.active = false;
}

std::unique_ptr<Sequence> Sequence::compress_copy(const Sequence& full, const SequenceOptions& opt) {
  Context& ctx = full.ctx_;
  const ModelConfig& c = ctx.model().config;
  const int T = static_cast<int>(full.n_past_);
  if (full.press_->name() != "full" || T == 0 || full.reading())
    throw Error("compress_copy: the source must have read its prompt with method full");
  for (int l = 0; l < c.n_layers; ++l)
    for (int g = 0; g < c.n_kv_heads; ++g)
      if (full.kv_.len(l, g) != T) throw Error("compress_copy: the source holds more than its prompt");
  const int q_rows = std::min(full.kept_query_rows_, T);
  if (window_suffix(opt) > T)
    throw Error("compress_copy: a suffix of " + std::to_string(window_suffix(opt)) + " tokens in a prompt of " +
                std::to_string(T));
  if (!full.queries_ || q_rows < std::min(window_rows(opt), T))
    throw Error("compress_copy: the source kept " + std::to_string(q_rows) + " query rows, the window needs " +
                std::to_string(window_rows(opt)) + " (SequenceOptions::keep_queries)");
  auto s = std::make_unique<Sequence>(ctx, opt);
  Backend& b = ctx.backend();
  Workspace& ws = ctx.ws();
  const DenseKV dense{ws.dense_k, ws.dense_v, T, {}};
  const size_t qd = static_cast<size_t>(c.n_heads) * c.head_dim;
  s->press_->begin(c.n_layers, T);
  s->kept_.assign(c.n_layers, {});
  for (int l = 0; l < c.n_layers; ++l) {
    b.kv_to_dense(full.kv_, l, dense, 0);
    const float* qw = full.queries_ + (static_cast<size_t>(l) * full.kept_query_rows_ + (full.kept_query_rows_ - q_rows)) * qd;
    compress_layer(ctx, s->kv_, *s->press_, l, T, dense, qw, q_rows, window_suffix(opt), s->kept_, opt.on_layer);
    for (const auto& h : s->kept_[l]) s->kept_bytes_ += h.capacity() * sizeof(int32_t);
  }
  s->n_past_ = T;
  s->note_peak();
  return s;
}

}  // namespace ckv
