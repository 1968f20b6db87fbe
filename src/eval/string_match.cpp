#include "eval/string_match.h"

#include <algorithm>

namespace ckv::eval {

namespace {
std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}
}  // namespace

double string_match_all(const std::string& prediction, const std::vector<std::string>& refs) {
  if (refs.empty()) return 0.0;
  const std::string p = lower(prediction);
  size_t found = 0;
  for (const auto& r : refs)
    if (p.find(lower(r)) != std::string::npos) ++found;
  return 100.0 * static_cast<double>(found) / static_cast<double>(refs.size());
}

}  // namespace ckv::eval
