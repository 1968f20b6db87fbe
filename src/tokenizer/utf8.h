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

std::string encode(uint32_t cp);

// Length of the longest prefix of s that does not end inside a UTF-8 sequence
// that more bytes could still complete. Invalid bytes count as complete: they
// can never become valid, so holding them back would only delay them.
size_t complete_prefix(std::string_view s);

}  // namespace ckv::utf8
