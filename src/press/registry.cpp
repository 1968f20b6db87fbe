// The press registry (DESIGN.md 3, 4): selections and allocations by name,
// and the named methods as presets of a (selection, allocation) pair. Adding
// a selection or an allocation is one file (a factory in press/scoring.h)
// and one line here.
#include <climits>
#include <string>

#include "press/scoring.h"
#include "util/error.h"

namespace ckv {

namespace {

using namespace press;

using SelectFactory = std::unique_ptr<Selection> (*)(const PressParams&, const PressShape&, const Profile*);
using AllocFactory = std::unique_ptr<Allocation> (*)(const PressParams&, const PressShape&, const Profile*);

std::unique_ptr<Allocation> alloc_ada(const PressParams& p, const PressShape& s, const Profile* prof) {
  return make_alloc_ada(p, make_alloc_uniform(p, s, prof));
}
std::unique_ptr<Allocation> alloc_ada_error_aware(const PressParams& p, const PressShape& s, const Profile* prof) {
  return make_alloc_ada(p, make_alloc_error_aware(p, s, prof));
}

constexpr std::pair<const char*, SelectFactory> kSelections[] = {
    {"window", make_select_window},  // SnapKV's per-KV-head window scores
    {"srh", make_select_srh},        // CompressKV's semantic retrieval heads, one shared ranking
    {"sinks", make_select_sinks},    // StreamingLLM's sinks + recent
};

constexpr std::pair<const char*, AllocFactory> kAllocations[] = {
    {"uniform", make_alloc_uniform},
    {"pyramid", make_alloc_pyramid},
    {"error-aware", make_alloc_error_aware},
    {"ada", alloc_ada},
    {"ada-error-aware", alloc_ada_error_aware},
};

struct Preset {
  const char* name;
  const char* select;  // null: full (keep everything)
  const char* alloc;
};

constexpr Preset kPresets[] = {
    {"full", nullptr, nullptr},
    {"streamingllm", "sinks", "uniform"},
    {"snapkv", "window", "uniform"},
    {"pyramidkv", "window", "pyramid"},
    {"adakv", "window", "ada"},
    {"compresskv", "srh", "error-aware"},
    {"adacompresskv", "srh", "ada-error-aware"},
};

// FullKV: no eviction -- the baseline every method is measured against.
// Keeping every token must change nothing, bit for bit.
class FullPress : public Press {
 public:
  std::string name() const override { return "full"; }
  void begin(int, int T) override { T_ = T; }
  KeptPositions select(const LayerView& lv) override { return KeptPositions(lv.n_kv_heads, all_positions(lv.T)); }
  int layer_budget(int) const override { return T_; }

 private:
  int T_ = INT_MAX;  // the prompt length once begin() ran: all of it is kept
};

class ComposedPress : public Press {
 public:
  ComposedPress(std::string name, const PressParams& p, std::unique_ptr<Selection> s, std::unique_ptr<Allocation> a)
      : name_(std::move(name)), p_(p), select_(std::move(s)), alloc_(std::move(a)) {}
  std::string name() const override { return name_; }
  void begin(int n_layers, int T) override { alloc_->begin(n_layers, T); }
  KeptPositions select(const LayerView& lv) override {
    const int B = alloc_->layer_budget(lv.layer);
    if (lv.T <= B) return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
    if (lv.suffix > 0) return select_before_suffix(lv, B);
    return select_within(lv, B);
  }
  int layer_budget(int layer) const override { return alloc_->layer_budget(layer); }

 private:
  KeptPositions select_within(const LayerView& lv, int B) {
    LayerScores scores(lv, p_);
    std::vector<int> budgets = alloc_->head_budgets(scores, B);
    return select_->select(scores, budgets);
  }

