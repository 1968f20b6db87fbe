// Needle-in-a-haystack probes, exactly as DESIGN.md 2.4 steps 1-4 define
// them (identify-heads and eval niah build the same probes): the needle
// placed at a depth of the first N haystack tokens, the question prompt
// (plain or the model's chat template) and the answer span in its tokens.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "eval/needles.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ckv::eval {

// Step 2: the context text with `needle` at depth d (in [0, 1]) of the first
// N tokens of `hay` (N <= hay.size()). c = floor(d * N); the first c tokens
// are decoded; for d > 0 the text is cut just after its last ". " (the period
// kept, the space dropped) when it has one; context = head + " " + needle +
// " " + the rest of the N tokens' text. At d = 0 the needle goes first.
std::string place_needle(const Tokenizer& tok, const std::vector<int>& hay, int N, double depth,
                         const std::string& needle);

// Step 3: the question prompt. Plain (chat == nullptr):
// "{context}\nBased on the content of the book, Question: {q}\nAnswer:".
// Chat: one user message "<book>{context}</book>\nBased on the content of the
// book, Question: {q}\nAnswer:" rendered with the generation prompt.
// With user_end: where the user message's content ends in the text (chat),
// the text's size (plain).
std::string niah_prompt(const std::string& context, const std::string& question, const ChatTemplate* chat,
                        size_t* user_end = nullptr);

// Prompt text -> token ids as the model reads it: special-token text parsed
// for a chat rendering, and the model's BOS added when it wants one.
std::vector<int> prompt_tokens(const Tokenizer& tok, const std::string& text, bool chat);

// Step 4: the first [a, b) of `prompt` with b - a = answer.size() whose token
// set covers more than 90% of the answer's token set; nullopt when none.
struct Span {
  int a = 0, b = 0;
};
std::optional<Span> answer_span(const std::vector<int>& prompt, const std::vector<int>& answer);

// One probe of the length x depth grid.
struct NiahProbe {
  int needle = 0;      // index in the needle set
  int length = 0;      // N, haystack tokens
  double depth = 0;    // d
  std::string prompt;  // text
  std::vector<int> tokens;
  int user_suffix = 0;             // tokens after the user message's content (the template's suffix; 0 plain)
  std::vector<int> answer_tokens;  // the answer tokenized alone (no special tokens)
  std::optional<Span> span;
};
NiahProbe make_niah_probe(const Tokenizer& tok, const std::vector<int>& hay, const Needle& n, int needle_index,
                          int length, double depth, const ChatTemplate* chat);

// The model's chat template when it has one (nullopt: plain prompts).
// mode: "auto" (chat iff the model has a template), "chat" or "plain";
// anything else, or "chat" for a model without a template, is an error
// naming --prompt-style.
std::optional<ChatTemplate> prompt_style(const TokenizerData& vocab, const std::string& mode);

}  // namespace ckv::eval
