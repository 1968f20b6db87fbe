// Finds special/added tokens (control, user-defined, unknown) inside text, so
// "<|im_start|>" typed in a prompt becomes that token rather than its letters.
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace ckv {

struct Fragment {
  std::string_view text;  // raw text to tokenize (when token < 0)
  int token = -1;         // a matched special token
};

class SpecialMatcher {
 public:
  explicit SpecialMatcher(const TokenizerData& d);
  // Leftmost-longest matching, as HF tokenizers' added-token split does.
  // Without parse_special only user-defined tokens match (llama.cpp).
  std::vector<Fragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string text;
    int id;
    bool user_defined;
  };
  std::array<std::vector<Entry>, 256> by_first_;  // longest first
};

}  // namespace ckv
