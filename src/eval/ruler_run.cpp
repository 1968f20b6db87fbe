// eval ruler: the method x budget grid on RULER-style samples (eval/ruler.h).
#include <algorithm>

#include "eval/generate.h"
#include "eval/ruler.h"
#include "eval/string_match.h"

namespace ckv::eval {

Results run_ruler(const Model& m, const Tokenizer& tok, const std::vector<RulerSample>& samples,
                  const std::vector<Cell>& cells, const SessionOptions& base, int max_new,
                  const std::function<void(size_t)>& on_sample) {
  Results r;
  r.task = "ruler";
  r.model = m.path;
  std::vector<std::vector<Row>> rows(cells.size());
  // One context for every sample: the longest prompt with its answer.
  int64_t longest = 0;
  int suffix = 0;
  for (const RulerSample& smp : samples) {
    const int64_t n_new = max_new > 0 ? max_new : smp.max_new;
    longest = std::max<int64_t>(longest, static_cast<int64_t>(smp.tokens.size()) + n_new + 1);
    suffix = std::max(suffix, smp.user_suffix);
  }
  GridContext gc(m, base, longest, suffix, cells);
  for (size_t si = 0; si < samples.size(); ++si) {
    const RulerSample& smp = samples[si];
    const int n_new = max_new > 0 ? max_new : smp.max_new;
    GenerateOptions go;
    go.max_new = n_new;
    go.stop_at_newline = false;
    SessionOptions o = base;
    o.user_suffix = smp.user_suffix;
    const std::vector<Answer> answers = grid_answers(gc, tok, smp.tokens, cells, o, go);
    for (size_t ci = 0; ci < cells.size(); ++ci) {
      Row row;
      row.method = cells[ci].method;
      if (!cells[ci].full()) row.budget = cells[ci].budget;
      row.length = smp.length;
      row.depth = smp.depth;
      row.case_id = smp.task + ":" + std::to_string(smp.index);
      row.group = smp.task;
      row.score = string_match_all(answers[ci].text, smp.refs);
      row.tokens = static_cast<int64_t>(smp.tokens.size());
      row.response = answers[ci].text;
      rows[ci].push_back(std::move(row));
    }
    if (on_sample) on_sample(si);
  }
  for (auto& v : rows)
    for (auto& row : v) r.rows.push_back(std::move(row));
  return r;
}

}  // namespace ckv::eval
