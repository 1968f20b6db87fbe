// identify-heads (DESIGN.md 2.4): the semantic retrieval heads of a model,
// measured on needle-in-a-haystack probes read with the full cache, with the
// attention probabilities of the engine's own decode attention (its
// AttentionProbe hook; no second attention is written for it).
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "eval/needles.h"
#include "eval/niah.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "profile/head_scores.h"
#include "profile/profile.h"
#include "tokenizer/tokenizer.h"

namespace ckv {

struct IdentifyOptions {
  eval::NiahGrid grid;      // lengths 1000, 2000, 4000; depths 0.1 .. 0.9
  int max_new = 50;         // step 5
  double min_recall = 0.5;  // step 7: a probe counts when its recall exceeds this
  // Backend of the probes' sessions (e.g. CUDA); empty = the CPU.
  std::function<std::unique_ptr<Backend>()> make_backend;
};

// What one probe did (the side file of the profile).
struct ProbeRecord {
  int needle = 0, length = 0;
  double depth = 0;
  int tokens = 0;
  int span_a = -1, span_b = -1;  // -1: no answer span found (the probe cannot count)
  std::string response;
  double recall = 0;
  int steps_in_span = 0;  // decoding steps whose token lies in the span
  bool counted = false;
};

struct IdentifyResult {
  Profile profile;  // srh and retrieval rankings with scores; no layer scores
  std::vector<ProbeRecord> probes;
};

// Runs every probe (eval::niah_probes order) and ranks the heads. The
// profile's provenance records the grid, needles and haystack; callers add
// where the needles came from and the engine version. on_probe(i, record)
// after each probe. Throws ckv::Error when no probe counts (the ranking
// would be arbitrary), naming how many probes answered and found a span.
IdentifyResult identify_heads(const Model& m, const Tokenizer& tok, const std::vector<eval::NiahProbe>& probes,
                              const std::vector<eval::Needle>& needles, const IdentifyOptions& opt,
                              const std::function<void(size_t, const ProbeRecord&)>& on_probe = {});

// One probe alone: the record, and its head sums added to `scores` when it counts.
ProbeRecord run_identify_probe(const Model& m, const Tokenizer& tok, const eval::NiahProbe& p,
                               const eval::Needle& n, const IdentifyOptions& opt, HeadScores& scores);

// The side file: one JSON object a line per probe.
std::string probe_records_jsonl(const std::vector<ProbeRecord>& records, const std::vector<eval::Needle>& needles);

}  // namespace ckv
