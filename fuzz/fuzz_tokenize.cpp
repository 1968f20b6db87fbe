// The tokenizers on any bytes: SmolLM2's byte-level BPE (with each family's
// pre-tokenizer: smollm, gpt2, llama3, qwen2) and tok512's SentencePiece BPE.
// First byte: which tokenizer (low 3 bits) and whether special-token text is
// parsed (bit 3); the rest is the text. For valid UTF-8, byte-level BPE must
// give the text back, decode(encode(s)) == s, whenever its vocabulary has a
// token for every byte of s.
#include "fuzz_util.h"
#include "model/gguf.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/utf8.h"

namespace {

std::vector<std::unique_ptr<ckv::Tokenizer>> toks;  // byte-level ones first
size_t n_bpe = 0;
// Bytes SmolLM2's vocabulary has no byte token for (0x04, 0x06, 0x13, ...):
// they become UNK, as in the reference tokenizer, so text with them cannot
// come back.
bool unspellable[256];

// Whether s is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  const std::string smol = CKV_SHARED_DIR "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::error_code ec;
  if (std::filesystem::exists(smol, ec)) {
    ckv::GGUFFile f(smol);
    ckv::TokenizerData d = ckv::read_gguf_tokenizer(f);
    for (const char* pre : {"smollm", "gpt2", "llama3", "qwen2"}) {
      ckv::TokenizerData v = d;
      v.pre = pre;
      v.ignore_merges = v.pre == "llama3";
      toks.push_back(ckv::make_tokenizer(v));
    }
  }
  n_bpe = toks.size();
  for (int b = 0; b < 256 && n_bpe; ++b) unspellable[b] = toks[0]->find(ckv::byte_to_unicode(uint8_t(b))) < 0;
  toks.push_back(ckv::make_tokenizer(ckv::read_llama2c_tokenizer(CKV_SOURCE_DIR "/models/stories260k/tok512.bin", 512)));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t which = (data[0] & 7) % toks.size();
  const bool special = data[0] & 8;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const ckv::Tokenizer& t = *toks[which];
  std::vector<int> ids = t.encode(text, special);
  for (int id : ids)
    if (id < 0 || id >= t.n_vocab()) __builtin_trap();
  std::string back = t.decode(ids);
  const bool spellable = std::none_of(text.begin(), text.end(), [](char c) { return unspellable[uint8_t(c)]; });
  if (which < n_bpe && spellable && valid_utf8(text) && back != text) {
    std::fprintf(stderr, "tokenizer %zu: decode(encode(s)) != s:\n  s    = %s\n  back = %s\n  ids  =", which,
                 ckv::fuzz::quoted(text).c_str(), ckv::fuzz::quoted(back).c_str());
    for (int id : ids) std::fprintf(stderr, " %d", id);
    std::fprintf(stderr, "\n");
    __builtin_trap();
  }
  // Streaming gives the same bytes as decoding at once.
  ckv::StreamDecoder sd(t);
  std::string streamed;
  for (int id : ids) streamed += sd.push(id);
  streamed += sd.flush();
  if (streamed != back) __builtin_trap();
  return 0;
}
