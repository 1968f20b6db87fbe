// Needle sets for needle-in-a-haystack probes (DESIGN.md 2.4): a sentence to
// insert, a question about it and the answer span inside it. Read from JSONL
// (`needle`, `question`, and `answer` or the authors' `real_needle`), or the
// two sets compiled into the program: one for calibration (identify-heads)
// and a different one for evaluation (eval niah), so a profile is never
// measured on the needles it is judged by.
#pragma once
#include <string>
#include <vector>

namespace ckv::eval {

struct Needle {
  std::string needle;    // the sentence inserted into the haystack
  std::string question;  // asked after the context
  std::string answer;    // the span of `needle` that answers it
};

// One object a line; blank lines are skipped; other fields are ignored.
// Throws ckv::Error "FILE:LINE: ..." for bad JSON, a missing or non-string
// field, or an answer that is not inside its needle (compared ignoring case);
// "FILE: ..." when it cannot be read or holds no needle.
std::vector<Needle> read_needles(const std::string& path);

// The compiled-in sets (disjoint; see needles.cpp).
const std::vector<Needle>& calibration_needles();
const std::vector<Needle>& evaluation_needles();

// JSONL text of a set, readable by read_needles (for --dump and provenance).
std::string needles_jsonl(const std::vector<Needle>& set);

}  // namespace ckv::eval
