#include "eval/niah_probe.h"

#include <cmath>
#include <unordered_set>

#include "util/error.h"

namespace ckv::eval {

std::string place_needle(const Tokenizer& tok, const std::vector<int>& hay, int N, double depth,
                         const std::string& needle) {
  if (N < 0 || N > static_cast<int>(hay.size()))
    throw Error("needle placement: length " + std::to_string(N) + " is outside the haystack's " +
                std::to_string(hay.size()) + " tokens");
  if (!(depth >= 0.0 && depth <= 1.0))
    throw Error("needle placement: depth " + std::to_string(depth) + " is outside [0, 1]");
  const int c = static_cast<int>(std::floor(depth * N));
  // Head (first c tokens) and rest (tokens c..N) decoded in one pass, so
  // head + rest is exactly the text of the N tokens.
  std::string head, rest;
  int prev = -1;
  for (int i = 0; i < N; ++i) {
    (i < c ? head : rest) += tok.decode_piece(prev, hay[i]);
    prev = hay[i];
  }
  if (depth == 0.0) return needle + " " + head + rest;
  if (size_t cut = head.rfind(". "); cut != std::string::npos) {
    rest = head.substr(cut + 2) + rest;
    head.resize(cut + 1);
  }
  return head + " " + needle + " " + rest;
}

std::string niah_prompt(const std::string& context, const std::string& question, const ChatTemplate* chat,
                        size_t* user_end) {
  const std::string ask = "\nBased on the content of the book, Question: " + question + "\nAnswer:";
  if (chat) return chat->render({{"user", "<book>" + context + "</book>" + ask}}, true, user_end);
  if (user_end) *user_end = context.size() + ask.size();
  return context + ask;
}

std::vector<int> prompt_tokens(const Tokenizer& tok, const std::string& text, bool chat) {
  std::vector<int> ids = tok.encode(text, chat);
  if (tok.add_bos() && tok.bos() >= 0 && (ids.empty() || ids[0] != tok.bos())) ids.insert(ids.begin(), tok.bos());
  return ids;
}

std::optional<Span> answer_span(const std::vector<int>& prompt, const std::vector<int>& answer) {
  const int n = static_cast<int>(answer.size()), T = static_cast<int>(prompt.size());
  if (n == 0 || n > T) return std::nullopt;
  const std::unordered_set<int> want(answer.begin(), answer.end());
  for (int a = 0; a + n <= T; ++a) {
    std::unordered_set<int> have;
    for (int i = a; i < a + n; ++i)
      if (want.count(prompt[i])) have.insert(prompt[i]);
    if (static_cast<double>(have.size()) / static_cast<double>(want.size()) > 0.9) return Span{a, a + n};
  }
  return std::nullopt;
}

NiahProbe make_niah_probe(const Tokenizer& tok, const std::vector<int>& hay, const Needle& n, int needle_index,
                          int length, double depth, const ChatTemplate* chat) {
  NiahProbe p;
  p.needle = needle_index;
  p.length = length;
  p.depth = depth;
  size_t user_end = 0;
  p.prompt = niah_prompt(place_needle(tok, hay, length, depth, n.needle), n.question, chat, &user_end);
  p.tokens = prompt_tokens(tok, p.prompt, chat != nullptr);
  p.user_suffix = tail_tokens(tok, p.tokens, p.prompt.size() - user_end);
  p.answer_tokens = tok.encode(n.answer, false);
  p.span = answer_span(p.tokens, p.answer_tokens);
  return p;
}

std::optional<ChatTemplate> prompt_style(const TokenizerData& vocab, const std::string& mode) {
  if (mode != "auto" && mode != "chat" && mode != "plain")
    throw Error("--prompt-style must be auto, chat or plain, got '" + mode + "'");
  if (mode == "plain" || (mode == "auto" && vocab.chat_template.empty())) return std::nullopt;
  if (vocab.chat_template.empty())
    throw Error("--prompt-style chat: the model has no chat template (use plain or auto)");
  const std::string bos_text = vocab.bos >= 0 ? vocab.tokens[vocab.bos] : "";
  return make_chat_template(vocab.chat_template, bos_text);
}

}  // namespace ckv::eval
