#include "server/openai_request.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace ckv::server {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& why) {
  throw ApiError(400, "'" + param + "' " + why, param);
}

// A field that is absent or null reads as not given.
const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// Integers: JSON integers, or numbers with an integral value (1.0), in [lo, hi].
int64_t integer(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  double d = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) bad(param, "must be at most " + std::to_string(hi));
    const int64_t x = v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
    if (x < lo || x > hi) bad(param, "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
    return x;
  }
  if (!v.is_number_float()) bad(param, "must be an integer, found " + std::string(v.type_name()));
  d = v.get<double>();
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
    bad(param, "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  return static_cast<int64_t>(d);
}

double number(const json& v, const std::string& param, double lo, double hi, bool lo_open) {
  if (!v.is_number()) bad(param, "must be a number, found " + std::string(v.type_name()));
  const double d = v.get<double>();
  if (!std::isfinite(d) || (lo_open ? d <= lo : d < lo) || d > hi) {
    char b[96];
    std::snprintf(b, sizeof b, "must be in %s%g, %g]", lo_open ? "(" : "[", lo, hi);
    bad(param, b);
  }
  return d;
}

bool boolean(const json& v, const std::string& param) {
  if (!v.is_boolean()) bad(param, "must be true or false, found " + std::string(v.type_name()));
  return v.get<bool>();
}

std::string string(const json& v, const std::string& param) {
  if (!v.is_string()) bad(param, "must be a string, found " + std::string(v.type_name()));
  return v.get<std::string>();
}

// A message's content: a string, or parts [{type: "text", text}] joined.
std::string content(const json& v, const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) bad(param, "must be a string or an array of text parts, found " + std::string(v.type_name()));
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const json& part = v[i];
    if (!part.is_object()) bad(p, "must be an object {\"type\": \"text\", \"text\": ...}");
    const json* type = field(part, "type");
    if (!type || string(*type, p + ".type") != "text") bad(p + ".type", "must be \"text\" (only text parts are supported)");
    const json* text = field(part, "text");
    if (!text) bad(p + ".text", "is required");
    out += string(*text, p + ".text");
  }
  return out;
}

std::vector<ChatMessage> messages(const json& v) {
  if (!v.is_array()) bad("messages", "must be an array of messages, found " + std::string(v.type_name()));
  if (v.empty()) bad("messages", "must hold at least one message");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!v[i].is_object()) bad(p, "must be an object with role and content");
    const json* role = field(v[i], "role");
    if (!role) bad(p + ".role", "is required");
    const std::string r = string(*role, p + ".role");
    if (r != "system" && r != "user" && r != "assistant")
      bad(p + ".role", "must be system, user or assistant, found '" + r.substr(0, 32) + "'");
    const json* c = field(v[i], "content");
    if (!c && r != "assistant") bad(p + ".content", "is required");
    out.push_back({r, c ? content(*c, p + ".content") : ""});
  }
  return out;
}

void prompt(const json& v, GenRequest& r) {
  auto ids = [&](const json& a, const std::string& p) {
    for (size_t i = 0; i < a.size(); ++i)
      r.prompt_ids.push_back(static_cast<int>(integer(a[i], p + "[" + std::to_string(i) + "]", 0, INT32_MAX)));
    r.prompt_is_ids = true;
  };
  if (v.is_string()) {
    r.prompt = v.get<std::string>();
    return;
  }
  if (!v.is_array()) bad("prompt", "must be a string or an array of token ids, found " + std::string(v.type_name()));
  if (v.empty()) bad("prompt", "must not be empty");
  // One prompt only: [string] or [[ids]] are a batch of one.
  if (v.size() == 1 && v[0].is_string()) {
    r.prompt = v[0].get<std::string>();
    return;
  }
  if (v.size() == 1 && v[0].is_array()) {
    if (v[0].empty()) bad("prompt", "must not be empty");
    return ids(v[0], "prompt[0]");
  }
  if (v[0].is_string() || v[0].is_array()) bad("prompt", "holds several prompts; this server takes one per request");
  ids(v, "prompt");
}

