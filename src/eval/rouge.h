// ROUGE-1 recall of a reference against a response (DESIGN.md 2.4 step 7,
// the NIAH score of DESIGN.md 6): words are the maximal runs of [a-z0-9]
// after lower-casing; recall = matched reference words / reference words,
// each response word matched at most once.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace ckv::eval {

// Lower-cased maximal runs of [a-z0-9] (ASCII; other bytes separate words).
std::vector<std::string> rouge_words(std::string_view text);

// In [0, 1]; 0 when the reference has no words.
double rouge1_recall(std::string_view reference, std::string_view response);

}  // namespace ckv::eval
