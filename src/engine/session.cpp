#include "engine/session.h"

#include "engine/forward.h"
#include "util/error.h"

namespace ckv {

ContextOptions context_options(const SessionOptions& o) {
  ContextOptions c;
  c.n_ctx = o.n_ctx;
  c.chunk = o.chunk;
  c.kv_type = o.kv_type;
  c.max_window = std::max({64, window_rows(sequence_options(o)), o.keep_queries});
  if (o.keep_queries > 0) c.kv_pages = -2;  // room for compressed copies beside the full cache
  return c;
}

SequenceOptions sequence_options(const SessionOptions& o) {
  SequenceOptions s;
  s.method = o.method;
  s.select = o.select;
  s.alloc = o.alloc;
  s.press = o.press;
  s.profile = o.profile;
  s.user_suffix = o.user_suffix;
  s.keep_queries = o.keep_queries;
  s.on_layer = o.on_layer;
  s.on_progress = o.on_progress;
  s.probe = o.probe;
  s.on_decode_layer = o.on_decode_layer;
  return s;
}

Session::Session(const Model& m, const SessionOptions& opt) : m_(m) {
  if (opt.n_ctx < 0) throw Error("-c " + std::to_string(opt.n_ctx) + " must be positive (0 = the model's context)");
  if (opt.tp < 1) throw Error("--tp " + std::to_string(opt.tp) + " must be at least 1");
  if (opt.tp > 1) {
    RankBackendFactory mk = opt.make_rank_backend;
    if (!mk) mk = [q8 = opt.q8_matmul](int) { return make_cpu_backend(q8); };
    group_ = std::make_shared<TpGroup>(m, opt.tp, mk, context_options(opt));
    tseq_ = std::make_unique<TpSequence>(*group_, sequence_options(opt));
    return;
  }
  auto backend = opt.make_backend ? opt.make_backend() : make_cpu_backend(opt.q8_matmul);
  ctx_ = std::make_shared<Context>(m, std::move(backend), context_options(opt));
  seq_ = std::make_unique<Sequence>(*ctx_, sequence_options(opt));
}

Session::Session(const Model& m, std::shared_ptr<Context> ctx, const SessionOptions&, std::unique_ptr<Sequence> seq)
    : m_(m), ctx_(std::move(ctx)), seq_(std::move(seq)) {}

Session::Session(const Model& m, std::shared_ptr<TpGroup> group, std::unique_ptr<TpSequence> seq)
    : m_(m), group_(std::move(group)), tseq_(std::move(seq)) {}

Session::~Session() {
  seq_.reset();
  tseq_.reset();
}

int64_t Session::n_past() const { return tseq_ ? tseq_->n_past() : seq_->n_past(); }
int Session::n_ctx() const { return group_ ? group_->n_ctx() : ctx_->n_ctx(); }
Context& Session::context() const { return group_ ? group_->context(0) : *ctx_; }
Sequence& Session::sequence() const { return tseq_ ? tseq_->rank(0) : *seq_; }
size_t Session::kv_bytes() const { return tseq_ ? tseq_->kv_bytes() : seq_->kv().bytes(); }
size_t Session::kv_full_bytes() const { return tseq_ ? tseq_->kv_full_bytes() : seq_->kv().full_bytes(n_past()); }
size_t Session::peak_bytes() const {
  return tseq_ ? group_->fixed_bytes() + tseq_->peak_bytes() : ctx_->fixed_bytes() + seq_->peak_bytes();
}

const std::vector<KeptPositions>& Session::kept() const {
  if (!tseq_) return seq_->kept();
  kept_all_ = tseq_->kept();
  return kept_all_;
}

void Session::prefill(const std::vector<int>& tokens, float* logits_last,
                      const std::function<void(int64_t, const float*)>& each) {
  if (tokens.empty()) throw Error("empty prompt: nothing to read");
  const int n = static_cast<int>(tokens.size());
  if (n_past() > 0 && n <= 8) {
    // A short later read decodes: each position's logits, or the last's.
    std::vector<float> all(each ? static_cast<size_t>(n) * m_.config.vocab_size : 0);
    float* out = each ? all.data() : logits_last;
    const int64_t first = n_past();
    if (tseq_) {
      TpDecodeStep st{tseq_.get(), tokens, out, static_cast<bool>(each)};
      decode_step(*group_, std::span<TpDecodeStep>(&st, 1));
    } else {
      DecodeStep st{seq_.get(), tokens, out, static_cast<bool>(each)};
      decode_step(*ctx_, std::span<DecodeStep>(&st, 1));
    }
    if (each) {
      const int V = m_.config.vocab_size;
      for (int i = 0; i < n; ++i) each(first + i, &all[static_cast<size_t>(i) * V]);
      if (logits_last) std::copy(&all[static_cast<size_t>(n - 1) * V], &all[static_cast<size_t>(n) * V], logits_last);
    }
    return;
  }
  if (tseq_) tseq_->read(tokens, logits_last, each);
  else seq_->read(tokens, logits_last, each);
}

void Session::decode(int token, float* logits) {
  const int t[] = {token};
  if (tseq_) {
    TpDecodeStep st{tseq_.get(), t, logits};
    decode_step(*group_, std::span<TpDecodeStep>(&st, 1));
    return;
  }
  DecodeStep st{seq_.get(), t, logits};
  decode_step(*ctx_, std::span<DecodeStep>(&st, 1));
}

std::unique_ptr<Session> Session::compress_copy(const SessionOptions& opt) const {
  if (tseq_)
    return std::unique_ptr<Session>(new Session(m_, group_, TpSequence::compress_copy(*tseq_, sequence_options(opt))));
  auto seq = Sequence::compress_copy(*seq_, sequence_options(opt));
  return std::unique_ptr<Session>(new Session(m_, ctx_, opt, std::move(seq)));
}

}  // namespace ckv
