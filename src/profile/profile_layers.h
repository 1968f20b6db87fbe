// profile-layers (DESIGN.md 2.5): each layer's eviction error, the e_l that
// CompressKV's error-aware budgets read. On calibration prompts (never the
// evaluation set): the prompt is read with the full cache, the positions 2.1
// would keep at a small uniform budget are taken per layer (the profile's
// semantic retrieval heads score them), then decoding runs greedily with the
// FULL cache, and at every step and layer
//   O_full = W_o . attn(q, all rows)     (the engine's decode attention)
//   O_comp = W_o . attn(q, kept prompt positions + window + generated rows)
// add ||O_comp - O_full|| / (||O_full|| + 1e-6). Sums are normalised to 1 per
// calibration set, averaged over sets and normalised again.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "model/model.h"
#include "press/press.h"
#include "profile/profile.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ckv {

struct CalibSet {
  std::string name, source;
  std::vector<std::vector<int>> prompts;  // token ids as the model reads them
};

// Two default sets from the haystack text (never the needles): "continue"
// (continuations of passages) and "questions" (a question about a passage),
// n_prompts prompts each of passages of about `length` tokens taken at evenly
// spaced, different places of the haystack.
std::vector<CalibSet> haystack_calib_sets(const Tokenizer& tok, const eval::Haystack& hay, const ChatTemplate* chat,
                                          int n_prompts, int length);

// A set from a JSONL file, one object a line: {"prompt": TEXT} (a user
// message, in the chat template when chat is set) or {"text": TEXT} (read as
// it is). Throws ckv::Error "FILE:LINE: ..." for bad lines; "FILE: ..." when
// it holds none.
CalibSet read_calib_file(const std::string& path, const Tokenizer& tok, const ChatTemplate* chat);

struct LayerErrorOptions {
  int budget = 32;   // tokens kept per layer (uniform), window included
  int max_new = 32;  // greedy steps per prompt
  PressParams press;  // window, kernel, pool, n_srh of the selection
};

// One prompt: per-layer sum over decoding steps of the relative output
// error; steps gets the number of steps. profile supplies the SRH ranking.
std::vector<double> prompt_layer_errors(const Model& m, const Tokenizer& tok, const Profile& profile,
                                        const std::vector<int>& prompt, const LayerErrorOptions& opt, int* steps);

struct LayerScores {
  std::vector<double> e;                     // [L], sum 1
  std::vector<std::vector<double>> per_set;  // [sets][L], each sum 1
  nlohmann::json provenance;
};
// All sets; on_prompt(set, prompt) after each prompt.
LayerScores layer_scores(const Model& m, const Tokenizer& tok, const Profile& profile,
                         const std::vector<CalibSet>& sets, const LayerErrorOptions& opt,
                         const std::function<void(size_t, size_t)>& on_prompt = {});

// Normalises each vector to sum 1 (an all-zero one stays uniform), averages
// them and normalises the mean (DESIGN.md 2.5's last sentence).
std::vector<double> combine_layer_errors(const std::vector<std::vector<double>>& per_set_sums);

}  // namespace ckv
