// RULER-style synthetic tasks (Hsieh et al., arXiv 2404.06654), generated
// here from a seed with the shapes of RULER's synthetic.yaml: niah_single_1..3,
// niah_multikey_1..3, niah_multivalue, niah_multiquery (needles "One of the
// special magic {numbers|uuids} for {key} is: {value}." in an essay, a
// repeated noise text or a haystack of other needles), vt (variable tracking,
// 1 chain of 4 hops), cwe (common words, 10 of them) and fwe (frequent coded
// words, zeta alpha 2). Scored by string_match_all (eval/string_match.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ckv::eval {

struct RulerSample {
  std::string task;
  int index = 0;    // sample number
  int length = 0;   // the prompt's target length in tokens (it holds at most this many)
  std::string prompt;
  std::vector<int> tokens;
  int user_suffix = 0;  // chat: tokens after the user message's content (template suffix + answer prefix)
  std::vector<std::string> refs;  // every one should appear in the answer
  int max_new = 0;                // RULER's tokens_to_generate for the task
  std::optional<double> depth;    // where the needle went, single-needle tasks
};

// The task names, in RULER's order.
const std::vector<std::string>& ruler_tasks();
// Throws ckv::Error naming --tasks for an unknown or repeated name.
void check_ruler_tasks(const std::vector<std::string>& tasks);

// Sample `index` of `task` at `length` tokens, the same for the same seed.
// Each sample's size (haystack tokens, repetitions, words) is the largest
// whose prompt fits `length`. Throws ckv::Error naming --lengths when even
// the smallest does not fit.
RulerSample ruler_sample(const Tokenizer& tok, const Haystack& hay, const std::string& task, int length, int index,
                         uint64_t seed, const ChatTemplate* chat);

// RULER's key words: "adjective-noun" pairs (a fixed list compiled in).
std::string ruler_word(uint64_t i);
uint64_t ruler_word_count();

}  // namespace ckv::eval

#include "eval/grid.h"
#include "eval/results.h"

namespace ckv::eval {

// Runs the grid on every sample: greedy answers of at most the task's
// max_new tokens (max_new > 0 overrides it), ending at end-of-sequence only,
// scored by string_match_all. Rows: case "task:index", grouped by task (the
// summary is RULER's average over tasks).
Results run_ruler(const Model& m, const Tokenizer& tok, const std::vector<RulerSample>& samples,
                  const std::vector<Cell>& cells, const SessionOptions& base, int max_new,
                  const std::function<void(size_t)>& on_sample = {});

}  // namespace ckv::eval
