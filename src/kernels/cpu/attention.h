// Causal GQA attention on the CPU: batched decode over paged caches and
// prefill over dense K/V (the Backend's attention_decode / attention_prefill).
// Scratch is sized once per context (reserve_*), so a decode step allocates
// nothing and no allocation can throw inside a parallel region.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"

namespace ckv::cpu {

constexpr int kChunk = 256;        // keys per decode work item
constexpr int kMaxRows = 8 * 16;   // query rows per KV head in a decode item (8 tokens x group of 16)
constexpr int kPrefillBlock = 64;  // query rows per prefill work item

struct DecodeScratch {
  struct Item {
    int seq, g, j0, nk;  // sequence, KV head, first key, keys
  };
  std::vector<Item> items;
  std::vector<int> first;     // per (sequence, KV head): its first item
  std::vector<float> part;    // per item and row: max, sum, span, argmax, output
  std::vector<float> scores;  // per thread: kMaxRows x kChunk
  // For batches of up to max_seqs sequences of up to max_ctx rows, r query
  // heads per KV head and at most max_tokens new tokens per sequence.
  void reserve(int max_seqs, int64_t max_ctx, int n_kv, int r, int max_tokens, int hd, int threads);
  size_t bytes() const;
};

struct PrefillScratch {
  std::vector<float> scores;  // per thread: kPrefillBlock x row_floats / kPrefillBlock
  size_t row_floats = 0;      // floats of one thread's block of score rows
  void reserve(int64_t max_ctx, int threads);
  size_t bytes() const { return scores.size() * sizeof(float); }
};

// q, out: [batch rows][n_heads][hd]; each item's cache at `layer` already
// holds its new tokens (token i of n sees len - n + i + 1 rows).
void attention_decode(const float* q, std::span<const DecodeItem> items, int layer, int n_heads, int n_kv, int hd,
                      DecodeScratch& ws, float* out, const AttnProbeOut* probe);

// New-token query rows [i0, i0 + nq) over dense K/V (backend.h DenseKV).
void attention_prefill(const float* q, int64_t i0, int64_t nq, const DenseKV& kv, int n_heads, int n_kv, int hd,
                       PrefillScratch& ws, float* out);

}  // namespace ckv::cpu
