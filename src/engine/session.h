// One sequence on its own context: the simple API for a single prompt and
// its continuation (run, perplexity, the tests). Many sequences at once use
// Context + Sequence + decode_step directly (engine/forward.h).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/sequence.h"
#include "engine/tp.h"
#include "model/model.h"

namespace ckv {

struct SessionOptions {
  std::string method = "full";  // press preset (press/press.h registry)
  std::string select, alloc;    // or a (selection, allocation) pair
  PressParams press;
  const Profile* profile = nullptr;
  int user_suffix = 0;  // prompt tokens after the final user message's content (SequenceOptions)
  int n_ctx = 0;    // maximum positions; 0 = the model's context
  int chunk = 0;    // rows per matrix product while reading a prompt; 0 = the backend's choice
  KvType kv_type = KvType::F32;  // cache rows: f32 (exact) or f16
  bool q8_matmul = false;        // CPU: 8-bit activations for decode products (--matmul q8)
  int keep_queries = 0;          // prompt queries kept per layer (compress_copy)
  std::function<void(const LayerView&)> on_layer;
  std::function<void(int layer, int n_layers)> on_progress;
  AttentionProbe* probe = nullptr;
  std::function<void(int layer, const float* q, const float* attn)> on_decode_layer;
  // Runs on this backend instead of a new CPU one (e.g. CUDA).
  std::function<std::unique_ptr<Backend>()> make_backend;
  // Tensor parallelism (engine/tp.h): the model split over tp devices, rank
  // r on make_rank_backend(r) (unset: a CPU backend per rank).
  int tp = 1;
  std::function<std::unique_ptr<Backend>(int rank)> make_rank_backend;
};

class Session {
 public:
  Session(const Model& m, const SessionOptions& opt);
  ~Session();

  // Reads tokens after what the session holds. The first read of a session is
  // the prompt: each layer is compressed by the press right after its
  // attention (DESIGN.md 2.1, 4). logits_last (vocab floats) gets the last
  // position's logits when non-null; `each` (when set) gets every position's.
  // Reads of up to 8 tokens after the prompt run as a decode step.
  void prefill(const std::vector<int>& tokens, float* logits_last,
               const std::function<void(int64_t pos, const float* logits)>& each = {});
  // One generated token; logits (vocab floats) of the next position.
  void decode(int token, float* logits);

  // A session holding this one's prompt cache compressed by opt's press, as
  // if its own prefill had compressed it (Sequence::compress_copy). This
  // session must have read one prompt with method "full" and keep_queries >=
  // opt's window. The new session shares this one's context.
  std::unique_ptr<Session> compress_copy(const SessionOptions& opt) const;

  int64_t n_past() const;  // logical position of the next token
  int n_ctx() const;
  // The cache (with tensor parallelism: rank 0's, its KV heads only).
  const KvCache& kv() const { return sequence().kv(); }
  const Press& press() const { return sequence().press(); }
  // Kept prompt positions per layer from the compressing prefill ([L][G][n],
  // every KV head of the model).
  const std::vector<KeptPositions>& kept() const;
  // Bytes of KV pages held (all ranks), and what a full cache of the same
  // positions would hold (KvCache::full_bytes).
  size_t kv_bytes() const;
  size_t kv_full_bytes() const;
  // Engine's own accounting at its peak: the sequence's KV pages and
  // transients, the context's workspace and the backend's scratch (all ranks).
  size_t peak_bytes() const;
  const Model& model() const { return m_; }
  // With tensor parallelism: rank 0's.
  Context& context() const;
  Sequence& sequence() const;
  int tp() const { return group_ ? group_->size() : 1; }

 private:
  Session(const Model& m, std::shared_ptr<Context> ctx, const SessionOptions& opt, std::unique_ptr<Sequence> seq);
  Session(const Model& m, std::shared_ptr<TpGroup> group, std::unique_ptr<TpSequence> seq);
  const Model& m_;
  std::shared_ptr<Context> ctx_;
  std::unique_ptr<Sequence> seq_;
  std::shared_ptr<TpGroup> group_;  // tp > 1 instead of ctx_ and seq_
  std::unique_ptr<TpSequence> tseq_;
  mutable std::vector<KeptPositions> kept_all_;
};

// The context and sequence options of a session's settings.
ContextOptions context_options(const SessionOptions& o);
SequenceOptions sequence_options(const SessionOptions& o);

}  // namespace ckv
