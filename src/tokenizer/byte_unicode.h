// GPT-2's reversible byte <-> printable-character mapping used by byte-level
// BPE vocabularies (" " is stored as "Ġ", "\n" as "Ċ", ...).
#pragma once
#include <string>
#include <string_view>

namespace ckv {

// UTF-8 text of the character that stands for byte b.
const std::string& byte_to_unicode(unsigned char b);
// Maps every byte of raw through byte_to_unicode.
std::string bytes_to_unicode(std::string_view raw);
// Inverse: characters outside the mapping are kept as their UTF-8 bytes.
std::string unicode_to_bytes(std::string_view text);

}  // namespace ckv
