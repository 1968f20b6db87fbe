// Pre-tokenizers of byte-level BPE: split text into pieces with the model
// family's regex (PCRE2, Unicode properties) before BPE runs on each piece.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ckv {

// The pre-tokenizer regexes as the families' tokenizer.json give them.
extern const char* const kGpt2Regex;
extern const char* const kLlama3Regex;
extern const char* const kQwen2Regex;
extern const char* const kDigitsRegex;  // every digit on its own (HF Digits)

class Regex;  // compiled PCRE2 pattern

class PreTokenizer {
 public:
  // name: "gpt2", "smollm", "llama3", "qwen2", or "custom" with `custom`
  // regexes applied in turn. Throws ckv::Error naming an unknown name or a
  // pattern PCRE2 refuses.
  PreTokenizer(const std::string& name, const std::vector<std::string>& custom = {});
  ~PreTokenizer();
  // Appends the pieces of text (views into it) to out; their concatenation
  // is text. Matches and the text between them both become pieces
  // (HF Split "Isolated").
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  std::vector<std::shared_ptr<const Regex>> stages_;
};

// Known regexes' pre-tokenizer name ("llama3", "qwen2", "gpt2"), or "".
std::string pre_name_of_regex(const std::string& pattern);

}  // namespace ckv
