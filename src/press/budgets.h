// Budget allocators, apart from the scorers (DESIGN.md 2.3 and 3).
#pragma once
#include <cstdint>
#include <vector>

namespace ckv {

// CompressKV error-aware layer budgets (arXiv 2508.02401, DESIGN.md 2.3):
// scores e (>= 0, sum 1) over L layers, average budget B, min m, max M.
// Returns per-layer budgets summing to L*B.
std::vector<int> error_aware_budgets(const std::vector<double>& e, int B, int m = 32, int M = -1 /* 3B */);

// PyramidKV layer budgets (DESIGN.md 3), integer division as in its code.
std::vector<int> pyramid_budgets(int B, int T, int n_layers, int window, int beta);

// Ada-KV head budgets within one layer (DESIGN.md 3): scores [G][n] over the
// n = T - w selectable positions; layer budget B (per head, window included).
// Returns per-head budgets (window included) summing to G*B.
std::vector<int> adakv_head_budgets(const std::vector<std::vector<float>>& scores, int B, int window, float alpha);
// The same from the shares alone: share[g] = how many of the G*(B-w) best
// pairs are head g's, over n selectable positions per head.
std::vector<int> adakv_budgets_from_shares(const std::vector<int64_t>& share, int n, int B, int window, float alpha);

}  // namespace ckv
