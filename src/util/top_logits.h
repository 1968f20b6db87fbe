// The k largest logits of a row in sampling order: value descending, the
// lowest id first on ties (as torch.argmax and torch.topk order them). Shared
// by the sampler and the CPU backend; the CUDA backend's kernel gives the
// same order.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace ckv {

inline bool logit_before(const float* row, int32_t a, int32_t b) {
  return row[a] > row[b] || (row[a] == row[b] && a < b);
}

// vals/ids [k]; entries past the row's V get id -1 and -infinity. `scratch`
// keeps its capacity between calls. A row holding a NaN or an infinity gets
// vals[0] = NaN, so that the caller refuses it.
inline void top_logits_row(const float* row, int V, int k, float* vals, int32_t* ids, std::vector<int32_t>& scratch) {
  for (int i = V; i < k; ++i) ids[i] = -1, vals[i] = -INFINITY;
  k = std::min(k, V);
  bool finite = true;
  for (int i = 0; i < V; ++i) finite &= std::isfinite(row[i]);
  scratch.resize(V);
  std::iota(scratch.begin(), scratch.end(), 0);
  if (finite) {
    std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(),
                      [&](int32_t a, int32_t b) { return logit_before(row, a, b); });
  } else {  // NaN last, so that the comparison stays a strict weak order
    auto key = [&](int32_t i) { return std::isnan(row[i]) ? -INFINITY : row[i]; };
    std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), [&](int32_t a, int32_t b) {
      return key(a) > key(b) || (key(a) == key(b) && a < b);
    });
  }
  for (int i = 0; i < k; ++i) ids[i] = scratch[i], vals[i] = row[scratch[i]];
  if (!finite && k > 0) vals[0] = NAN;
}

}  // namespace ckv
