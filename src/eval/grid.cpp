#include "eval/grid.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "engine/forward.h"
#include "engine/sampler.h"
#include "press/press.h"
#include "tokenizer/utf8.h"
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

namespace {

// Address space for one grid's KV pool: the full read plus a group of cells,
// each with room for a full cache (pages are touched only as they are used,
// but one allocation much larger than the machine's memory is refused).
double g_pool_bytes = 4.0 * (1 << 30);

// One prompt's grid on a GridContext: the full read, and the cells' copies
// of it made and decoded a group at a time (each cell a sequence of one
// decode batch).
struct Grid {
  Context& ctx;
  int group = 1;  // cells per group
  std::unique_ptr<Sequence> full;
  std::vector<float> full_logits;

  Grid(GridContext& gc, const std::vector<int>& prompt, int64_t extra, const SessionOptions& base)
      : ctx(gc.context()), group(gc.group()) {
    SessionOptions fo = cell_options(base, {"full", 0});
    fo.keep_queries = window_rows(sequence_options(fo));  // what the copies' window scoring reads
    if (static_cast<int64_t>(prompt.size()) + extra > ctx.n_ctx() || fo.keep_queries > ctx.options().max_window)
      throw Error("grid: a prompt of " + std::to_string(prompt.size()) + " tokens (+" + std::to_string(extra) +
                  ", " + std::to_string(fo.keep_queries) + " window rows) is larger than its grid context");
    full = std::make_unique<Sequence>(ctx, sequence_options(fo));
    full_logits.resize(ctx.model().config.vocab_size);
    full->read(prompt, full_logits.data());
  }
  ~Grid() { full.reset(); }

  // Runs fn(first, seqs, logits) on groups of the cells: seqs[i] holds cell
  // first + i's prompt as its press keeps it (the full read itself for
  // FullKV, whose group comes last so that every copy is made before it
  // decodes), logits[i] its next-token logits. A group's copies are freed
  // after it.
  template <class F>
  void for_groups(const std::vector<Cell>& cells, const SessionOptions& base, F fn) {
    std::vector<size_t> order;
    for (size_t i = 0; i < cells.size(); ++i)
      if (!cells[i].full()) order.push_back(i);
    for (size_t i = 0; i < cells.size(); ++i)
      if (cells[i].full()) order.push_back(i);
    for (size_t g0 = 0; g0 < order.size(); g0 += group) {
      const size_t g1 = std::min(order.size(), g0 + group);
      std::vector<std::unique_ptr<Sequence>> copies;
      std::vector<Sequence*> seqs;
      std::vector<size_t> idx;
      // The prompt's logits are the full read's: compressing after a layer's
      // attention changes no prompt position.
      std::vector<std::vector<float>> logits;
      for (size_t k = g0; k < g1; ++k) {
        const Cell& cell = cells[order[k]];
        if (cell.full()) {
          seqs.push_back(full.get());
        } else {
          copies.push_back(Sequence::compress_copy(*full, sequence_options(cell_options(base, cell))));
          seqs.push_back(copies.back().get());
        }
        idx.push_back(order[k]);
        logits.push_back(full_logits);
      }
      fn(idx, seqs, logits);
    }
  }
};

}  // namespace

void set_grid_pool_bytes(double bytes) { g_pool_bytes = bytes; }

GridContext::GridContext(const Model& m, const SessionOptions& base, int64_t max_tokens, int max_suffix,
                         const std::vector<Cell>& cells) {
  const ModelConfig& c = m.config;
  const size_t n_cells = cells.size();
  SessionOptions fo = cell_options(base, {"full", 0});
  fo.user_suffix = max_suffix;
  fo.keep_queries = window_rows(sequence_options(fo));
  ContextOptions co = context_options(fo);
  for (const Cell& cell : cells) max_tokens = std::max<int64_t>(max_tokens, cell.budget);
  co.n_ctx = static_cast<int>(std::clamp<int64_t>(max_tokens, 1, c.context));
  const double cache_bytes = 2.0 * (co.n_ctx + 16) * c.n_layers * c.n_kv_heads * c.head_dim *
                             static_cast<double>(kv_type_bytes(co.kv_type));
  group_ = static_cast<int>(std::clamp<double>(g_pool_bytes / cache_bytes - 1, 1, static_cast<double>(n_cells)));
  co.max_seqs = group_ + 1;
  co.kv_pages = 0;  // room for max_seqs full caches
  ctx_ = std::make_unique<Context>(m, base.make_backend ? base.make_backend() : make_cpu_backend(base.q8_matmul), co);
}