KvRequest kv(const json& v) {
  if (!v.is_object()) bad("kv", "must be an object, found " + std::string(v.type_name()));
  KvRequest k;
  if (const json* x = field(v, "method")) k.method = string(*x, "kv.method");
  if (const json* x = field(v, "select")) k.select = string(*x, "kv.select");
  if (const json* x = field(v, "alloc")) k.alloc = string(*x, "kv.alloc");
  if (const json* x = field(v, "profile")) k.profile = string(*x, "kv.profile");
  if (const json* x = field(v, "budget")) k.budget = static_cast<int>(integer(*x, "kv.budget", 1, INT32_MAX));
  if (const json* x = field(v, "window")) k.window = static_cast<int>(integer(*x, "kv.window", 1, INT32_MAX));
  if (const json* x = field(v, "window_at")) {
    k.window_at = string(*x, "kv.window_at");
    if (*k.window_at != "end" && *k.window_at != "user") bad("kv.window_at", "must be \"end\" or \"user\"");
  }
  return k;
}

// {"token id": bias, ...} (OpenAI's logit_bias): ids as decimal strings,
// biases in [-100, 100]; the ids are checked against the vocabulary later.
std::vector<std::pair<int, float>> logit_bias(const json& v) {
  if (!v.is_object()) bad("logit_bias", "must be an object of token ids to biases, found " + std::string(v.type_name()));
  constexpr size_t kMax = 1024;
  if (v.size() > kMax) bad("logit_bias", "holds at most " + std::to_string(kMax) + " tokens");
  std::vector<std::pair<int, float>> out;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    int id = -1;
    const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), id);
    if (k.empty() || ec != std::errc() || end != k.data() + k.size() || id < 0)
      bad("logit_bias", "keys must be token ids (decimal integers >= 0), found \"" + k.substr(0, 32) + "\"");
    const json& b = it.value();
    if (!b.is_number() || !std::isfinite(b.get<double>()) || b.get<double>() < -100 || b.get<double>() > 100)
      bad("logit_bias", "the bias of token " + k + " must be a number in [-100, 100]");
    out.emplace_back(id, static_cast<float>(b.get<double>()));
  }
  return out;
}

// Parts of OpenAI's API this server does not have: a 400 naming the field,
// rather than an answer that silently ignores what was asked.
void unsupported(const json& j, Endpoint e) {
  if (const json* x = field(j, "response_format")) {
    const json* t = x->is_object() ? field(*x, "type") : nullptr;
    if (!t || !t->is_string() || t->get<std::string>() != "text")
      bad("response_format", "only {\"type\": \"text\"} is supported: this server has no JSON or schema-constrained "
                             "decoding");
  }
  for (const char* name : {"tools", "functions"})
    if (const json* x = field(j, name); x && !(x->is_array() && x->empty()))
      bad(name, "tool and function calls are not supported");
  if (const json* x = field(j, "tool_choice"); x && !(x->is_string() && x->get<std::string>() == "none"))
    bad("tool_choice", "tool and function calls are not supported (only \"none\")");
  if (e != Endpoint::Completion) return;
  if (const json* x = field(j, "echo"); x && boolean(*x, "echo"))
    bad("echo", "echoing the prompt is not supported");
  if (const json* x = field(j, "suffix"); x && !(x->is_string() && x->get<std::string>().empty()))
    bad("suffix", "insertion (a suffix after the completion) is not supported");
  if (const json* x = field(j, "best_of"); x && integer(*x, "best_of", 1, INT32_MAX) != 1)
    bad("best_of", "must be 1: this server returns one choice per request");
}

}  // namespace

