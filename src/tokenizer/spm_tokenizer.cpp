// SentencePiece-style BPE (Llama 2, Mistral, llama2.c's tok512), as llama.cpp's
// SPM tokenizer and llama2.c's encode() run it: spaces become "▁", symbols start
// as UTF-8 characters, the adjacent pair whose concatenation is a token with the
// highest score merges first, leftovers fall back to <0xNN> byte tokens.
#include <cstdio>
#include <unordered_map>

#include "tokenizer/bpe_merge.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace ckv {
namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581 "▁"

std::string escape_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 2);
  for (char c : s) {
    if (c == ' ') out += kSpace;
    else out += c;
  }
  return out;
}

// "<0xNN>" -> NN, else -1.
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(const TokenizerData& d) : Tokenizer(d), special_(data_) {
    data_.scores.resize(data_.tokens.size(), 0.0f);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      byte_ids_[b] = find(name);
    }
    // Vocabularies from tokenizer.json merge by rank, like HF's BPE model.
    ranks_.reserve(data_.merges.size());
    for (size_t i = 0; i < data_.merges.size(); ++i) ranks_.emplace(data_.merges[i], static_cast<int>(i));
  }

  std::vector<int> encode(std::string_view text, bool parse_special) const override {
    std::vector<int> out;
    bool prev_special = true;  // the text's start counts as after a special token
    for (const Fragment& f : special_.split(text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      std::string s = (data_.add_space_prefix && prev_special) ? kSpace : std::string();
      s += escape_spaces(f.text);
      encode_text(s, out);
      prev_special = false;
    }
    return out;
  }

  std::string piece(int id) const override {
    if (id < 0 || id >= n_vocab()) return "";
    const std::string& t = data_.tokens[id];
    switch (data_.types[id]) {
      case TokenType::Control:
      case TokenType::UserDefined:
      case TokenType::Unknown:
        return t;
      case TokenType::Byte: {
        int b = parse_byte_token(t);
        if (b >= 0) return std::string(1, static_cast<char>(b));
        break;
      }
      default:
        break;
    }
    std::string out;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += t[i++];
      }
    }
    return out;
  }

  std::string decode_piece(int prev, int id) const override {
    if (id >= 0 && id < n_vocab() && data_.types[id] == TokenType::Control) return "";
    std::string p = piece(id);
    bool at_start = prev < 0 || (prev < n_vocab() && data_.types[prev] == TokenType::Control);
    if (data_.add_space_prefix && at_start && !p.empty() && p[0] == ' ') p.erase(0, 1);
    return p;
  }

 private:
  void encode_text(std::string_view s, std::vector<int>& out) const {
    std::vector<size_t> lens;
    for (size_t i = 0; i < s.size();) {
      size_t n = utf8::char_len(s, i);
      lens.push_back(n);
      i += n;
    }
    std::string key;
    auto score = [&](std::string_view a, std::string_view b, double& sc) {
      if (!ranks_.empty()) {
        key.assign(a);
        key += ' ';
        key += b;
        auto it = ranks_.find(key);
        if (it == ranks_.end()) return false;
        sc = -static_cast<double>(it->second);
        return true;
      }
      key.assign(a);
      key += b;
      int id = find(key);
      if (id < 0) return false;
      sc = data_.scores[id];
      return true;
    };
    for (const Symbol& sym : bpe_merge(s, lens, score)) {
      int id = find(s.substr(sym.start, sym.len));
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (size_t i = 0; i < sym.len; ++i) {
        int b = data_.byte_fallback ? byte_ids_[static_cast<unsigned char>(s[sym.start + i])] : -1;
        if (b >= 0) {
          out.push_back(b);
        } else if (data_.unk >= 0) {
          out.push_back(data_.unk);
          if (!data_.byte_fallback) break;  // one UNK per unknown character
        }
      }
    }
  }

  SpecialMatcher special_;
  int byte_ids_[256];
  std::unordered_map<std::string, int> ranks_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(const TokenizerData& d) { return std::make_unique<SpmTokenizer>(d); }

}  // namespace ckv
