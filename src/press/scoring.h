// Shared machinery of the presses (internal to src/press): the observation-
// window scorer of CompressKV / SnapKV (DESIGN.md 2.1 steps 3-7), pooling,
// the generic top-k + window selection (2.1 step 8), settings checks, and the
// factory of each method (one per file, listed in registry.cpp).
//
// A press is validated settings + a scoring function (STYLE.md habit 4); all
// of them rank with top_plus_window() below, so "kept = exactly the top-scored
// positions plus the window" holds for every method by construction.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "press/press.h"

namespace ckv {
struct Profile;
}

namespace ckv::press {

// Per-query-head window attention mass, before pooling (2.1 steps 3-5):
// for query head h, the softmax (fp32, max-subtracted, causal inside the
// window) of the last `window` query rows against all T keys, summed over
// the rows, for the n = T - window positions before the window.
//   out: [T - window]
// Cost O(T * window * head_dim). Requires window < T.
void window_attention_mass(const LayerView& lv, int h, int window, float* out);

// Pooling along positions (2.1 step 6) with the semantics of PyTorch's
// avg_pool1d(kernel, stride 1, padding kernel/2, count_include_pad) -- the
// divisor is always `kernel` -- or max_pool1d (padding acts as -inf).
//   in, out: [n], must not alias; kernel odd and >= 1.
void pool1d(const float* in, float* out, int n, int kernel, Pool pool);

// Pooled window score of each head in `heads`: [heads.size()][T - window].
std::vector<std::vector<float>> head_scores(const LayerView& lv, const std::vector<int>& heads, int window,
                                            int kernel, Pool pool);

// 2.1 step 7: the mean over `heads` of their pooled scores: [T - window].
std::vector<float> mean_window_score(const LayerView& lv, const std::vector<int>& heads, int window, int kernel,
                                     Pool pool);

// SnapKV grouping (DESIGN.md 3): every query head scores, and KV head g gets
// the mean over its r = n_heads / n_kv_heads query heads r*g .. r*g+r-1.
//   returns [n_kv_heads][T - window]
std::vector<std::vector<float>> kv_head_scores(const LayerView& lv, int window, int kernel, Pool pool);

// The `k` positions of [0, n) with the largest score, ascending. Ties: the
// lower position first. k is clamped to [0, n].
std::vector<int32_t> top_k_positions(const float* score, int n, int k);

// 2.1 step 8: the budget - window top-scored positions of [0, T - window)
// plus the window T-window .. T-1, ascending. Everything if T <= budget. The
// window is always kept (a budget below the window keeps just the window).
//   score: [T - window]
std::vector<int32_t> top_plus_window(const float* score, int T, int window, int budget);

// [0, T).
std::vector<int32_t> all_positions(int T);

// ---- settings checks shared by the methods (messages name the --kv-* flag)
void check_budget_window(const PressParams& p);  // window >= 1, budget > window
void check_kernel(const PressParams& p);         // kernel odd, >= 1
void check_shape(const PressShape& s);           // positive sizes, n_heads % n_kv_heads == 0

// ---- one factory per method file
std::unique_ptr<Press> make_full(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Press> make_streamingllm(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Press> make_snapkv(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Press> make_pyramidkv(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Press> make_adakv(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Press> make_compresskv(const PressParams& p, const PressShape& s, const Profile* prof);

}  // namespace ckv::press
