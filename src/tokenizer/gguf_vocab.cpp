#include "tokenizer/gguf_vocab.h"

#include <algorithm>

#include "util/error.h"

namespace ckv {

void add_known_eog(TokenizerData& d) {
  static const char* const kTexts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>",         "<end_of_turn>",
                                       "<|endoftext|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>"};
  auto add = [&](int id) {
    if (id >= 0 && std::find(d.eog.begin(), d.eog.end(), id) == d.eog.end()) d.eog.push_back(id);
  };
  add(d.eos);
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    if (i < d.types.size() && d.types[i] != TokenType::Control) continue;
    for (const char* t : kTexts)
      if (d.tokens[i] == t) add(static_cast<int>(i));
  }
}

TokenizerData read_gguf_tokenizer(const GGUFFile& f) {
  TokenizerData d;
  const std::string path = f.path();
  if (!f.has("tokenizer.ggml.model")) return d;
  std::string model = f.get_str("tokenizer.ggml.model");
  if (model == "gpt2") {
    d.kind = "bpe";
  } else if (model == "llama") {
    d.kind = "spm";
  } else {
    throw file_error(path, "tokenizer.ggml.model '" + model + "' is not supported (known: gpt2, llama)");
  }

  d.tokens = f.get_str_array("tokenizer.ggml.tokens");
  const size_t n = d.tokens.size();
  auto check_len = [&](const char* key, size_t got) {
    if (got != n)
      throw file_error(path, std::string(key) + " has " + std::to_string(got) + " entries, expected " +
                                 std::to_string(n) + " (tokenizer.ggml.tokens)");
  };
  if (f.has("tokenizer.ggml.scores")) {
    auto s = f.get_float_array("tokenizer.ggml.scores");
    check_len("tokenizer.ggml.scores", s.size());
    d.scores.assign(s.begin(), s.end());
  }
  d.types.assign(n, TokenType::Normal);
  if (f.has("tokenizer.ggml.token_type")) {
    auto t = f.get_int_array("tokenizer.ggml.token_type");
    check_len("tokenizer.ggml.token_type", t.size());
    for (size_t i = 0; i < n; ++i) {
      if (t[i] < 0 || t[i] > 6)
        throw file_error(path, "tokenizer.ggml.token_type[" + std::to_string(i) + "] = " + std::to_string(t[i]) +
                                   ", expected 0..6");
      d.types[i] = static_cast<TokenType>(t[i]);
    }
  }
  if (f.has("tokenizer.ggml.merges")) d.merges = f.get_str_array("tokenizer.ggml.merges");
  if (d.kind == "bpe" && d.merges.empty()) throw file_error(path, "tokenizer.ggml.merges missing for a gpt2 tokenizer");

  if (d.kind == "bpe") {
    std::string pre = f.get_str("tokenizer.ggml.pre", "default");
    if (pre == "default" || pre == "gpt2" || pre == "gpt-2") {
      d.pre = "gpt2";
    } else if (pre == "smollm") {
      d.pre = "smollm";
    } else if (pre == "llama-bpe" || pre == "llama3") {
      d.pre = "llama3";
      d.ignore_merges = true;  // as in Llama 3's tokenizer.json
    } else if (pre == "qwen2") {
      d.pre = "qwen2";
    } else {
      throw file_error(path, "tokenizer.ggml.pre '" + pre +
                                 "' is not supported (known: default, gpt2, smollm, llama-bpe, qwen2)");
    }
  }

  auto id_of = [&](const char* key) {
    int64_t id = f.get_int(key, -1);
    if (id < -1 || id >= static_cast<int64_t>(n))
      throw file_error(path, std::string(key) + " = " + std::to_string(id) + " outside the vocabulary of " +
                                 std::to_string(n));
    return static_cast<int>(id);
  };
  d.bos = id_of("tokenizer.ggml.bos_token_id");
  d.eos = id_of("tokenizer.ggml.eos_token_id");
  d.unk = id_of("tokenizer.ggml.unknown_token_id");
  d.pad = id_of("tokenizer.ggml.padding_token_id");
  // llama.cpp's defaults when the file does not say.
  bool spm = d.kind == "spm";
  d.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", spm || d.pre == "llama3");
  d.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", spm);
  d.byte_fallback = true;
  d.chat_template = f.get_str("tokenizer.chat_template", "");
  d.source = path;
  d.chat_template_source = path + " (tokenizer.chat_template)";

  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int id = id_of(key);
    if (id >= 0 && std::find(d.eog.begin(), d.eog.end(), id) == d.eog.end()) d.eog.push_back(id);
  }
  add_known_eog(d);
  return d;
}

}  // namespace ckv
