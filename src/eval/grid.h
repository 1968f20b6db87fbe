// The method x budget grid of an evaluation: every cell reads the same prompt,
// and the prompt is read once per probe with the full cache; each cell's
// selection is applied to that one prefill (issue 8 item 3, as the reference
// evaluation does), so a grid costs little more than one prefill per probe
// plus the decodes.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/session.h"
#include "model/model.h"

namespace ckv::eval {

// One cell; FullKV is {"full", 0} (no budget). method is a preset name
// (press_names()) or "SELECTION+ALLOCATION" (e.g. "srh+uniform", the paper's
// ablation steps).
struct Cell {
  std::string method;
  int budget = 0;
  bool full() const { return method == "full"; }
};

// FullKV first (every table's reference), then each other method at each
// budget, in the order given. Throws ckv::Error naming --methods or --budgets
// for an empty list, a repeated entry, an unknown method or a budget < 1.
std::vector<Cell> grid_cells(const std::vector<std::string>& methods, const std::vector<int>& budgets);

// "srh+uniform" -> {"srh", "uniform"}; a preset name -> {"", ""}.
std::pair<std::string, std::string> split_pair(const std::string& method);

// base with the cell's method (or selection and allocation) and budget.
SessionOptions cell_options(const SessionOptions& base, const Cell& c);

// Builds each cell's press once so that bad settings (budget <= window,
// compresskv without a profile, ...) fail before any work.
void check_cells(const Model& m, const std::vector<Cell>& cells, const SessionOptions& base);

// A session holding `prompt` as `opt`'s press keeps it, derived from `full`
// (which read exactly `prompt` with the full cache), and the logits of the
// prompt's last position (full's: compressing after the read changes no
// prompt logit). Session::compress_copy: the cell's selection applied to the
// one full prefill, exactly as if its own prefill had compressed it.
std::unique_ptr<Session> cell_session(const Model& m, const Session& full, const std::vector<int>& prompt,
                                      const float* full_logits, const SessionOptions& opt, std::vector<float>& logits);

// Runs fn on every cell for one prompt: the session holds the prompt as the
// cell keeps it, logits ([vocab]) are its last position's. The full cell
// comes last (the other cells derive from its prefill before it decodes).
using CellFn = std::function<void(size_t cell_index, Session& s, std::vector<float>& logits)>;
void for_each_cell(const Model& m, const std::vector<int>& prompt, const std::vector<Cell>& cells,
                   const SessionOptions& base, const CellFn& fn);

}  // namespace ckv::eval
