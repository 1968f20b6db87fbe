// Tensor parallelism, Megatron-style (Shoeybi et al., arXiv 1909.08053): a
// model split over N devices by attention heads and FFN columns. Rank r of N
// holds KV heads [r G/N, (r+1) G/N), the query heads that read them (GQA
// groups never straddle ranks), and a contiguous share of the FFN's hidden
// columns. Its W_q, W_k, W_v (and Qwen2's biases), W_gate and W_up are row
// slices; W_o and W_down column slices, whose products are partial sums the
// ranks add (engine/forward.cpp); embeddings, norms (Qwen3's q/k norms are
// per head dimension) and the output head are replicated.
#pragma once
#include <cstdint>
#include <memory>

#include "model/model.h"

namespace ckv {

struct ShardPlan {
  int rank = 0, size = 1;
  int head0 = 0, n_heads = 0;        // query heads [head0, head0 + n_heads)
  int kv_head0 = 0, n_kv_heads = 0;  // KV heads
  int ff0 = 0, n_ff = 0;             // FFN hidden columns [ff0, ff0 + n_ff)
};

// Rank `rank` of `size`. size must divide the KV heads (an Error naming --tp
// says so otherwise). The FFN width is split in units of ff_align columns
// (a quantised W_down's block, so its column slices stay whole blocks), the
// first ranks taking one unit more when the units do not divide evenly.
ShardPlan shard_plan(const ModelConfig& c, int rank, int size, int ff_align = 1);

// Rank `rank`'s part of `full` (which must outlive it): row slices are views
// of full's bytes (or of its random-weight shapes), column slices copies of
// just the rank's columns (the blocks themselves when block-aligned, else
// dequantised to F32), so no rank holds the whole matrices.
std::unique_ptr<Model> shard_model(const Model& full, int rank, int size);

// Rows [row0, row0 + n) of a matrix, or elements of a vector: a view.
Tensor slice_rows(const Tensor& t, int64_t row0, int64_t n);
// Columns [col0, col0 + n) of a matrix: a copy owned by `owner`.
Tensor slice_cols(Model& owner, const Tensor& t, int64_t col0, int64_t n);

}  // namespace ckv
