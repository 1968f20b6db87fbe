// eval niah: every method and budget on the same needle-in-a-haystack probes
// (DESIGN.md 2.4 steps 1-4 build them; the score is ROUGE-1 recall x 100 of
// the greedy answer, DESIGN.md 6).
#pragma once
#include <string>
#include <vector>

#include "eval/grid.h"
#include "eval/haystack.h"
#include "eval/needles.h"
#include "eval/niah_probe.h"
#include "eval/results.h"

namespace ckv::eval {

struct NiahGrid {
  std::vector<int> lengths{1000, 2000, 4000};
  std::vector<double> depths{0.1, 0.3, 0.5, 0.7, 0.9};
};

// Throws ckv::Error naming --lengths / --depths for an empty list, a length
// < 1 or a depth outside [0, 1].
void check_niah_grid(const NiahGrid& g);

// Every (length, depth, needle) probe, in that order. The haystack must hold
// max(lengths) tokens.
std::vector<NiahProbe> niah_probes(const Tokenizer& tok, const Haystack& hay, const std::vector<Needle>& needles,
                                   const NiahGrid& g, const ChatTemplate* chat);

// Throws ckv::Error naming --lengths when a probe and its answer
// (max_new tokens) do not fit the context of n_ctx positions.
void check_probe_lengths(const std::vector<NiahProbe>& probes, int max_new, int n_ctx);

// Runs the grid on every probe: rows of (cell, probe) with score, tokens and
// response. on_probe(i) is called after probe i.
Results run_niah(const Model& m, const Tokenizer& tok, const std::vector<NiahProbe>& probes,
                 const std::vector<Needle>& needles, const std::vector<Cell>& cells, const SessionOptions& base,
                 int max_new, const std::function<void(size_t)>& on_probe = {});

// Per cell: [lengths][depths] mean score over the needles (NaN where none).
std::vector<std::vector<double>> niah_heatmap(const Results& r, const Cell& c, const NiahGrid& g);

}  // namespace ckv::eval
