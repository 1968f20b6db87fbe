#include "eval/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "eval/plot.h"
#include "util/error.h"

namespace ckv::eval {

void make_output_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) throw file_error(dir, "cannot create the output directory (-o)");
}

std::string write_results(const std::string& dir, const Results& r, const std::string& extra_md) {
  write_text(dir + "/results.json", r.to_json().dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  const std::string md = r.markdown();
  write_text(dir + "/table.md", "# " + r.task + ": " + r.model + "\n\n" + md + extra_md);
  return md;
}

namespace {
bool plots_possible() {
  if (have_gnuplot()) return true;
  static bool warned = false;
  if (!warned)
    std::fprintf(stderr, "warning: gnuplot (with pngcairo) not found: no PNG figures (Debian: apt-get install "
                 "gnuplot-nox, or run scripts/install_deps.sh)\n");
  warned = true;
  return false;
}
}  // namespace

std::vector<std::string> write_summary_plot(const std::string& dir, const Results& r, const std::string& ylabel) {
  if (!plots_possible()) return {};
  std::vector<Series> series;
  std::optional<double> full;
  const bool kld = r.task == "kld";
  for (const Summary& s : r.summary()) {
    const double y = kld ? s.metrics.value("kl_mean", 0.0) : s.score;
    if (!s.budget) {
      full = y;
      continue;
    }
    auto it = std::find_if(series.begin(), series.end(), [&](const Series& x) { return x.name == method_label(s.method); });
    if (it == series.end()) {
      series.push_back({method_label(s.method), {}});
      it = series.end() - 1;
    }
    it->points.push_back({*s.budget, y});
  }
  for (auto& s : series) std::sort(s.points.begin(), s.points.end());
  const std::string path = dir + "/" + r.task + "_summary.png";
  budget_plot_png(path, r.task + ": " + std::filesystem::path(r.model).filename().string(), ylabel, series, full, !kld);
  return {path};
}

std::vector<std::string> write_heatmaps(const std::string& dir, const Results& r, const std::vector<Cell>& cells,
                                        const NiahGrid& g) {
  if (!plots_possible()) return {};
  std::vector<std::string> out;
  const auto summary = r.summary();
  for (const Cell& c : cells) {
    const std::string name = c.full() ? "niah_full.png" : "niah_" + c.method + "_" + std::to_string(c.budget) + ".png";
    double avg = 0;
    for (auto& s : summary)
      if (s.method == c.method && (c.full() || s.budget == c.budget)) avg = s.score;
    char title[256];
    std::snprintf(title, sizeof title, "%s%s: NIAH score %.1f", method_label(c.method).c_str(),
                  c.full() ? "" : (", budget " + std::to_string(c.budget)).c_str(), avg);
    heatmap_png(dir + "/" + name, title, g.lengths, g.depths, niah_heatmap(r, c, g));
    out.push_back(dir + "/" + name);
  }
  return out;
}

std::string per_group_tables(const Results& r) {
  std::vector<std::string> groups;
  for (auto& row : r.rows)
    if (std::find(groups.begin(), groups.end(), row.group) == groups.end()) groups.push_back(row.group);
  std::string out;
  for (auto& g : groups) {
    Results sub;
    sub.task = r.task;
    sub.model = r.model;
    for (auto& row : r.rows)
      if (row.group == g) sub.rows.push_back(row);
    out += "\n## " + g + "\n\n" + sub.markdown();
  }
  return out;
}

}  // namespace ckv::eval
