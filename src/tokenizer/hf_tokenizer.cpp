// Hugging Face tokenizer.json (+ tokenizer_config.json, chat_template.jinja,
// generation_config.json beside it). Only BPE models are read: byte-level
// ones (GPT-2 family) become kind "bpe", "▁"-normalised ones kind "spm".
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "tokenizer/gguf_vocab.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ckv {
namespace {

using nlohmann::json;

const std::string kSpace = "\xE2\x96\x81";  // "▁"
// Largest token id + 1 accepted (the largest vocabularies in use are ~256k):
// a corrupt id would otherwise size the vocabulary.
constexpr int64_t kMaxTokens = int64_t(1) << 24;

// A value for an error message, cut short.
std::string brief(const std::string& s) { return s.size() <= 60 ? s : s.substr(0, 60) + "..."; }

json read_json_file(const std::string& path, bool required) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (required) throw file_error(path, "cannot open");
    return json();
  }
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  try {
    return json::parse(s);
  } catch (const json::exception& e) {
    throw file_error(path, std::string("invalid JSON: ") + e.what());
  }
}

// Pre-tokenizer and normaliser facts gathered from the nested definitions.
struct Pipeline {
  bool byte_level = false;
  bool prefix_space = false;  // ByteLevel add_prefix_space / Prepend "▁" / Metaspace
  bool spaces_to_meta = false;
  std::vector<std::string> regexes;  // split stages, in order
};

void walk_pre(const json& p, Pipeline& pl, const std::string& file, const std::string& field) {
  if (p.is_null()) return;
  std::string type = p.value("type", "");
  if (type == "Sequence") {
    const json& items = p.contains("pretokenizers") ? p["pretokenizers"] : json::array();
    for (size_t i = 0; i < items.size(); ++i)
      walk_pre(items[i], pl, file, field + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (type == "ByteLevel") {
    pl.byte_level = true;
    if (p.value("add_prefix_space", false)) pl.prefix_space = true;
    if (p.value("use_regex", true)) pl.regexes.push_back(kGpt2Regex);
  } else if (type == "Split") {
    std::string behavior = p.value("behavior", "Isolated");
    if (behavior != "Isolated" || p.value("invert", false))
      throw file_error(file, field + ": Split behavior '" + behavior + "' (invert " +
                                 (p.value("invert", false) ? "true" : "false") + ") is not supported, only Isolated");
    const json& pat = p.contains("pattern") ? p["pattern"] : json();
    if (pat.contains("Regex")) {
      pl.regexes.push_back(pat["Regex"].get<std::string>());
    } else if (pat.contains("String")) {
      pl.regexes.push_back("\\Q" + pat["String"].get<std::string>() + "\\E");
    } else {
      throw file_error(file, field + ".pattern: expected Regex or String");
    }
  } else if (type == "Digits") {
    pl.regexes.push_back(p.value("individual_digits", false) ? kDigitsRegex : "\\p{N}+");
  } else if (type == "Metaspace") {
    pl.spaces_to_meta = true;
    if (p.value("prepend_scheme", std::string("always")) != "never" && p.value("add_prefix_space", true))
      pl.prefix_space = true;
  } else {
    throw file_error(file, field + ": pre-tokenizer type '" + type + "' is not supported");
  }
}

void walk_norm(const json& n, Pipeline& pl, const std::string& file, const std::string& field) {
  if (n.is_null()) return;
  std::string type = n.value("type", "");
  if (type == "Sequence") {
    const json& items = n.contains("normalizers") ? n["normalizers"] : json::array();
    for (size_t i = 0; i < items.size(); ++i)
      walk_norm(items[i], pl, file, field + ".normalizers[" + std::to_string(i) + "]");
  } else if (type == "Prepend") {
    if (n.value("prepend", "") == kSpace) pl.prefix_space = true;
  } else if (type == "Replace") {
    const json& pat = n.contains("pattern") ? n["pattern"] : json();
    if (pat.value("String", "") == " " && n.value("content", "") == kSpace) pl.spaces_to_meta = true;
  } else if (type == "NFC") {
    // Pre-composed input is the common case; NFC is not applied here.
  } else {
    throw file_error(file, field + ": normalizer type '" + type + "' is not supported");
  }
}

// "<s>" or {"content": "<s>", ...}, or "" when absent.
std::string token_text(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key) || cfg[key].is_null()) return "";
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) return v.value("content", "");
  return "";
}

}  // namespace

