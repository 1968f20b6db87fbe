// The haystack of needle-in-a-haystack and RULER-style probes (DESIGN.md 2.4
// step 1): one .txt file, or a directory of .txt files read in name order and
// joined as they are (no separator, as the reference NIAH harness does).
// Licence and read-me files (LICENSE*, LICENCE*, COPYING*, README*) of a
// directory are not essay text and are skipped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ckv::eval {

// The joined text and the files it came from. Throws ckv::Error naming the
// path when it does not exist, holds no .txt file, or only blank text.
struct HaystackText {
  std::string text;
  std::vector<std::string> files;
};
HaystackText read_haystack(const std::string& path);

// The haystack tokenized once, without special tokens. A text shorter than
// min_tokens is repeated until it is long enough (as the reference harness
// reads its files again); `repeats` says how often it was read.
struct Haystack {
  std::string path;
  std::vector<std::string> files;
  std::string text;
  std::vector<int> tokens;
  int repeats = 1;
  static Haystack load(const std::string& path, const Tokenizer& tok, int64_t min_tokens = 0);
};

}  // namespace ckv::eval
