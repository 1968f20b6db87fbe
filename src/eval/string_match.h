// RULER's string_match_all: per sample, the fraction of the reference
// strings found (case-insensitively, as substrings) in the prediction, x 100.
#pragma once
#include <string>
#include <vector>

namespace ckv::eval {

// In [0, 100]; 0 when refs is empty.
double string_match_all(const std::string& prediction, const std::vector<std::string>& refs);

}  // namespace ckv::eval
