#include "tokenizer/byte_unicode.h"

#include <array>
#include <unordered_map>

#include "tokenizer/utf8.h"

namespace ckv {
namespace {

struct Tables {
  std::array<std::string, 256> fwd;
  std::unordered_map<uint32_t, unsigned char> back;  // code point -> byte
  Tables() {
    // Printable Latin-1 bytes map to themselves; the rest to 256, 257, ...
    auto keeps = [](int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = keeps(b) ? static_cast<uint32_t>(b) : next++;
      fwd[b] = utf8::encode(cp);
      back[cp] = static_cast<unsigned char>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_to_unicode(unsigned char b) { return tables().fwd[b]; }

std::string bytes_to_unicode(std::string_view raw) {
  const auto& t = tables();
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) out += t.fwd[static_cast<unsigned char>(c)];
  return out;
}

std::string unicode_to_bytes(std::string_view text) {
  const auto& t = tables();
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    auto c0 = static_cast<unsigned char>(text[i]);
    size_t n = utf8::seq_len(c0);
    if (i + n > text.size()) n = 1;
    uint32_t cp = c0;
    if (n == 2) cp = ((c0 & 0x1F) << 6) | (text[i + 1] & 0x3F);
    if (n == 3) cp = ((c0 & 0x0F) << 12) | ((text[i + 1] & 0x3F) << 6) | (text[i + 2] & 0x3F);
    if (n == 4) cp = ((c0 & 0x07) << 18) | ((text[i + 1] & 0x3F) << 12) | ((text[i + 2] & 0x3F) << 6) | (text[i + 3] & 0x3F);
    // Mapped characters are all below U+0200: one or two bytes, well formed.
    bool ok = (n == 1 && c0 < 0x80) || n == 2;
    auto it = ok ? t.back.find(cp) : t.back.end();
    if (it != t.back.end()) {
      out += static_cast<char>(it->second);
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace ckv
