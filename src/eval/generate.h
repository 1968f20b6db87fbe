// Greedy answers of the probes (DESIGN.md 2.4 step 5): at most max_new
// tokens; an end-of-sequence token ends the answer, and so does a newline
// once the answer has non-blank text (the newline and what follows it are
// not part of the answer).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/session.h"
#include "tokenizer/tokenizer.h"

namespace ckv::eval {

struct Answer {
  std::vector<int> ids;  // generated ids, the ending EOS/newline token included
  std::string text;      // the answer text (up to the ending newline), valid UTF-8 (U+FFFD for broken bytes)
};

struct GenerateOptions {
  int max_new = 50;
  bool stop_at_newline = true;  // RULER-style tasks stop at EOS or max_new only
  // Called with each generated id before the next decode step (probes read
  // the attention of the step that produced it).
  std::function<void(int step, int id)> on_token;
};

// The session holds the prompt; logits ([vocab]) are those of its last
// position and are overwritten as decoding goes.
Answer greedy_answer(Session& s, const Tokenizer& tok, std::vector<float>& logits, const GenerateOptions& opt);

// The newline rule alone: true when `text` (the answer so far) holds a
// newline after non-blank text, and then cuts it at that newline.
bool answer_ends(std::string& text);

}  // namespace ckv::eval
