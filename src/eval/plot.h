// PNG figures of an evaluation, drawn by gnuplot (Debian gnuplot-nox, pngcairo
// terminal; scripts/install_deps.sh installs it) driven through a pipe.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace ckv::eval {

// Whether a gnuplot with the pngcairo terminal can be run (checked once).
bool have_gnuplot();

// Heat map as the paper's NIAH figures: x = context length, y = depth,
// colour = score 0-100 (red to green), each cell labelled with its score.
//   score: [lengths.size()][depths.size()]; a NaN cell is left blank.
void heatmap_png(const std::string& path, const std::string& title, const std::vector<int>& lengths,
                 const std::vector<double>& depths, const std::vector<std::vector<double>>& score);

// Score against budget, one line per method; FullKV (when given) as a
// dashed horizontal line. points[i]: (budget, score) of series i. percent:
// the y axis spans 0-100.
struct Series {
  std::string name;
  std::vector<std::pair<int, double>> points;
};
void budget_plot_png(const std::string& path, const std::string& title, const std::string& ylabel,
                     const std::vector<Series>& series, std::optional<double> full, bool percent);

// Runs a gnuplot script; throws ckv::Error with gnuplot's message on failure.
void run_gnuplot(const std::string& script, const std::string& what);

}  // namespace ckv::eval
