#include "eval/generate.h"

#include "engine/sampler.h"
#include "tokenizer/utf8.h"

namespace ckv::eval {

bool answer_ends(std::string& text) {
  size_t nl = text.find('\n');
  while (nl != std::string::npos) {
    if (text.find_first_not_of(" \t\r\n") < nl) {
      text.resize(nl);
      return true;
    }
    nl = text.find('\n', nl + 1);
  }
  return false;
}

Answer greedy_answer(Session& s, const Tokenizer& tok, std::vector<float>& logits, const GenerateOptions& opt) {
  Answer a;
  const int V = static_cast<int>(logits.size());
  int prev = -1;
  for (int step = 0; step < opt.max_new; ++step) {
    const int id = Sampler::argmax(logits.data(), V);
    a.ids.push_back(id);
    if (opt.on_token) opt.on_token(step, id);
    if (tok.is_eog(id)) break;
    a.text += tok.decode_piece(prev, id);
    prev = id;
    if (opt.stop_at_newline && answer_ends(a.text)) break;
    if (step + 1 < opt.max_new) s.decode(id, logits.data());
  }
  a.text = utf8::replace_invalid(a.text);  // an answer may stop inside a character
  return a;
}

}  // namespace ckv::eval
