// The tokenizer's data as read from a model file, independent of its format.
#pragma once
#include <string>
#include <vector>

namespace ckv {

// GGUF tokenizer.ggml.token_type values.
enum class TokenType : int { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct TokenizerData {
  // "bpe": byte-level BPE with merges (GPT-2 family: SmolLM2, Llama 3, Qwen2);
  // "spm": SentencePiece-style BPE by merge scores with byte fallback (Llama 2,
  // Mistral, llama2.c's tok512). Empty: the model has no tokenizer.
  std::string kind;
  // Pre-tokenizer for "bpe": "gpt2", "smollm" (digits one by one, then GPT-2),
  // "llama3", "qwen2". Unknown names are refused by the tokenizer.
  std::string pre = "gpt2";
  // pre == "custom": the Split regexes of a tokenizer.json, applied in turn
  // (each splits the pieces the previous one produced), then byte-level.
  std::vector<std::string> pre_regexes;
  // HF BPE ignore_merges (Llama 3): a whole pre-token found in the vocab is
  // taken as is, before any merge.
  bool ignore_merges = false;
  std::vector<std::string> tokens;  // as stored: byte-level (Ġ...) or SPM (▁...)
  std::vector<float> scores;        // spm merge scores
  std::vector<TokenType> types;     // per token; Normal when absent
  std::vector<std::string> merges;  // bpe: "left right", in rank order
  int bos = -1, eos = -1, unk = -1, pad = -1;
  std::vector<int> eog;  // end-of-generation ids (eos, eot, <|im_end|>, ...)
  bool add_bos = false;
  bool add_space_prefix = false;  // spm: prepend a space (llama2.c, Llama 2)
  bool byte_fallback = true;      // spm: unknown bytes become <0xNN>
  std::string chat_template;      // Jinja text from the model, may be empty
  // Where the vocabulary and the chat template were read from (file, or
  // "file (key)"), for error messages; empty for data made in code.
  std::string source, chat_template_source;
};

}  // namespace ckv
