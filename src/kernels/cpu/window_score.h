// The presses' observation-window scoring on the CPU (Backend::window_scores,
// DESIGN.md 2.1 steps 3-7) and the top-k of their scores (step 8).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace ckv {
enum class Pool;
}

namespace ckv::cpu {

// Per-query-head window attention mass, before pooling (2.1 steps 3-5): for
// query head h, the softmax (fp32 exponentials, max-subtracted, causal inside
// the window; the denominator summed in double so that long prompts do not
// flip selections on rounding) of the w window rows qw ([w][H][hd]) against
// the T keys k ([T][G][hd]), summed over the rows, for the n = T - w
// positions before the window. logits: scratch of w * T floats. out: [n].
void window_mass(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd, int h, float* logits,
                 float* out);

// Pooling along positions (2.1 step 6) with the semantics of PyTorch's
// avg_pool1d(kernel, stride 1, padding kernel/2, count_include_pad) -- the
// divisor is always `kernel` -- or max_pool1d (padding acts as -inf).
//   in, out: [n], must not alias; kernel odd and >= 1.
void pool1d(const float* in, float* out, int n, int kernel, Pool pool);

// The window scores of each group of heads: mean of the pooled masses.
// scratch: per thread (w + 2) * T floats. out: [groups][T - w].
void window_scores(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd,
                   std::span<const std::vector<int>> groups, int kernel, Pool pool, float* scratch, float* out);

// The k positions of [0, n) with the largest score, ascending. Ties: the
// lower position first. k is clamped to [0, n].
std::vector<int32_t> top_k_positions(const float* score, int n, int k);

}  // namespace ckv::cpu
