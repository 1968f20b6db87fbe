#include "eval/grid.h"

#include <algorithm>
#include <cstring>

#include "press/press.h"
#include "util/error.h"

namespace ckv::eval {

std::vector<Cell> grid_cells(const std::vector<std::string>& methods, const std::vector<int>& budgets) {
  if (methods.empty()) throw Error("--methods is empty");
  const std::vector<std::string> known = press_names();
  auto list = [](const std::vector<std::string>& v) {
    std::string k;
    for (auto& n : v) k += (k.empty() ? "" : ", ") + n;
    return k;
  };
  std::vector<Cell> cells{{"full", 0}};
  bool any_compressing = false;
  for (size_t i = 0; i < methods.size(); ++i) {
    const std::string& m = methods[i];
    if (auto [sel, alloc] = split_pair(m); !sel.empty()) {
      const auto ss = selection_names(), as = allocation_names();
      if (std::find(ss.begin(), ss.end(), sel) == ss.end())
        throw Error("--methods: unknown selection '" + sel + "' in '" + m + "' (known: " + list(ss) + ")");
      if (std::find(as.begin(), as.end(), alloc) == as.end())
        throw Error("--methods: unknown allocation '" + alloc + "' in '" + m + "' (known: " + list(as) + ")");
    } else if (std::find(known.begin(), known.end(), m) == known.end()) {
      throw Error("--methods: unknown method '" + m + "' (known: " + list(known) +
                  "; or SELECTION+ALLOCATION, e.g. srh+uniform)");
    }
    if (std::find(methods.begin(), methods.begin() + static_cast<long>(i), m) != methods.begin() + static_cast<long>(i))
      throw Error("--methods: '" + m + "' is given twice");
    if (m != "full") any_compressing = true;
  }
  if (any_compressing && budgets.empty()) throw Error("--budgets is empty");
  for (size_t i = 0; i < budgets.size(); ++i) {
    if (budgets[i] < 1) throw Error("--budgets: " + std::to_string(budgets[i]) + " is not a positive budget");
    if (std::count(budgets.begin(), budgets.end(), budgets[i]) > 1)
      throw Error("--budgets: " + std::to_string(budgets[i]) + " is given twice");
  }
  for (const auto& m : methods)
    if (m != "full")
      for (int b : budgets) cells.push_back({m, b});
  return cells;
}

std::pair<std::string, std::string> split_pair(const std::string& method) {
  const size_t plus = method.find('+');
  if (plus == std::string::npos) return {};
  return {method.substr(0, plus), method.substr(plus + 1)};
}

SessionOptions cell_options(const SessionOptions& base, const Cell& c) {
  SessionOptions o = base;
  auto [sel, alloc] = split_pair(c.method);
  o.method = sel.empty() ? c.method : "full";
  o.select = sel;
  o.alloc = alloc;
  o.press.budget = c.full() ? 0 : c.budget;
  return o;
}

void check_cells(const Model& m, const std::vector<Cell>& cells, const SessionOptions& base) {
  const ModelConfig& c = m.config;
  for (const Cell& cell : cells) {
    SessionOptions o = cell_options(base, cell);
    try {
      const PressShape shape{c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim};
      if (o.select.empty()) make_press(o.method, o.press, shape, o.profile);
      else make_press_pair(o.select, o.alloc, o.press, shape, o.profile);
    } catch (const Error& e) {
      throw Error(cell.method + " at budget " + std::to_string(cell.budget) + ": " + e.what());
    }
  }
}

std::unique_ptr<Session> cell_session(const Model& m, const Session& full, const std::vector<int>& prompt,
                                      const float* full_logits, const SessionOptions& opt, std::vector<float>& logits) {
  (void)m;
  (void)prompt;
  std::memcpy(logits.data(), full_logits, sizeof(float) * logits.size());
  return full.compress_copy(opt);
}

void for_each_cell(const Model& m, const std::vector<int>& prompt, const std::vector<Cell>& cells,
                   const SessionOptions& base, const CellFn& fn) {
  const int V = m.config.vocab_size;
  SessionOptions fo = base;
  fo.method = "full";
  fo.press.budget = 0;
  fo.keep_queries = base.press.window;  // what compress_copy's window scoring reads
  Session full(m, fo);
  std::vector<float> full_logits(V), logits(V);
  full.prefill(prompt, full_logits.data());
  for (size_t i = 0; i < cells.size(); ++i) {
    if (cells[i].full()) continue;
    auto s = cell_session(m, full, prompt, full_logits.data(), cell_options(base, cells[i]), logits);
    fn(i, *s, logits);
  }
  for (size_t i = 0; i < cells.size(); ++i)
    if (cells[i].full()) {
      std::memcpy(logits.data(), full_logits.data(), sizeof(float) * V);
      fn(i, full, logits);
      break;
    }
}

}  // namespace ckv::eval