TokenizerData read_hf_tokenizer(const std::string& dir) {
  const std::string tpath = dir + "/tokenizer.json";
  const std::string cpath = dir + "/tokenizer_config.json";
  json tj = read_json_file(tpath, true);
  json cfg = read_json_file(cpath, false);
  TokenizerData d;
  try {
    if (!tj.contains("model") || !tj["model"].is_object()) throw file_error(tpath, "field 'model' missing");
    const json& model = tj["model"];
    std::string mtype = model.value("type", "BPE");
    if (mtype != "BPE") throw file_error(tpath, "model.type '" + mtype + "' is not supported (known: BPE)");
    if (!model.contains("vocab") || !model["vocab"].is_object())
      throw file_error(tpath, "model.vocab missing or not an object");

    // Vocabulary and added tokens share one id space. Ids are checked as
    // written, before any narrowing or allocation for them.
    auto token_id = [&](const json& v, const std::string& field, const std::string& text) {
      const bool ok = v.is_number_unsigned() ? v.get<uint64_t>() < uint64_t(kMaxTokens)
                      : v.is_number_integer() ? v.get<int64_t>() >= 0 && v.get<int64_t>() < kMaxTokens
                                              : false;
      if (!ok)
        throw file_error(tpath, field + ": token '" + brief(text) + "' has id " + brief(v.dump()) +
                                    ", expected an integer in [0, " + std::to_string(kMaxTokens) + ")");
      return static_cast<int>(v.get<int64_t>());
    };
    std::vector<std::pair<std::string, int>> entries;
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it)
      entries.emplace_back(it.key(), token_id(it.value(), "model.vocab", it.key()));
    const json& added = tj.contains("added_tokens") ? tj["added_tokens"] : json::array();
    if (!added.is_array()) throw file_error(tpath, "added_tokens is not an array");
    std::vector<int> added_ids;
    for (size_t i = 0; i < added.size(); ++i) {
      const json& a = added[i];
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id"))
        throw file_error(tpath, field + ": expected {\"id\": N, \"content\": \"...\"}");
      added_ids.push_back(token_id(a["id"], field, a["content"].get<std::string>()));
      entries.emplace_back(a["content"].get<std::string>(), added_ids.back());
    }
    int n = 0;
    for (auto& [t, id] : entries) n = std::max(n, id + 1);  // id < kMaxTokens: no overflow
    // Ids are (nearly) dense in real files; a few corrupt ones must not size
    // the vocabulary far past what the file holds.
    if (int64_t(n) > 2 * int64_t(entries.size()) + 1024)
      throw file_error(tpath, "model.vocab/added_tokens: largest id " + std::to_string(n - 1) + " for only " +
                                  std::to_string(entries.size()) + " tokens (expected ids below " +
                                  std::to_string(2 * entries.size() + 1024) + ")");
    d.tokens.assign(n, "");
    d.types.assign(n, TokenType::Unused);
    for (auto& [t, id] : entries) {
      d.tokens[id] = t;
      d.types[id] = TokenType::Normal;
    }
    for (size_t i = 0; i < added.size(); ++i)
      d.types[added_ids[i]] = added[i].value("special", false) ? TokenType::Control : TokenType::UserDefined;

    if (model.contains("merges")) {
      for (const json& m : model["merges"]) {
        if (m.is_string()) d.merges.push_back(m.get<std::string>());
        else if (m.is_array() && m.size() == 2) d.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        else throw file_error(tpath, "model.merges: entry is neither \"a b\" nor [a, b]");
      }
    }
    d.byte_fallback = model.value("byte_fallback", false);
    d.ignore_merges = model.value("ignore_merges", false);

    Pipeline pl;
    walk_norm(tj.value("normalizer", json()), pl, tpath, "normalizer");
    walk_pre(tj.value("pre_tokenizer", json()), pl, tpath, "pre_tokenizer");
    if (pl.byte_level) {
      d.kind = "bpe";
      d.add_space_prefix = pl.prefix_space;
      std::vector<std::string>& r = pl.regexes;
      if (r.size() == 1 && !pre_name_of_regex(r[0]).empty()) {
        d.pre = pre_name_of_regex(r[0]);
      } else if (r.size() == 2 && r[0] == kDigitsRegex && r[1] == kGpt2Regex) {
        d.pre = "smollm";
      } else if (r.empty()) {
        d.pre = "custom";
        d.pre_regexes = {"(?s).+"};  // no split at all: the whole text is one piece
      } else {
        d.pre = "custom";
        d.pre_regexes = r;
      }
    } else if (pl.spaces_to_meta) {
      d.kind = "spm";
      d.add_space_prefix = pl.prefix_space;
      for (int i = 0; i < n; ++i) {
        const std::string& t = d.tokens[i];
        if (d.byte_fallback && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') d.types[i] = TokenType::Byte;
      }
    } else {
      throw file_error(tpath, "pre_tokenizer/normalizer: neither ByteLevel nor a \"▁\" replacement (unsupported tokenizer)");
    }

    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      std::string u = model["unk_token"].get<std::string>();
      for (int i = 0; i < n; ++i)
        if (d.tokens[i] == u) {
          d.unk = i;
          d.types[i] = TokenType::Unknown;
          break;
        }
    }
  } catch (const json::exception& e) {
    throw file_error(tpath, std::string("unexpected structure: ") + e.what());
  }

  auto id_of = [&](const std::string& text, const char* field) {
    if (text.empty()) return -1;
    for (size_t i = 0; i < d.tokens.size(); ++i)
      if (d.tokens[i] == text) return static_cast<int>(i);
    throw file_error(cpath, std::string(field) + " '" + text + "' is not a token of tokenizer.json");
  };
  try {
    d.bos = id_of(token_text(cfg, "bos_token"), "bos_token");
    d.eos = id_of(token_text(cfg, "eos_token"), "eos_token");
    if (d.unk < 0) d.unk = id_of(token_text(cfg, "unk_token"), "unk_token");
    d.pad = id_of(token_text(cfg, "pad_token"), "pad_token");
    if (cfg.is_object() && cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
      d.add_bos = cfg["add_bos_token"].get<bool>();
    } else {
      // HF adds BOS through the post-processor template when it lists it;
      // without one, SentencePiece-style tokenizers add it (LlamaTokenizer).
      const json pp = tj.value("post_processor", json());
      if (pp.is_null()) {
        d.add_bos = d.bos >= 0 && d.kind == "spm";
      } else {
        d.add_bos = d.bos >= 0 && pp.dump().find("\"id\":\"" + d.tokens[d.bos] + "\"") != std::string::npos;
      }
    }
    if (cfg.is_object() && cfg.contains("chat_template")) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        d.chat_template = ct.get<std::string>();
        d.chat_template_source = cpath + " (chat_template)";
      } else if (ct.is_array()) {
        for (const json& e : ct)
          if (e.value("name", "") == "default") {
            d.chat_template = e.value("template", "");
            d.chat_template_source = cpath + " (chat_template \"default\")";
          }
      }
    }
  } catch (const json::exception& e) {
    throw file_error(cpath, std::string("unexpected structure: ") + e.what());
  }
  if (d.chat_template.empty()) {
    std::ifstream jf(dir + "/chat_template.jinja", std::ios::binary);
    if (jf) {
      d.chat_template.assign(std::istreambuf_iterator<char>(jf), std::istreambuf_iterator<char>());
      d.chat_template_source = dir + "/chat_template.jinja";
    }
  }
  // generation_config.json may list more end-of-generation ids.
  json gen = read_json_file(dir + "/generation_config.json", false);
  if (gen.is_object() && gen.contains("eos_token_id")) {
    const json& e = gen["eos_token_id"];
    std::vector<int64_t> ids;
    if (e.is_number_integer()) ids.push_back(e.get<int64_t>());
    if (e.is_array())
      for (const json& x : e)
        if (x.is_number_integer()) ids.push_back(x.get<int64_t>());
    for (int64_t id : ids)
      if (id >= 0 && id < static_cast<int64_t>(d.tokens.size()) &&
          std::find(d.eog.begin(), d.eog.end(), static_cast<int>(id)) == d.eog.end())
        d.eog.push_back(static_cast<int>(id));
  }
  add_known_eog(d);
  d.source = tpath;
  return d;
}

}  // namespace ckv
