#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace ckv {

Tokenizer::Tokenizer(TokenizerData d) : data_(std::move(d)) {
  data_.types.resize(data_.tokens.size(), TokenType::Normal);
  ids_.reserve(data_.tokens.size());
  for (size_t i = 0; i < data_.tokens.size(); ++i) ids_.emplace(data_.tokens[i], static_cast<int>(i));
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string out;
  int prev = -1;
  for (int id : ids) {
    out += decode_piece(prev, id);
    prev = id;
  }
  return out;
}

int tail_tokens(const Tokenizer& tok, const std::vector<int>& ids, size_t n_bytes) {
  size_t bytes = 0;
  int n = 0;
  for (size_t i = ids.size(); i-- > 0; ++n) {
    bytes += tok.piece(ids[i]).size();
    if (bytes > n_bytes) break;  // token i holds text of the user message
  }
  return n;
}

bool Tokenizer::is_eog(int id) const {
  if (id < 0) return false;
  return id == data_.eos || std::find(data_.eog.begin(), data_.eog.end(), id) != data_.eog.end();
}

int Tokenizer::find(std::string_view token_text) const {
  auto it = ids_.find(std::string(token_text));
  return it == ids_.end() ? -1 : it->second;
}

static std::unique_ptr<Tokenizer> build_tokenizer(const TokenizerData& data);

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerData& data) {
  // Every problem found here is one of the file the data came from: name it.
  try {
    return build_tokenizer(data);
  } catch (const Error& e) {
    if (data.source.empty()) throw;
    throw file_error(data.source, e.what());
  }
}

static std::unique_ptr<Tokenizer> build_tokenizer(const TokenizerData& data) {
  if (data.kind.empty()) throw Error("the model has no tokenizer");
  if (data.kind != "bpe" && data.kind != "spm")
    throw Error("unknown tokenizer kind '" + data.kind + "' (known: bpe, spm)");
  if (data.tokens.empty()) throw Error("tokenizer (" + data.kind + "): empty vocabulary");
  int n = static_cast<int>(data.tokens.size());
  auto check_id = [&](int id, const char* what) {
    if (id < -1 || id >= n)
      throw Error(std::string("tokenizer: ") + what + " id " + std::to_string(id) + " outside the vocabulary of " +
                  std::to_string(n));
  };
  check_id(data.bos, "BOS");
  check_id(data.eos, "EOS");
  check_id(data.unk, "UNK");
  check_id(data.pad, "PAD");
  for (int id : data.eog) check_id(id, "end-of-generation");
  if (!data.types.empty() && data.types.size() != data.tokens.size())
    throw Error("tokenizer: " + std::to_string(data.types.size()) + " token types for " + std::to_string(n) +
                " tokens");
  if (!data.scores.empty() && data.scores.size() != data.tokens.size())
    throw Error("tokenizer: " + std::to_string(data.scores.size()) + " scores for " + std::to_string(n) + " tokens");
  if (data.kind == "bpe") return make_bpe_tokenizer(data);
  return make_spm_tokenizer(data);
}

std::string StreamDecoder::push(int id) {
  pending_ += tok_.decode_piece(prev_, id);
  prev_ = id;
  size_t n = utf8::complete_prefix(pending_);
  std::string out = pending_.substr(0, n);
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace ckv
