#include "eval/progress.h"

#include <unistd.h>

#include <algorithm>

namespace ckv::eval {

using clock_type = std::chrono::steady_clock;

Progress::Progress(std::string what, int n_items, double total_weight, FILE* out)
    : what_(std::move(what)),
      n_items_(n_items),
      total_(total_weight > 0 ? total_weight : 1),
      out_(out),
      tty_(isatty(fileno(out)) != 0),
      t0_(clock_type::now()),
      last_line_(t0_) {
  if (tty_) draw("");
}

double Progress::elapsed_s() const { return std::chrono::duration<double>(clock_type::now() - t0_).count(); }

std::string Progress::duration(double s) {
  if (!(s >= 0)) s = 0;
  const long t = static_cast<long>(s + 0.5);
  char b[32];
  if (t >= 3600) std::snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(b, sizeof b, "%lds", t);
  return b;
}

void Progress::advance(double weight, const std::string& note) {
  done_ += weight;
  ++done_items_;
  const int tenth = static_cast<int>(10 * std::min(1.0, done_ / total_));
  const auto now = clock_type::now();
  if (tty_ || tenth > last_tenth_ || std::chrono::duration<double>(now - last_line_).count() >= 30 ||
      done_items_ == n_items_) {
    last_tenth_ = tenth;
    last_line_ = now;
    draw(note);
  }
}

void Progress::draw(const std::string& note) {
  const double f = std::min(1.0, done_ / total_), el = elapsed_s();
  const std::string eta = done_ > 0 ? duration(el * (total_ - done_) / done_) : "?";
  if (tty_) {
    constexpr int W = 30;
    const int full = static_cast<int>(f * W);
    std::string bar(full, '#');
    bar += std::string(W - full, '.');
    std::fprintf(out_, "\r\033[K%s [%s] %3d%% %d/%d, %s elapsed, eta %s%s%s", what_.c_str(), bar.c_str(),
                 static_cast<int>(100 * f), done_items_, n_items_, duration(el).c_str(), eta.c_str(),
                 note.empty() ? "" : "  ", note.c_str());
  } else {
    std::fprintf(out_, "%s: %d/%d (%d%%), %s elapsed, eta %s%s%s\n", what_.c_str(), done_items_, n_items_,
                 static_cast<int>(100 * f), duration(el).c_str(), eta.c_str(), note.empty() ? "" : ", ",
                 note.c_str());
  }
  std::fflush(out_);
}

void Progress::finish() {
  if (tty_) std::fprintf(out_, "\n");
  std::fprintf(out_, "%s: done, %d items in %s\n", what_.c_str(), done_items_, duration(elapsed_s()).c_str());
  std::fflush(out_);
}

}  // namespace ckv::eval
