#include "profile/head_scores.h"

#include <algorithm>
#include <numeric>

#include "util/error.h"

namespace ckv {

ProbeHeadSums::ProbeHeadSums(int n_layers, int n_heads, const std::vector<int>& prompt, int a, int b)
    : L_(n_layers),
      H_(n_heads),
      a_(a),
      b_(b),
      prompt_(prompt),
      mass_(static_cast<size_t>(n_layers) * n_heads, 0.0f),
      argmax_(static_cast<size_t>(n_layers) * n_heads, -1),
      sem_(mass_.size(), 0.0),
      ret_(mass_.size(), 0.0) {
  if (a < 0 || b <= a || b > static_cast<int>(prompt.size()))
    throw Error("head scoring: span [" + std::to_string(a) + ", " + std::to_string(b) + ") is not inside the " +
                std::to_string(prompt.size()) + "-token prompt");
}

void ProbeHeadSums::layer(int l, const float* mass, const int32_t* argmax) {
  std::copy(mass, mass + H_, mass_.begin() + static_cast<long>(l) * H_);
  std::copy(argmax, argmax + H_, argmax_.begin() + static_cast<long>(l) * H_);
}

void ProbeHeadSums::token(int id) {
  const bool in_span = std::find(prompt_.begin() + a_, prompt_.begin() + b_, id) != prompt_.begin() + b_;
  if (in_span) {
    ++steps_in_span_;
    const double w = 1.0 / (b_ - a_);
    for (size_t i = 0; i < mass_.size(); ++i) {
      sem_[i] += mass_[i];
      const int r = argmax_[i];
      if (r >= a_ && r < b_ && prompt_[r] == id) ret_[i] += w;
    }
  }
  std::fill(mass_.begin(), mass_.end(), 0.0f);
  std::fill(argmax_.begin(), argmax_.end(), -1);
}

HeadScores::HeadScores(int n_layers, int n_heads)
    : L_(n_layers), H_(n_heads), sem_(static_cast<size_t>(n_layers) * n_heads, 0.0), ret_(sem_.size(), 0.0) {}

void HeadScores::add(const ProbeHeadSums& p) {
  if (p.n_layers() != L_ || p.n_heads() != H_) throw Error("head scoring: probe of another model shape");
  for (size_t i = 0; i < sem_.size(); ++i) {
    sem_[i] += p.semantic()[i];
    ret_[i] += p.retrieval()[i];
  }
  ++n_;
}

namespace {
std::vector<std::vector<double>> means(const std::vector<double>& sum, int L, int H, int n) {
  std::vector<std::vector<double>> out(L, std::vector<double>(H, 0.0));
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) out[l][h] = n > 0 ? sum[static_cast<size_t>(l) * H + h] / n : 0.0;
  return out;
}
}  // namespace

std::vector<std::vector<double>> HeadScores::semantic() const { return means(sem_, L_, H_, n_); }
std::vector<std::vector<double>> HeadScores::retrieval() const { return means(ret_, L_, H_, n_); }

std::vector<int> rank_heads(const std::vector<double>& score) {
  std::vector<int> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return score[x] > score[y]; });
  return idx;
}

}  // namespace ckv
