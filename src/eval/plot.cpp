#include "eval/plot.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ckv::eval {

namespace {

// gnuplot string literal (single quotes; a quote is doubled).
std::string quoted(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += (c == '\'') ? std::string("''") : std::string(1, c);
  return r + "'";
}

std::string shell_quoted(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

const char* kTerminal = "set terminal pngcairo enhanced font 'DejaVu Sans,10' size %d,%d\n";

std::string terminal(int w, int h) {
  char b[128];
  std::snprintf(b, sizeof b, kTerminal, w, h);
  return b;
}

std::string num(double x) {
  std::ostringstream ss;
  ss.precision(10);
  ss << x;
  return ss.str();
}

}  // namespace

bool have_gnuplot() {
  static const bool ok = [] {
    return std::system("echo 'set terminal pngcairo' | gnuplot >/dev/null 2>&1") == 0;
  }();
  return ok;
}

void run_gnuplot(const std::string& script, const std::string& what) {
  // The script goes to a file so gnuplot's errors can name a line of it.
  char tmpl[] = "/tmp/ckv_plot_XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) throw Error(what + ": cannot create a temporary gnuplot script");
  close(fd);
  const std::string sp = tmpl, ep = sp + ".err";
  {
    std::ofstream f(sp, std::ios::binary);
    f << script;
  }
  const int st = std::system(("gnuplot " + shell_quoted(sp) + " 2>" + shell_quoted(ep)).c_str());
  std::string err;
  {
    std::ifstream f(ep);
    std::ostringstream ss;
    ss << f.rdbuf();
    err = ss.str();
  }
  std::error_code ec;
  std::filesystem::remove(sp, ec);
  std::filesystem::remove(ep, ec);
  if (st != 0) throw Error(what + ": gnuplot failed" + (err.empty() ? std::string() : ": " + err));
}

void heatmap_png(const std::string& path, const std::string& title, const std::vector<int>& lengths,
                 const std::vector<double>& depths, const std::vector<std::vector<double>>& score) {
  std::ostringstream s;
  s << terminal(std::max(460, 200 + 90 * static_cast<int>(lengths.size())),
                std::max(340, 140 + 45 * static_cast<int>(depths.size())));
  s << "set output " << quoted(path) << "\n";
  s << "set title " << quoted(title) << " noenhanced\n";
  s << "set xlabel 'context length (tokens)'\nset ylabel 'needle depth (%)'\n";
  s << "set cblabel 'score'\nset cbrange [0:100]\n";
  s << "set palette defined (0 '#F0496E', 50 '#EBB839', 100 '#0CD79F')\n";
  s << "set xrange [-0.5:" << lengths.size() - 0.5 << "]\nset yrange [" << depths.size() - 0.5 << ":-0.5]\n";
  s << "set xtics (";
  for (size_t i = 0; i < lengths.size(); ++i) s << (i ? ", " : "") << "'" << lengths[i] << "' " << i;
  s << ")\nset ytics (";
  for (size_t j = 0; j < depths.size(); ++j) s << (j ? ", " : "") << "'" << num(100 * depths[j]) << "' " << j;
  s << ")\nset tics scale 0\nunset key\n$d << EOD\n";
  for (size_t i = 0; i < lengths.size(); ++i)
    for (size_t j = 0; j < depths.size(); ++j)
      if (std::isfinite(score[i][j])) s << i << " " << j << " " << num(score[i][j]) << "\n";
  s << "EOD\n";
  s << "plot $d using 1:2:3 with image, $d using 1:2:(sprintf('%.0f', $3)) with labels font ',9'\n";
  run_gnuplot(s.str(), path);
}

void budget_plot_png(const std::string& path, const std::string& title, const std::string& ylabel,
                     const std::vector<Series>& series, std::optional<double> full, bool percent) {
  std::ostringstream s;
  s << terminal(720, 480);
  s << "set output " << quoted(path) << "\n";
  s << "set title " << quoted(title) << " noenhanced\n";
  s << "set xlabel 'budget (tokens per layer and KV head)'\nset ylabel " << quoted(ylabel) << " noenhanced\n";
  s << "set logscale x 2\nset grid\nset key outside right noenhanced\n";
  if (percent) s << "set yrange [0:100]\n";
  int lo = 0, hi = 0;
  for (auto& se : series)
    for (auto& p : se.points) {
      lo = lo ? std::min(lo, p.first) : p.first;
      hi = std::max(hi, p.first);
    }
  if (lo > 0) s << "set xrange [" << lo / 1.25 << ":" << hi * 1.25 << "]\nset xtics (" << [&] {
    std::ostringstream t;
    bool first = true;
    for (int b = 1; b <= hi; b *= 2)
      if (b >= lo) t << (first ? "" : ", ") << "'" << b << "' " << b, first = false;
    return t.str();
  }() << ")\n";
  for (size_t i = 0; i < series.size(); ++i) {
    s << "$s" << i << " << EOD\n";
    for (auto& p : series[i].points) s << p.first << " " << num(p.second) << "\n";
    s << "EOD\n";
  }
  s << "plot ";
  bool first = true;
  if (full) {
    s << num(*full) << " with lines dashtype 2 lw 2 lc rgb 'black' title 'FullKV'";
    first = false;
  }
  for (size_t i = 0; i < series.size(); ++i) {
    s << (first ? "" : ", ") << "$s" << i << " using 1:2 with linespoints lw 2 pt 7 title " << quoted(series[i].name);
    first = false;
  }
  if (first) s << "NaN notitle";
  s << "\n";
  run_gnuplot(s.str(), path);
}

}  // namespace ckv::eval
