// llama2.c tokenizer.bin: int32 max_token_length, then per token float32
// score, int32 byte length, bytes. Spaces are stored raw; they become "▁"
// here so every SPM vocabulary looks the same to the tokenizer.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ckv {

TokenizerData read_llama2c_tokenizer(const std::string& path, int vocab_size) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw file_error(path, "cannot open llama2.c tokenizer");
  std::string buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (vocab_size < 0) vocab_size = -vocab_size;  // negative: unshared classifier flag
  size_t pos = 0;
  auto take = [&](void* dst, size_t n, const std::string& what) {
    if (buf.size() - pos < n)
      throw file_error(path, "truncated llama2.c tokenizer: " + what + " needs " + std::to_string(n) +
                                 " bytes at offset " + std::to_string(pos) + ", file has " +
                                 std::to_string(buf.size()));
    std::memcpy(dst, buf.data() + pos, n);
    pos += n;
  };
  int32_t max_len = 0;
  take(&max_len, 4, "header");
  if (max_len <= 0) throw file_error(path, "max_token_length " + std::to_string(max_len) + " is not positive");

  TokenizerData d;
  d.kind = "spm";
  for (int i = 0; pos < buf.size(); ++i) {
    float score;
    int32_t len;
    take(&score, 4, "score of token " + std::to_string(i));
    take(&len, 4, "length of token " + std::to_string(i));
    if (len < 0 || len > max_len)
      throw file_error(path, "token " + std::to_string(i) + " length " + std::to_string(len) +
                                 " outside 0.." + std::to_string(max_len));
    // Checked before allocating: max_token_length is the file's own claim.
    if (buf.size() - pos < static_cast<size_t>(len))
      throw file_error(path, "truncated llama2.c tokenizer: text of token " + std::to_string(i) + " needs " +
                                 std::to_string(len) + " bytes at offset " + std::to_string(pos) + ", file has " +
                                 std::to_string(buf.size()));
    std::string text(static_cast<size_t>(len), '\0');
    take(text.data(), static_cast<size_t>(len), "text of token " + std::to_string(i));
    std::string escaped;
    for (char c : text) escaped += (c == ' ') ? std::string("\xE2\x96\x81") : std::string(1, c);
    d.tokens.push_back(std::move(escaped));
    d.scores.push_back(score);
  }
  if (static_cast<int>(d.tokens.size()) != vocab_size)
    throw file_error(path, "tokenizer has " + std::to_string(d.tokens.size()) + " tokens, the model's vocab_size is " +
                               std::to_string(vocab_size));
  if (vocab_size < 3) throw file_error(path, "tokenizer needs at least <unk>, <s>, </s>");

  d.types.assign(d.tokens.size(), TokenType::Normal);
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    const std::string& t = d.tokens[i];
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') d.types[i] = TokenType::Byte;
  }
  // llama2.c stores "\n<s>\n"; the usual names keep them findable.
  d.tokens[0] = "<unk>";
  d.tokens[1] = "<s>";
  d.tokens[2] = "</s>";
  d.types[0] = TokenType::Unknown;
  d.types[1] = d.types[2] = TokenType::Control;
  d.unk = 0;
  d.bos = 1;
  d.eos = 2;
  d.eog = {2};
  d.add_bos = true;
  d.add_space_prefix = true;
  d.byte_fallback = true;
  d.source = path;
  return d;
}

}  // namespace ckv