GridContext::~GridContext() = default;

std::vector<Answer> grid_answers(const Model& m, const Tokenizer& tok, const std::vector<int>& prompt,
                                 const std::vector<Cell>& cells, const SessionOptions& base,
                                 const GenerateOptions& go) {
  GridContext gc(m, base, static_cast<int64_t>(prompt.size()) + go.max_new + 1, base.user_suffix, cells);
  return grid_answers(gc, tok, prompt, cells, base, go);
}

std::vector<Answer> grid_answers(GridContext& gc, const Tokenizer& tok, const std::vector<int>& prompt,
                                 const std::vector<Cell>& cells, const SessionOptions& base,
                                 const GenerateOptions& go) {
  Grid g(gc, prompt, go.max_new + 1, base);
  const int V = gc.context().model().config.vocab_size;
  std::vector<Answer> out(cells.size());
  g.for_groups(cells, base, [&](const std::vector<size_t>& idx, const std::vector<Sequence*>& seqs,
                                std::vector<std::vector<float>>& logits) {
    const size_t n = idx.size();
    std::vector<int> next(n, 0), prev(n, -1);
    std::vector<bool> going(n, true);
    std::vector<DecodeStep> batch;
    for (int step = 0; step < go.max_new; ++step) {
      batch.clear();
      for (size_t i = 0; i < n; ++i) {
        if (!going[i]) continue;
        Answer& a = out[idx[i]];
        const int id = Sampler::argmax(logits[i].data(), V);
        a.ids.push_back(id);
        if (tok.is_eog(id)) {
          going[i] = false;
          continue;
        }
        a.text += tok.decode_piece(prev[i], id);
        prev[i] = id;
        if ((go.stop_at_newline && answer_ends(a.text)) || step + 1 == go.max_new) {
          going[i] = false;
          continue;
        }
        next[i] = id;
        batch.push_back({seqs[i], std::span<const int>(&next[i], 1), logits[i].data(), false});
      }
      if (batch.empty()) break;
      decode_step(g.ctx, batch);
    }
  });
  for (auto& a : out) a.text = utf8::replace_invalid(a.text);  // an answer may stop inside a character
  return out;
}

void grid_teacher_force(const Model& m, const std::vector<int>& prompt, const std::vector<int>& forced,
                        const std::vector<Cell>& cells, const SessionOptions& base,
                        const std::function<void(size_t, int, const float*)>& fn) {
  // FullKV first, on a read of its own: its distributions are the others' reference.
  std::vector<Cell> others;
  std::vector<size_t> other_idx;
  for (size_t i = 0; i < cells.size(); ++i) {
    if (!cells[i].full()) {
      others.push_back(cells[i]);
      other_idx.push_back(i);
      continue;
    }
    SessionOptions fo = cell_options(base, cells[i]);
    Session s(m, fo);
    std::vector<float> logits(m.config.vocab_size);
    s.prefill(prompt, logits.data());
    for (size_t step = 0; step < forced.size(); ++step) {
      fn(i, static_cast<int>(step), logits.data());
      if (step + 1 < forced.size()) s.decode(forced[step], logits.data());
    }
  }
  if (others.empty()) return;
  GridContext gc(m, base, static_cast<int64_t>(prompt.size() + forced.size()) + 1, base.user_suffix, others);
  Grid g(gc, prompt, static_cast<int64_t>(forced.size()) + 1, base);
  g.for_groups(others, base, [&](const std::vector<size_t>& idx, const std::vector<Sequence*>& seqs,
                                 std::vector<std::vector<float>>& logits) {
    const size_t n = idx.size();
    std::vector<DecodeStep> batch(n);
    for (size_t step = 0; step < forced.size(); ++step) {
      for (size_t i = 0; i < n; ++i) fn(other_idx[idx[i]], static_cast<int>(step), logits[i].data());
      if (step + 1 == forced.size()) break;
      for (size_t i = 0; i < n; ++i)
        batch[i] = {seqs[i], std::span<const int>(&forced[step], 1), logits[i].data(), false};
      decode_step(g.ctx, batch);
    }
  });
}

}  // namespace ckv::eval
