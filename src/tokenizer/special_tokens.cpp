#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace ckv {

SpecialMatcher::SpecialMatcher(const TokenizerData& d) {
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    TokenType t = i < d.types.size() ? d.types[i] : TokenType::Normal;
    if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
    const std::string& s = d.tokens[i];
    if (s.empty()) continue;
    by_first_[static_cast<unsigned char>(s[0])].push_back({s, static_cast<int>(i), t == TokenType::UserDefined});
  }
  for (auto& v : by_first_) {
    // Longest first; equal texts keep the lowest id.
    std::stable_sort(v.begin(), v.end(), [](const Entry& a, const Entry& b) { return a.text.size() > b.text.size(); });
  }
}

std::vector<Fragment> SpecialMatcher::split(std::string_view text, bool parse_special) const {
  std::vector<Fragment> out;
  size_t start = 0;  // first byte not yet emitted
  size_t i = 0;
  while (i < text.size()) {
    const Entry* hit = nullptr;
    for (const Entry& e : by_first_[static_cast<unsigned char>(text[i])]) {
      if (!parse_special && !e.user_defined) continue;
      if (text.compare(i, e.text.size(), e.text) == 0) {
        hit = &e;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({{}, hit->id});
    i += hit->text.size();
    start = i;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

}  // namespace ckv
