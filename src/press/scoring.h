// Shared machinery of the presses (internal to src/press): a layer's scores
// on the device (computed once, shared by a selection and an allocation),
// the generic top-k + window selection (DESIGN.md 2.1 step 8), the two
// halves of a press -- Selection and Allocation, one file each -- and the
// settings checks. Every selection ranks with top_plus_window(), so "kept =
// exactly the top-scored positions plus the window" holds by construction.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "press/press.h"

namespace ckv::press {

// A layer's window scores (DESIGN.md 2.1 steps 3-7) in lv.scratch, computed
// by the backend on first use: n = T - window positions each.
class LayerScores {
 public:
  LayerScores(const LayerView& lv, const PressParams& p) : lv_(lv), p_(p) {}
  int n() const { return lv_.T - p_.window; }
  // [n_kv_heads][n]: KV head g scored by the mean over the r query heads that
  // read it, r*g .. r*g+r-1 (SnapKV's grouping, GQA-correct; DESIGN.md 3).
  // A tensor-parallel rank: its own KV heads'.
  const float* kv_heads();
  // [all_kv_heads][n]: every KV head's of the whole model (Ada-KV's
  // layer-wide shares). A rank fills its rows, zeros the others' and the
  // ranks sum them: every row is its owner's, bit for bit. One device: kv_heads().
  const float* kv_heads_all();
  // [n]: the mean over `heads` (CompressKV's semantic retrieval heads, 2.1),
  // global query-head indices. Split over ranks: each head's pooled row comes
  // from the rank holding it (the others add zeros) and the rows are summed in
  // the list's order as on one device -- the sum, not the mean, which ranks the
  // positions the same (exactly so for a power-of-two number of heads).
  const float* heads(const std::vector<int>& heads);
  const LayerView& view() const { return lv_; }
  const PressParams& params() const { return p_; }

 private:
  LayerView lv_;
  PressParams p_;
  const float* kv_ = nullptr;
  const float* kv_all_ = nullptr;
  const float* heads_ = nullptr;
};

// Which prompt positions each KV head keeps, given its budget (window
// included; budgets[g] < T).
class Selection {
 public:
  virtual ~Selection() = default;
  virtual KeptPositions select(LayerScores& s, std::span<const int> budgets) = 0;
};

// How many positions each layer, and each KV head within it, keeps.
class Allocation {
 public:
  virtual ~Allocation() = default;
  virtual void begin(int n_layers, int T) {}
  // Tokens per KV head on average (window included).
  virtual int layer_budget(int layer) const = 0;
  // Per-KV-head budgets of a layer whose budget B is below T; they sum to
  // n_kv_heads * B. Default: B each.
  virtual std::vector<int> head_budgets(LayerScores& s, int B);
};

// 2.1 step 8 per row: the budgets[r] - window best positions of row r of
// `score` ([rows][T - window], device) plus the window T-window .. T-1,
// ascending (ties: the lower position).
KeptPositions top_plus_window(const LayerView& lv, const float* score, int rows, std::span<const int> budgets,
                              int window);

// ---- host helpers (tests, and hosts of small lists)
// [0, T).
std::vector<int32_t> all_positions(int T);
// The k best of score[0, n), ascending (ties: lower position first).
std::vector<int32_t> top_k_positions(const float* score, int n, int k);
// top_k_positions of the T - window first, plus the window; everything if T <= budget.
std::vector<int32_t> top_plus_window(const float* score, int T, int window, int budget);
// PyTorch avg_pool1d / max_pool1d semantics (kernel odd; divisor always kernel).
void pool1d(const float* in, float* out, int n, int kernel, Pool pool);
// The backend's scores brought to the host: 2.1 steps 3-7 for `heads`, and
// the SnapKV grouping [n_kv_heads][T - window].
std::vector<float> mean_window_score(const LayerView& lv, const std::vector<int>& heads, int window, int kernel,
                                     Pool pool);
std::vector<std::vector<float>> kv_head_scores(const LayerView& lv, int window, int kernel, Pool pool);

// ---- settings checks shared by the halves (messages name the --kv-* flag)
void check_budget_window(const PressParams& p);  // window >= 1, budget > window
void check_kernel(const PressParams& p);         // kernel odd, >= 1
void check_shape(const PressShape& s);           // positive sizes, n_heads % n_kv_heads == 0

// ---- one factory per file
std::unique_ptr<Selection> make_select_window(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Selection> make_select_srh(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Selection> make_select_sinks(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Allocation> make_alloc_uniform(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Allocation> make_alloc_pyramid(const PressParams& p, const PressShape& s, const Profile* prof);
std::unique_ptr<Allocation> make_alloc_error_aware(const PressParams& p, const PressShape& s, const Profile* prof);
// Ada-KV head shares within each layer, over a layer allocation (uniform for
// adakv, error-aware for adacompresskv).
std::unique_ptr<Allocation> make_alloc_ada(const PressParams& p, std::unique_ptr<Allocation> layers);

}  // namespace ckv::press
