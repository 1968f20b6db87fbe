#include "tokenizer/prompt.h"

#include "util/error.h"

namespace ckv {

ChatTemplate chat_template_of(const TokenizerData& v, const std::string& name, const std::string& model_path) {
  const std::string bos_text = v.bos >= 0 ? v.tokens[v.bos] : "";
  return make_chat_template(v.chat_template, bos_text, name,
                            v.chat_template_source.empty() ? model_path : v.chat_template_source);
}

std::vector<int> encode_prompt(const Tokenizer& tok, const std::string& text) {
  std::vector<int> ids = tok.encode(text, true);
  if (tok.add_bos() && tok.bos() >= 0 && (ids.empty() || ids[0] != tok.bos())) ids.insert(ids.begin(), tok.bos());
  if (ids.empty()) {
    if (tok.bos() < 0) throw Error("empty prompt and the model has no BOS token to start from: pass -p TEXT");
    ids.push_back(tok.bos());
  }
  return ids;
}

}  // namespace ckv