GenRequest parse_request(const std::string& body, Endpoint e) {
  // No request needs deep nesting; refusing it early bounds the parser's work.
  constexpr int kMaxDepth = 32;
  bool too_deep = false;
  json j = json::parse(
      body,
      [&](int depth, json::parse_event_t, json&) {
        if (depth > kMaxDepth) too_deep = true;
        return !too_deep;
      },
      false);
  if (too_deep) throw ApiError(400, "the request body nests deeper than " + std::to_string(kMaxDepth) + " levels");
  if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object, found " + std::string(j.type_name()));
  GenRequest r;
  r.endpoint = e;
  if (const json* x = field(j, "model")) r.model = string(*x, "model");
  if (e == Endpoint::Chat) {
    const json* m = field(j, "messages");
    if (!m) bad("messages", "is required");
    r.messages = messages(*m);
  } else {
    const json* p = field(j, "prompt");
    if (!p) bad("prompt", "is required");
    prompt(*p, r);
  }
  const json* mt = field(j, "max_completion_tokens");
  const char* mt_name = "max_completion_tokens";
  if (!mt) mt = field(j, "max_tokens"), mt_name = "max_tokens";
  if (mt) r.max_tokens = integer(*mt, mt_name, 1, INT32_MAX);
  if (const json* x = field(j, "temperature")) r.temperature = static_cast<float>(number(*x, "temperature", 0, 2, false));
  if (const json* x = field(j, "top_p")) r.top_p = static_cast<float>(number(*x, "top_p", 0, 1, true));
  if (const json* x = field(j, "top_k")) r.top_k = static_cast<int>(integer(*x, "top_k", 0, INT32_MAX));
  for (auto [name, to] : {std::pair<const char*, float*>{"frequency_penalty", &r.frequency_penalty},
                          {"presence_penalty", &r.presence_penalty}})
    if (const json* x = field(j, name)) *to = static_cast<float>(number(*x, name, -2, 2, false));
  if (const json* x = field(j, "repetition_penalty"))
    r.repetition_penalty = static_cast<float>(number(*x, "repetition_penalty", 0, 10, true));
  if (const json* x = field(j, "logit_bias")) r.logit_bias = logit_bias(*x);
  unsupported(j, e);
  if (const json* x = field(j, "seed"))
    r.seed = integer(*x, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  if (const json* x = field(j, "n"); x && integer(*x, "n", 1, INT32_MAX) != 1)
    bad("n", "must be 1: this server returns one choice per request");
  if (const json* x = field(j, "stop")) {
    if (x->is_string()) {
      r.stop.push_back(x->get<std::string>());
    } else if (x->is_array()) {
      if (x->size() > 4) bad("stop", "holds at most 4 strings");
      for (size_t i = 0; i < x->size(); ++i) r.stop.push_back(string((*x)[i], "stop[" + std::to_string(i) + "]"));
    } else {
      bad("stop", "must be a string or an array of strings, found " + std::string(x->type_name()));
    }
  }
  if (const json* x = field(j, "stream")) r.stream = boolean(*x, "stream");
  if (const json* x = field(j, "stream_options")) {
    if (!x->is_object()) bad("stream_options", "must be an object");
    if (const json* u = field(*x, "include_usage")) r.include_usage = boolean(*u, "stream_options.include_usage");
  }
  if (const json* x = field(j, "ignore_eos")) r.ignore_eos = boolean(*x, "ignore_eos");
  if (e == Endpoint::Completion) {
    if (const json* x = field(j, "logprobs")) r.logprobs = static_cast<int>(integer(*x, "logprobs", 0, kMaxTopLogprobs));
  } else {
    const json* lp = field(j, "logprobs");
    const bool on = lp && boolean(*lp, "logprobs");
    const json* top = field(j, "top_logprobs");
    const int n = top ? static_cast<int>(integer(*top, "top_logprobs", 0, kMaxTopLogprobs)) : 0;
    if (top && !on) bad("top_logprobs", "needs \"logprobs\": true");
    if (on) r.logprobs = n;
  }
  if (const json* x = field(j, "kv")) r.kv = kv(*x);
  return r;
}

}  // namespace ckv::server
