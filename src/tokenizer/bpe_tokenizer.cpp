// Byte-level BPE (GPT-2 family: SmolLM2, Llama 3, Qwen2), as HF tokenizers
// runs it: added tokens split out first, the family's regex pre-tokenizer,
// bytes mapped to printable characters, then merges by rank within each piece.
#include <mutex>
#include <unordered_map>

#include "tokenizer/bpe_merge.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace ckv {
namespace {

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(const TokenizerData& d) : Tokenizer(d), pre_(d.pre, d.pre_regexes), special_(data_) {
    ranks_.reserve(data_.merges.size());
    for (size_t i = 0; i < data_.merges.size(); ++i) {
      const std::string& m = data_.merges[i];
      // "left right"; the split is at the first space after the first byte.
      if (m.find(' ', 1) == std::string::npos)
        throw Error("tokenizer: merge " + std::to_string(i) + " '" + m + "' is not 'left right'");
      ranks_.emplace(m, static_cast<int>(i));
    }
    for (int b = 0; b < 256; ++b) byte_ids_[b] = find(byte_to_unicode(static_cast<unsigned char>(b)));
  }

  std::vector<int> encode(std::string_view text, bool parse_special) const override {
    std::vector<int> out;
    std::vector<std::string_view> pieces;
    std::string prefixed;
    for (const Fragment& f : special_.split(text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      std::string_view t = f.text;
      if (data_.add_space_prefix && t[0] != ' ') {  // ByteLevel add_prefix_space
        prefixed.assign(1, ' ');
        prefixed.append(t);
        t = prefixed;
      }
      pieces.clear();
      pre_.split(t, pieces);
      for (auto p : pieces) encode_piece(p, out);
    }
    return out;
  }

  std::string piece(int id) const override {
    if (id < 0 || id >= n_vocab()) return "";
    TokenType t = data_.types[id];
    if (t == TokenType::Control || t == TokenType::UserDefined) return data_.tokens[id];
    return unicode_to_bytes(data_.tokens[id]);
  }

 private:
  void encode_piece(std::string_view raw, std::vector<int>& out) const {
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      auto it = cache_.find(std::string(raw));
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int> ids = bpe(raw);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() > 200000) cache_.clear();  // bound memory on huge inputs
    cache_.emplace(std::string(raw), std::move(ids));
  }

  std::vector<int> bpe(std::string_view raw) const {
    std::string word = bytes_to_unicode(raw);
    std::vector<int> ids;
    if (data_.ignore_merges) {
      int id = find(word);
      if (id >= 0) return {id};
    }
    std::vector<size_t> lens;
    lens.reserve(raw.size());
    for (char c : raw) lens.push_back(byte_to_unicode(static_cast<unsigned char>(c)).size());
    std::string key;
    auto score = [&](std::string_view a, std::string_view b, double& s) {
      key.assign(a);
      key += ' ';
      key += b;
      auto it = ranks_.find(key);
      if (it == ranks_.end()) return false;
      s = -static_cast<double>(it->second);  // lower rank merges first
      return true;
    };
    std::vector<Symbol> syms = bpe_merge(word, lens, score);
    for (const Symbol& s : syms) {
      std::string_view text = std::string_view(word).substr(s.start, s.len);
      int id = find(text);
      if (id >= 0) {
        ids.push_back(id);
        continue;
      }
      // Not in the vocabulary (a vocab without every byte): per byte, else UNK.
      std::string bytes = unicode_to_bytes(text);
      for (char c : bytes) {
        int b = byte_ids_[static_cast<unsigned char>(c)];
        if (b >= 0) ids.push_back(b);
        else if (data_.unk >= 0) ids.push_back(data_.unk);
      }
    }
    return ids;
  }

  PreTokenizer pre_;
  SpecialMatcher special_;
  std::unordered_map<std::string, int> ranks_;
  int byte_ids_[256];
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const TokenizerData& d) { return std::make_unique<BpeTokenizer>(d); }

}  // namespace ckv
