// Small UTF-8 helpers shared by the tokenizers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ckv::utf8 {

// Length a sequence claims from its first byte (1 for continuation or invalid
// bytes, so any byte string splits into "characters" without loss).
inline size_t seq_len(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

// Bytes of the character at s[i]: seq_len when the continuation bytes are
// there, else 1 (a broken sequence splits into single bytes).
inline size_t char_len(std::string_view s, size_t i) {
  size_t n = seq_len(static_cast<unsigned char>(s[i]));
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}

std::string encode(uint32_t cp);

// Length of the longest prefix of s that does not end inside a UTF-8 sequence
// that more bytes could still complete. Invalid bytes count as complete: they
// can never become valid, so holding them back would only delay them.
size_t complete_prefix(std::string_view s);

// s with every ill-formed sequence replaced by U+FFFD, one per maximal
// subpart (the Unicode practice Python's errors='replace' follows: "\xE2\x82"
// then "x" gives one U+FFFD then "x"). *n_replaced (when given) counts them.
std::string replace_invalid(std::string_view s, size_t* n_replaced = nullptr);

}  // namespace ckv::utf8
