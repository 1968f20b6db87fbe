#include "eval/rouge.h"

#include <unordered_map>

namespace ckv::eval {

std::vector<std::string> rouge_words(std::string_view text) {
  std::vector<std::string> words;
  std::string cur;
  for (char ch : text) {
    char c = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      cur += c;
    } else if (!cur.empty()) {
      words.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

double rouge1_recall(std::string_view reference, std::string_view response) {
  const std::vector<std::string> ref = rouge_words(reference);
  if (ref.empty()) return 0.0;
  // Clipped counts: a response word can match as many reference words as it occurs.
  std::unordered_map<std::string, int> avail;
  for (auto& w : rouge_words(response)) ++avail[w];
  int matched = 0;
  for (auto& w : ref) {
    auto it = avail.find(w);
    if (it != avail.end() && it->second > 0) {
      --it->second;
      ++matched;
    }
  }
  return static_cast<double>(matched) / static_cast<double>(ref.size());
}

}  // namespace ckv::eval
