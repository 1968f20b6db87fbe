// The forward pass, written once for every backend (DESIGN.md 4): a batched
// decode step over many sequences, and the layer-major read of one
// sequence's prompt with the press's selection as a named step.
#pragma once
#include <functional>
#include <span>
#include <vector>

#include "engine/context.h"

namespace ckv {

class Sequence;

struct DecodeStep {
  Sequence* seq = nullptr;
  std::span<const int> tokens;  // 1..8 new tokens of this sequence
  float* logits = nullptr;      // host: [vocab] of the last token, or [n][vocab] with all_logits
  bool all_logits = false;
  // Or only the last token's `top` largest logits (1..Backend::kMaxTopLogits;
  // what a sampler reads, Sampler::candidates): values into logits[0..top),
  // ids into top_ids, in sampling order; a few bytes back per sequence
  // instead of the vocabulary.
  int top = 0;
  int32_t* top_ids = nullptr;
};

// One decode step: every sequence's new tokens through every layer together
// (one weight read for the whole batch); each cache grows by its tokens, all
// or nothing. Allocates nothing.
void decode_step(Context& ctx, std::span<DecodeStep> batch);

// The press's step of a compressing read (DESIGN.md 2.1, 4): the positions
// `press` keeps of layer `layer` (T prompt rows in dense; the window's
// queries qw, [q_rows][n_heads][hd]) gathered into kv's pages and recorded in
// kept[layer]; the last `suffix` prompt positions follow the window and are
// kept (--kv-window-at user, LayerView::suffix). A step one tensor-parallel
// rank cannot take fails on all.
void compress_layer(Context& ctx, KvCache& kv, Press& press, int layer, int T, const DenseKV& dense, const float* qw,
                    int q_rows, int suffix, std::vector<KeptPositions>& kept,
                    const std::function<void(const LayerView&)>& on_layer);

// Layer `layer` of a sequence's read in progress (Sequence::read_layers).
void read_layer(Context& ctx, Sequence& s, int layer);
// The read's logits, after its last layer (Sequence::finish_read).
void read_logits(Context& ctx, Sequence& s, float* logits_last,
                 const std::function<void(int64_t pos, const float* logits)>& each);

}  // namespace ckv
