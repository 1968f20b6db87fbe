// Text <-> token ids, exactly as the model's reference tokenizer does it.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace ckv {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of text. No BOS is added here (callers add it when the model's
  // add_bos says so). With parse_special, the text of special/added tokens
  // (control and user-defined tokens such as <|im_start|>) is matched as that
  // token wherever it appears.
  virtual std::vector<int> encode(std::string_view text, bool parse_special = true) const = 0;
  // Raw bytes of one token (byte-level decoded; SPM "▁" -> " ", <0xNN> -> byte).
  // Control tokens give their text (e.g. "<|im_end|>").
  virtual std::string piece(int id) const = 0;
  // Concatenated bytes of the pieces. SPM: a leading space right after BOS is
  // dropped, as SentencePiece and llama2.c do.
  std::string decode(const std::vector<int>& ids) const;
  // What id adds to decode() when it follows prev (-1: first token). BPE:
  // piece(id). SPM, as SentencePiece decodes: control tokens (BOS, EOS) add
  // nothing, and with add_space_prefix the leading space of the first token or
  // of one right after a control token is dropped.
  virtual std::string decode_piece(int prev, int id) const { return piece(id); }

  int n_vocab() const { return static_cast<int>(data_.tokens.size()); }
  const TokenizerData& data() const { return data_; }
  int bos() const { return data_.bos; }
  int eos() const { return data_.eos; }
  bool add_bos() const { return data_.add_bos; }
  bool is_eog(int id) const;
  // Id of a token text, or -1.
  int find(std::string_view token_text) const;

 protected:
  explicit Tokenizer(TokenizerData d);  // fills types, builds the text index
  TokenizerData data_;
  std::unordered_map<std::string, int> ids_;  // token text -> first id with it
};

// Builds the tokenizer for data.kind; throws ckv::Error for an unknown kind or
// pre-tokenizer (naming it) or inconsistent data.
std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerData& data);

// How many of the last ids lie wholly within the last n_bytes bytes of
// their text (pieces counted from the end; a token that straddles the
// boundary is not one of them). With n_bytes = what follows the final user
// message in a chat rendering (ChatTemplate::render's user_end), it is the
// template suffix's token count (--kv-window-at user).
int tail_tokens(const Tokenizer& tok, const std::vector<int>& ids, size_t n_bytes);

// Streaming decoder: feed token ids, get back only complete UTF-8 text, so a
// character split across tokens is printed once it is whole.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int id);  // text that became complete
  std::string flush();       // whatever is left (possibly invalid UTF-8)
  // Token already shown before the first push (e.g. the prompt's last), so
  // the first piece is decoded in context (SPM leading-space rule).
  void set_prev(int id) { prev_ = id; }

 private:
  const Tokenizer& tok_;
  std::string pending_;
  int prev_ = -1;
};

// Readers for tokenizer files that are not inside the model file.
// llama2.c tokenizer.bin/tok512.bin: BOS 1, EOS 2, add_space_prefix.
TokenizerData read_llama2c_tokenizer(const std::string& path, int vocab_size);
// Hugging Face tokenizer.json (+ tokenizer_config.json beside it for bos/eos,
// add_bos and chat_template).
TokenizerData read_hf_tokenizer(const std::string& dir);

}  // namespace ckv
