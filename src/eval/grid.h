// The method x budget grid of an evaluation: every cell reads the same prompt,
// and the prompt is read once per probe with the full cache; each cell's
// selection is applied to that one read (Sequence::compress_copy: exactly as
// if its own prefill had compressed it; issue 8 item 3, as the reference
// evaluation does). The cells then decode together: one decode step (one
// weight read) serves every cell still going, so a grid costs about one
// prefill per probe plus one batched decode (in groups of cells when the
// prompt is long, to bound the KV pool).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/session.h"
#include "eval/generate.h"
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

// Address space a grid's KV pool may take (default 4 GiB): cells run in
// groups of as many as fit with room for a full cache each. Tests lower it.
void set_grid_pool_bytes(double bytes);

// One context for the grids of many prompts (the backend prepares the
// weights once -- on a GPU that is an upload per context): room for prompts
// and their decodes of up to max_tokens positions (and for the cells'
// largest budget: an average budget above a short prompt is allowed, and
// error-aware layers may still compress), a user suffix of up to max_suffix
// tokens (--kv-window-at user), and a group of the cells (the pool size
// above).
class GridContext {
 public:
  GridContext(const Model& m, const SessionOptions& base, int64_t max_tokens, int max_suffix,
              const std::vector<Cell>& cells);
  ~GridContext();
  Context& context() { return *ctx_; }
  int group() const { return group_; }

 private:
  std::unique_ptr<Context> ctx_;
  int group_ = 1;  // cells copied and decoded together
};

// Greedy answers (eval/generate.h's rule, go.on_token unused) of every cell
// on one prompt; each is the answer a session of that cell alone gives.
// base.user_suffix is the prompt's.
std::vector<Answer> grid_answers(GridContext& gc, const Tokenizer& tok, const std::vector<int>& prompt,
                                 const std::vector<Cell>& cells, const SessionOptions& base,
                                 const GenerateOptions& go);
// The same on a context of its own.
std::vector<Answer> grid_answers(const Model& m, const Tokenizer& tok, const std::vector<int>& prompt,
                                 const std::vector<Cell>& cells, const SessionOptions& base,
                                 const GenerateOptions& go);

// Teacher forcing: after the prompt every cell reads forced[0], forced[1],
// ...; fn(cell, step, logits) sees each cell's next-token logits ([vocab])
// before forced[step] (step 0: the prompt's last position), for steps
// 0 .. forced.size() - 1. Every step of the FullKV cell comes before any
// other cell's (it is their reference).
void grid_teacher_force(const Model& m, const std::vector<int>& prompt, const std::vector<int>& forced,
                        const std::vector<Cell>& cells, const SessionOptions& base,
                        const std::function<void(size_t cell, int step, const float* logits)>& fn);

}  // namespace ckv::eval
