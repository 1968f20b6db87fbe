// Tensor parallelism over N devices of one host, Megatron-style (model/
// shard.h says what each rank holds): one thread per rank, each with its own
// backend, context, KV pages and sequences, all running the one forward pass
// (engine/forward.cpp) in lockstep and meeting in its collectives -- the sums
// after W_o and W_down, and the presses' shared scores, so that every rank
// keeps the same positions as one device would. CPU backends talk through
// threads of this process, CUDA backends through NCCL (kernels/cuda/
// nccl_comm.h). Rank 0's logits are the group's; the other ranks skip the
// output head.
//
// The server drives a group as it drives a Context: TpSequence mirrors
// Sequence (begin_read / read_layers / finish_read between decode steps) and
// tp decode_step mirrors decode_step.
#pragma once
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "engine/context.h"
#include "engine/sequence.h"

namespace ckv {

// Rank r's backend (CPU: one of its own; CUDA: device r).
using RankBackendFactory = std::function<std::unique_ptr<Backend>(int rank)>;

class TpGroup {
 public:
  // The ranks' parts of `full` (which must outlive the group), their
  // backends and contexts (each with opt, sized for its rank). Throws an
  // Error naming --tp when size does not divide the model's KV heads.
  TpGroup(const Model& full, int size, const RankBackendFactory& make_backend, const ContextOptions& opt = {});
  ~TpGroup();
  TpGroup(const TpGroup&) = delete;
  TpGroup& operator=(const TpGroup&) = delete;

  int size() const { return size_; }
  const Model& model() const { return full_; }  // the whole model
  const Model& shard(int rank) const { return *shards_[rank]; }
  Context& context(int rank) const { return *ctx_[rank]; }
  const ContextOptions& options() const { return ctx_[0]->options(); }
  int n_ctx() const { return ctx_[0]->n_ctx(); }
  // Every rank's bytes besides KV pages (workspace, scratch, weight copies).
  size_t fixed_bytes() const;
  void sync();  // every rank's queued work done
  // f(rank) on every rank's own thread at once; returns when all are done.
  // A rank's failure is rethrown (its own error before the others' reports
  // of it); ranks left waiting in a collective are released.
  void run(const std::function<void(int rank)>& f);

 private:
  struct Workers;
  const Model& full_;
  int size_;
  bool nccl_ = false, broken_ = false;
  std::unique_ptr<Workers> workers_;
  std::vector<std::unique_ptr<Model>> shards_;
  std::vector<std::unique_ptr<Communicator>> comms_;
  std::vector<std::unique_ptr<Context>> ctx_;
};

// One sequence over every rank of a group: Sequence's API. Observers of
// SequenceOptions (on_layer, on_progress, probe, on_decode_layer) run on
// rank 0 only and see its heads.
class TpSequence {
 public:
  TpSequence(TpGroup& g, const SequenceOptions& opt);
  ~TpSequence();
  TpSequence(const TpSequence&) = delete;
  TpSequence& operator=(const TpSequence&) = delete;

  void begin_read(std::span<const int> tokens);
  bool read_layers(int n);
  void finish_read(float* logits_last, const std::function<void(int64_t pos, const float* logits)>& each = {});
  void read(std::span<const int> tokens, float* logits_last,
            const std::function<void(int64_t pos, const float* logits)>& each = {});
  bool reading() const { return seqs_[0]->reading(); }
  // Sequence::compress_copy on every rank.
  static std::unique_ptr<TpSequence> compress_copy(const TpSequence& full, const SequenceOptions& opt);

  int64_t n_past() const { return seqs_[0]->n_past(); }
  const Press& press() const { return seqs_[0]->press(); }
  Sequence& rank(int r) const { return *seqs_[r]; }
  TpGroup& group() const { return g_; }
  // Kept prompt positions per layer of every KV head of the model
  // ([L][G][n], the ranks' heads in order).
  std::vector<KeptPositions> kept() const;
  // Sums over the ranks: KV page bytes, what a full cache would hold, peak.
  size_t kv_bytes() const;
  size_t kv_full_bytes() const;
  size_t peak_bytes() const;

 private:
  TpSequence(TpGroup& g) : g_(g), seqs_(g.size()) {}
  TpGroup& g_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

struct TpDecodeStep {
  TpSequence* seq = nullptr;
  std::span<const int> tokens;  // 1..8 new tokens
  float* logits = nullptr;      // host: [vocab] of the last token, or [n][vocab] with all_logits
  bool all_logits = false;
  int top = 0;                  // or only the top logits, as DecodeStep::top
  int32_t* top_ids = nullptr;
};

// decode_step (engine/forward.h) on every rank: one step for the batch.
void decode_step(TpGroup& g, std::span<TpDecodeStep> batch);

}  // namespace ckv
