// Progress of a long command on stderr: a bar with an ETA redrawn in place on
// a terminal, a plain line at each tenth (or every 30 s) otherwise. Work is
// weighted (e.g. by prompt tokens) so the ETA follows what takes the time.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace ckv::eval {

class Progress {
 public:
  // total_weight: the sum of the weights that advance() will add.
  Progress(std::string what, int n_items, double total_weight, FILE* out = stderr);
  // One item done, of the given weight; note is shown beside the bar.
  void advance(double weight, const std::string& note = "");
  void finish();  // ends the bar's line; prints the total time
  double elapsed_s() const;

  static std::string duration(double seconds);  // "2m05s"

 private:
  void draw(const std::string& note);
  std::string what_;
  int n_items_, done_items_ = 0;
  double total_, done_ = 0;
  FILE* out_;
  bool tty_;
  int last_tenth_ = 0;
  std::chrono::steady_clock::time_point t0_, last_line_;
};

}  // namespace ckv::eval
