#include "eval/results.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "util/error.h"

namespace ckv::eval {

using json = nlohmann::json;

namespace {

json opt_json(const std::optional<int>& v) { return v ? json(*v) : json(nullptr); }

std::string fmt(double x, const char* f = "%.1f") {
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

std::vector<int> budgets_of(const std::vector<Summary>& s) {
  std::vector<int> b;
  for (auto& e : s)
    if (e.budget && std::find(b.begin(), b.end(), *e.budget) == b.end()) b.push_back(*e.budget);
  std::sort(b.begin(), b.end());
  return b;
}

std::vector<std::string> methods_of(const std::vector<Summary>& s) {
  std::vector<std::string> m;
  for (auto& e : s)
    if (std::find(m.begin(), m.end(), e.method) == m.end()) m.push_back(e.method);
  std::stable_partition(m.begin(), m.end(), [](const std::string& x) { return x == "full"; });
  return m;
}

// Table of value(summary) per method and budget; FullKV's one value in every column.
template <class F>
std::string table(const std::vector<Summary>& s, const std::string& corner, F value) {
  const std::vector<int> budgets = budgets_of(s);
  std::string out = "| " + corner + " |";
  std::string sep = "| --- |";
  for (int b : budgets) out += " " + std::to_string(b) + " |", sep += " ---: |";
  if (budgets.empty()) out += " all |", sep += " ---: |";
  out += "\n" + sep + "\n";
  for (const std::string& m : methods_of(s)) {
    out += "| " + method_label(m) + " |";
    auto find = [&](std::optional<int> b) -> const Summary* {
      for (auto& e : s)
        if (e.method == m && (m == "full" || e.budget == b)) return &e;
      return nullptr;
    };
    if (budgets.empty()) {
      const Summary* e = find(std::nullopt);
      out += " " + (e ? value(*e) : std::string("-")) + " |";
    }
    for (int b : budgets) {
      const Summary* e = find(b);
      out += " " + (e ? value(*e) : std::string("-")) + " |";
    }
    out += "\n";
  }
  return out;
}

}  // namespace

std::string method_label(const std::string& m) {
  static const std::map<std::string, std::string> names = {
      {"full", "FullKV"},       {"streamingllm", "StreamingLLM"}, {"snapkv", "SnapKV"},
      {"pyramidkv", "PyramidKV"}, {"adakv", "Ada-KV"},            {"compresskv", "CompressKV"}};
  auto it = names.find(m);
  return it == names.end() ? m : it->second;
}

std::vector<Summary> Results::summary() const {
  std::vector<Summary> out;
  // (method, budget) -> group -> (sum, count), groups in order of appearance.
  struct Acc {
    std::vector<std::string> groups;
    std::map<std::string, std::pair<double, int>> sums;
  };
  std::vector<Acc> acc;
  for (const Row& r : rows) {
    size_t i = 0;
    while (i < out.size() && !(out[i].method == r.method && out[i].budget == r.budget)) ++i;
    if (i == out.size()) {
      out.push_back({r.method, r.budget, 0.0, r.metrics});
      acc.emplace_back();
    }
    if (!r.score) continue;
    auto& a = acc[i];
    if (!a.sums.count(r.group)) a.groups.push_back(r.group);
    a.sums[r.group].first += *r.score;
    a.sums[r.group].second += 1;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    double total = 0;
    for (auto& g : acc[i].groups) total += acc[i].sums[g].first / acc[i].sums[g].second;
    out[i].score = acc[i].groups.empty() ? 0.0 : total / static_cast<double>(acc[i].groups.size());
  }
  return out;
}

json Results::to_json() const {
  json jr = json::array();
  for (const Row& r : rows) {
    json o = {{"method", r.method}, {"budget", opt_json(r.budget)}, {"length", r.length},
              {"depth", r.depth ? json(*r.depth) : json(nullptr)}, {"case", r.case_id}};
    if (r.score) o["score"] = *r.score;
    if (r.metrics.is_object())
      for (auto it = r.metrics.begin(); it != r.metrics.end(); ++it) o[it.key()] = it.value();
    if (r.tokens) o["tokens"] = *r.tokens;
    if (r.response) o["response"] = *r.response;
    jr.push_back(std::move(o));
  }
  json js = json::array();
  for (const Summary& s : summary()) {
    json o = {{"method", s.method}, {"budget", opt_json(s.budget)}};
    if (s.metrics.is_object())
      for (auto it = s.metrics.begin(); it != s.metrics.end(); ++it) o[it.key()] = it.value();
    else
      o["score"] = s.score;
    js.push_back(std::move(o));
  }
  return {{"task", task}, {"model", model}, {"rows", jr}, {"summary", js}};
}

Results Results::from_json(const json& j, const std::string& source) {
  static const char* const kMetrics[] = {"kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement"};
  Results r;
  try {
    r.task = j.at("task").get<std::string>();
    r.model = j.at("model").get<std::string>();
    size_t i = 0;
    for (const json& o : j.at("rows")) {
      const std::string at = "rows[" + std::to_string(i++) + "]";
      try {
        Row row;
        row.method = o.at("method").get<std::string>();
        if (!o.at("budget").is_null()) row.budget = o["budget"].get<int>();
        row.length = o.at("length").get<int64_t>();
        if (!o.at("depth").is_null()) row.depth = o["depth"].get<double>();
        row.case_id = o.at("case").get<std::string>();
        if (r.task == "ruler") row.group = row.case_id.substr(0, row.case_id.find(':'));
        if (o.contains("score")) row.score = o["score"].get<double>();
        for (const char* k : kMetrics)
          if (o.contains(k)) row.metrics[k] = o[k];
        if (o.contains("tokens")) row.tokens = o["tokens"].get<int64_t>();
        if (o.contains("response")) row.response = o["response"].get<std::string>();
        r.rows.push_back(std::move(row));
      } catch (const json::exception& e) {
        throw file_error(source, at + ": " + e.what());
      }
    }
  } catch (const json::exception& e) {
    throw file_error(source, std::string("not a results.json: ") + e.what());
  }
  return r;
}

std::string Results::markdown() const {
  const std::vector<Summary> s = summary();
  if (task == "kld") {
    return "Mean KL divergence from FullKV (nats, lower is better)\n\n" +
           table(s, "method \\ budget", [](const Summary& e) { return fmt(e.metrics.value("kl_mean", 0.0), "%.4f"); }) +
           "\nTop-1 agreement with FullKV (%)\n\n" +
           table(s, "method \\ budget",
                 [](const Summary& e) { return fmt(100.0 * e.metrics.value("top1_agreement", 0.0)); });
  }
  return table(s, "method \\ budget", [](const Summary& e) { return fmt(e.score); });
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw file_error(path, "cannot write");
  f << text;
  f.close();
  if (!f) throw file_error(path, "write failed");
}

}  // namespace ckv::eval
