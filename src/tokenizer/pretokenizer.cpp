#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/error.h"
#include "tokenizer/utf8.h"

namespace ckv {

const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kDigitsRegex = R"(\p{N})";

class Regex {
 public:
  explicit Regex(const std::string& pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    // MATCH_INVALID_UTF: invalid bytes never match and end up between
    // matches, so they still reach BPE (as bytes) instead of failing.
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error("pre-tokenizer regex '" + pattern + "' at offset " + std::to_string(off) + ": " +
                  reinterpret_cast<const char*>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Isolated split of text into matches and the gaps between them.
  void split(std::string_view text, std::vector<std::string_view>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0, emitted = 0;
    while (pos < text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), pos, 0, md, nullptr);
      if (rc < 0) {
        if (rc == PCRE2_ERROR_NOMATCH) break;
        pcre2_match_data_free(md);
        throw Error("pre-tokenizer: PCRE2 match error " + std::to_string(rc));
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t s = ov[0], e = ov[1];
      if (e == s) {  // empty match: step over one character (none left at the end)
        if (s >= text.size()) break;
        pos = s + utf8::char_len(text, s);
        continue;
      }
      if (s > emitted) out.push_back(text.substr(emitted, s - emitted));
      out.push_back(text.substr(s, e - s));
      emitted = pos = e;
    }
    if (emitted < text.size()) out.push_back(text.substr(emitted));
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

namespace {

std::shared_ptr<const Regex> shared_regex(const char* pattern) {
  // The families' patterns are compiled once per process.
  static std::shared_ptr<const Regex> gpt2 = std::make_shared<Regex>(kGpt2Regex);
  static std::shared_ptr<const Regex> llama3 = std::make_shared<Regex>(kLlama3Regex);
  static std::shared_ptr<const Regex> qwen2 = std::make_shared<Regex>(kQwen2Regex);
  static std::shared_ptr<const Regex> digits = std::make_shared<Regex>(kDigitsRegex);
  if (pattern == kGpt2Regex) return gpt2;
  if (pattern == kLlama3Regex) return llama3;
  if (pattern == kQwen2Regex) return qwen2;
  return digits;
}

}  // namespace

PreTokenizer::PreTokenizer(const std::string& name, const std::vector<std::string>& custom) {
  if (name == "gpt2") {
    stages_ = {shared_regex(kGpt2Regex)};
  } else if (name == "smollm") {
    stages_ = {shared_regex(kDigitsRegex), shared_regex(kGpt2Regex)};
  } else if (name == "llama3") {
    stages_ = {shared_regex(kLlama3Regex)};
  } else if (name == "qwen2") {
    stages_ = {shared_regex(kQwen2Regex)};
  } else if (name == "custom") {
    if (custom.empty()) throw Error("pre-tokenizer 'custom' has no regex");
    for (const auto& p : custom) stages_.push_back(std::make_shared<const Regex>(p));
  } else {
    throw Error("unknown pre-tokenizer '" + name + "' (known: gpt2, smollm, llama3, qwen2)");
  }
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  std::vector<std::string_view> cur{text}, next;
  for (const auto& re : stages_) {
    next.clear();
    for (auto piece : cur) re->split(piece, next);
    cur.swap(next);
  }
  out.insert(out.end(), cur.begin(), cur.end());
}

std::string pre_name_of_regex(const std::string& pattern) {
  if (pattern == kLlama3Regex) return "llama3";
  if (pattern == kQwen2Regex) return "qwen2";
  if (pattern == kGpt2Regex) return "gpt2";
  return "";
}

}  // namespace ckv