  // --kv-window-at user: the selection runs on the prompt up to the end of
  // the final user message (its window is that message's last tokens) with
  // the budget less the suffix, and the suffix is appended to every head. A
  // layer keeps B positions in all, as at the end -- or just the window and
  // the suffix when they alone exceed B; everything when the user part is no
  // longer than the window.
  KeptPositions select_before_suffix(const LayerView& lv, int B) {
    const int s = lv.suffix, U = lv.T - s;
    if (s > lv.T || lv.q_rows < s + std::min(p_.window, U))
      throw Error("press: a suffix of " + std::to_string(s) + " positions after the window does not fit a prompt of " +
                  std::to_string(lv.T) + " with " + std::to_string(lv.q_rows) + " query rows");
    if (U <= p_.window) return KeptPositions(lv.n_kv_heads, all_positions(lv.T));
    LayerView up = lv;
    up.T = U;
    up.q_rows = lv.q_rows - s;  // q's rows of positions T - q_rows .. U - 1 (same start)
    up.suffix = 0;
    KeptPositions kept = select_within(up, std::max(B - s, 0));
    for (auto& head : kept)
      for (int j = U; j < lv.T; ++j) head.push_back(j);
    return kept;
  }

  std::string name_;
  PressParams p_;
  std::unique_ptr<Selection> select_;
  std::unique_ptr<Allocation> alloc_;
};

template <class Table>
auto find(const Table& t, const std::string& name, const char* flag) {
  for (const auto& e : t)
    if (name == e.first) return e.second;
  std::string known;
  for (const auto& e : t) known += (known.empty() ? "" : ", ") + std::string(e.first);
  throw Error("unknown " + std::string(flag) + " '" + name + "' (known: " + known + ")");
}

std::unique_ptr<Press> compose(const std::string& name, const std::string& select, const std::string& alloc,
                               const PressParams& p, const PressShape& shape, const Profile* profile) {
  SelectFactory sf = find(kSelections, select, "--kv-select");
  AllocFactory af = find(kAllocations, alloc, "--kv-alloc");
  check_shape(shape);
  check_budget_window(p);
  auto s = sf(p, shape, profile);
  auto a = af(p, shape, profile);
  return std::make_unique<ComposedPress>(name, p, std::move(s), std::move(a));
}

}  // namespace

std::unique_ptr<Press> make_press(const std::string& method, const PressParams& p, const PressShape& shape,
                                  const Profile* profile) {
  for (const Preset& e : kPresets) {
    if (method != e.name) continue;
    if (!e.select) {
      check_shape(shape);
      return std::make_unique<FullPress>();
    }
    return compose(e.name, e.select, e.alloc, p, shape, profile);
  }
  std::string known;
  for (const Preset& e : kPresets) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throw Error("unknown --kv-method '" + method + "' (known: " + known + ")");
}

std::unique_ptr<Press> make_press_pair(const std::string& select, const std::string& alloc, const PressParams& p,
                                       const PressShape& shape, const Profile* profile) {
  for (const Preset& e : kPresets)  // a pair that is a preset carries its name
    if (e.select && select == e.select && alloc == e.alloc) return compose(e.name, select, alloc, p, shape, profile);
  return compose(select + "+" + alloc, select, alloc, p, shape, profile);
}

std::vector<std::string> press_names() {
  std::vector<std::string> v;
  for (const Preset& e : kPresets) v.emplace_back(e.name);
  return v;
}
std::vector<std::string> selection_names() {
  std::vector<std::string> v;
  for (const auto& e : kSelections) v.emplace_back(e.first);
  return v;
}
std::vector<std::string> allocation_names() {
  std::vector<std::string> v;
  for (const auto& e : kAllocations) v.emplace_back(e.first);
  return v;
}

std::pair<std::string, std::string> preset_pair(const std::string& method) {
  for (const Preset& e : kPresets)
    if (method == e.name && e.select) return {e.select, e.alloc};
  throw Error("--kv-method '" + method + "' is not a (selection, allocation) preset");
}

}  // namespace ckv
