// The files an evaluation writes into its output directory: results.json,
// table.md and the PNG figures (when gnuplot is there).
#pragma once
#include <string>
#include <vector>

#include "eval/grid.h"
#include "eval/niah.h"
#include "eval/results.h"

namespace ckv::eval {

// Creates dir (ckv::Error naming it when it cannot).
void make_output_dir(const std::string& dir);

// results.json and table.md (the table is also returned, for stdout).
// extra_md is appended to table.md (e.g. per-task tables).
std::string write_results(const std::string& dir, const Results& r, const std::string& extra_md = "");

// <task>_summary.png: summary score against budget for every method.
// Returns the files written (none without gnuplot: a warning goes to stderr).
std::vector<std::string> write_summary_plot(const std::string& dir, const Results& r, const std::string& ylabel);

// niah_<method>_<budget>.png (FullKV: niah_full.png) for every cell.
std::vector<std::string> write_heatmaps(const std::string& dir, const Results& r, const std::vector<Cell>& cells,
                                        const NiahGrid& g);

// RULER: one table per task (rows: method, columns: budget).
std::string per_group_tables(const Results& r);

}  // namespace ckv::eval
