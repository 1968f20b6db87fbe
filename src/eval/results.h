// results.json (DESIGN.md 6) and the markdown tables of an evaluation:
// {"task", "model", "rows": [{"method", "budget", "length", "depth", "case",
// "score"[, "tokens", "response"]}], "summary": [{"method", "budget",
// "score"}]}, score 0-100. For kld the KL statistics replace "score". FullKV's
// budget is null (it keeps everything).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckv::eval {

struct Row {
  std::string method;
  std::optional<int> budget;  // nullopt: FullKV
  int64_t length = 0;         // the grid's context length (kld: the prompt's n-ctx)
  std::optional<double> depth;
  std::string case_id;           // needle index, RULER task:sample, kld file
  std::string group;             // summary averages group means (RULER: the task); not written
  std::optional<double> score;   // 0-100
  nlohmann::json metrics;        // kld: kl_mean, ..., written in place of score
  std::optional<int64_t> tokens;  // the probe's prompt length
  std::optional<std::string> response;
};

struct Summary {
  std::string method;
  std::optional<int> budget;
  double score = 0;        // mean over groups of each group's mean row score
  nlohmann::json metrics;  // kld: the statistics of its row
};

struct Results {
  std::string task, model;
  std::vector<Row> rows;

  // One entry per (method, budget) in order of first appearance.
  std::vector<Summary> summary() const;
  nlohmann::json to_json() const;
  // A results.json read back (eval plot): rows as written; a RULER row's
  // group is its task (the case before ':'). Throws ckv::Error naming
  // `source` and the field for a malformed file.
  static Results from_json(const nlohmann::json& j, const std::string& source);
  // Score table: one row per method (FullKV first: its score in every
  // column), one column per budget. kld: mean KL and top-1 agreement tables.
  std::string markdown() const;
};

// Display name of a method (FullKV, SnapKV, ...); unknown names as they are.
std::string method_label(const std::string& method);

// Writes text to path; throws ckv::Error naming the path.
void write_text(const std::string& path, const std::string& text);

}  // namespace ckv::eval
