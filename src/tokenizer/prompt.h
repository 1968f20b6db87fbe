// A prompt as `run` reads it, shared with the server: the model's chat
// template for a conversation, and the token ids of a text with BOS handling.
#pragma once
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ckv {

// The chat template of a vocabulary (its tokenizer.chat_template text; `name`
// overrides the family, e.g. --chat-template). `model_path` names the source
// in errors when the vocabulary does not say where its template came from.
ChatTemplate chat_template_of(const TokenizerData& v, const std::string& name, const std::string& model_path);

// Token ids of a prompt text: special tokens parsed, BOS first when the model
// adds one; an empty text reads as BOS alone (an error without a BOS token).
std::vector<int> encode_prompt(const Tokenizer& tok, const std::string& text);

}  // namespace ckv
