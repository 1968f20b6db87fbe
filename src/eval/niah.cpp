#include "eval/niah.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "eval/generate.h"
#include "eval/rouge.h"
#include "util/error.h"

namespace ckv::eval {

void check_niah_grid(const NiahGrid& g) {
  if (g.lengths.empty()) throw Error("--lengths is empty");
  if (g.depths.empty()) throw Error("--depths is empty");
  for (int n : g.lengths)
    if (n < 1) throw Error("--lengths: " + std::to_string(n) + " is not a positive token count");
  for (double d : g.depths)
    if (!(d >= 0.0 && d <= 1.0))
      throw Error("--depths: " + std::to_string(d) + " is outside [0, 1] (depths are fractions, 0.5 = middle)");
}

std::vector<NiahProbe> niah_probes(const Tokenizer& tok, const Haystack& hay, const std::vector<Needle>& needles,
                                   const NiahGrid& g, const ChatTemplate* chat) {
  check_niah_grid(g);
  std::vector<NiahProbe> out;
  for (int n : g.lengths) {
    if (n > static_cast<int>(hay.tokens.size()))
      throw file_error(hay.path, "the haystack has " + std::to_string(hay.tokens.size()) + " tokens, --lengths asks for " +
                                     std::to_string(n));
    for (double d : g.depths)
      for (size_t i = 0; i < needles.size(); ++i)
        out.push_back(make_niah_probe(tok, hay.tokens, needles[i], static_cast<int>(i), n, d, chat));
  }
  return out;
}

void check_probe_lengths(const std::vector<NiahProbe>& probes, int max_new, int n_ctx) {
  for (const NiahProbe& p : probes)
    if (static_cast<int64_t>(p.tokens.size()) + max_new > n_ctx)
      throw Error("--lengths: length " + std::to_string(p.length) + " makes a prompt of " +
                  std::to_string(p.tokens.size()) + " tokens; with " + std::to_string(max_new) +
                  " answer tokens it exceeds the model's context of " + std::to_string(n_ctx) + " positions");
}

Results run_niah(const Model& m, const Tokenizer& tok, const std::vector<NiahProbe>& probes,
                 const std::vector<Needle>& needles, const std::vector<Cell>& cells, const SessionOptions& base,
                 int max_new, const std::function<void(size_t)>& on_probe) {
  Results r;
  r.task = "niah";
  r.model = m.path;
  // rows[cell][probe], flattened cell-major at the end so the file reads by method.
  std::vector<std::vector<Row>> rows(cells.size());
  GenerateOptions go;
  go.max_new = max_new;
  // One context for every probe: the longest prompt with its answer.
  int64_t longest = 0;
  int suffix = 0;
  for (const NiahProbe& p : probes) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.tokens.size()) + max_new + 1);
    suffix = std::max(suffix, p.user_suffix);
  }
  GridContext gc(m, base, longest, suffix, cells);
  for (size_t pi = 0; pi < probes.size(); ++pi) {
    const NiahProbe& p = probes[pi];
    SessionOptions o = base;
    o.user_suffix = p.user_suffix;
    const std::vector<Answer> answers = grid_answers(gc, tok, p.tokens, cells, o, go);
    for (size_t ci = 0; ci < cells.size(); ++ci) {
      Row row;
      row.method = cells[ci].method;
      if (!cells[ci].full()) row.budget = cells[ci].budget;
      row.length = p.length;
      row.depth = p.depth;
      row.case_id = std::to_string(p.needle);
      row.score = 100.0 * rouge1_recall(needles[p.needle].answer, answers[ci].text);
      row.tokens = static_cast<int64_t>(p.tokens.size());
      row.response = answers[ci].text;
      rows[ci].push_back(std::move(row));
    }
    if (on_probe) on_probe(pi);
  }
  for (auto& v : rows)
    for (auto& row : v) r.rows.push_back(std::move(row));
  return r;
}

std::vector<std::vector<double>> niah_heatmap(const Results& r, const Cell& c, const NiahGrid& g) {
  const size_t L = g.lengths.size(), D = g.depths.size();
  std::vector<std::vector<double>> sum(L, std::vector<double>(D, 0.0)), cnt = sum;
  for (const Row& row : r.rows) {
    if (row.method != c.method || (!c.full() && row.budget != c.budget) || !row.score || !row.depth) continue;
    auto li = std::find(g.lengths.begin(), g.lengths.end(), row.length);
    auto di = std::find(g.depths.begin(), g.depths.end(), *row.depth);
    if (li == g.lengths.end() || di == g.depths.end()) continue;
    sum[li - g.lengths.begin()][di - g.depths.begin()] += *row.score;
    cnt[li - g.lengths.begin()][di - g.depths.begin()] += 1;
  }
  for (size_t i = 0; i < L; ++i)
    for (size_t j = 0; j < D; ++j)
      sum[i][j] = cnt[i][j] > 0 ? sum[i][j] / cnt[i][j] : std::numeric_limits<double>::quiet_NaN();
  return sum;
}

}  // namespace ckv::eval
