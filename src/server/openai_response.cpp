#include "server/openai_response.h"

namespace ckv::server {

namespace {

using json = nlohmann::json;

json null_if(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

json head(const Job& j, bool chunk) {
  const bool chat = j.req.endpoint == Endpoint::Chat;
  const char* object = chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", j.id}, {"object", object}, {"created", j.created}, {"model", j.model}};
}

}  // namespace

json kv_json(const Job& j) {
  return {{"method", j.kv.method},
          {"budget", j.kv.budget > 0 ? json(j.kv.budget) : json(nullptr)},
          {"window", j.kv.budget > 0 ? json(j.kv.window) : json(nullptr)},
          {"profile", j.kv.profile ? json(j.kv.profile_name) : json(nullptr)},
          {"kv_bytes", j.prompt_kv_bytes.load()},
          {"full_kv_bytes", j.prompt_full_kv_bytes.load()}};
}

json usage_json(const Job& j) {
  const int64_t p = static_cast<int64_t>(j.prompt.size()), c = j.generated;
  return {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}};
}

json logprobs_json(const Job& j, const Tokenizer* tok, const std::vector<TokenLogprob>& lps, LogprobCursor& at) {
  if (j.req.logprobs < 0) return nullptr;
  auto text = [&](int id) { return tok ? tok->decode_piece(at.prev, id) : std::string(); };
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  if (j.req.endpoint == Endpoint::Chat) {
    json content = json::array();
    for (const TokenLogprob& lp : lps) {
      const std::string t = text(lp.id);
      json top = json::array();
      for (const auto& [id, v] : lp.top) {
        const std::string a = text(id);
        top.push_back({{"token", a}, {"logprob", v}, {"bytes", bytes(a)}});
      }
      content.push_back({{"token", t}, {"logprob", lp.logprob}, {"bytes", bytes(t)}, {"top_logprobs", top}});
      at.prev = lp.id;
    }
    return {{"content", content}};
  }
  json tokens = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string t = text(lp.id);
    json top = json::object();
    for (const auto& [id, v] : lp.top) top[text(id)] = v;  // keyed by text, as OpenAI's
    tokens.push_back(t);
    values.push_back(lp.logprob);
    tops.push_back(top);
    offsets.push_back(at.offset);
    at.offset += static_cast<int64_t>(t.size());
    at.prev = lp.id;
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

void append_logprobs(json& all, const json& more) {
  if (more.is_null()) return;
  if (all.is_null()) {
    all = more;
    return;
  }
  for (auto& [k, v] : more.items())
    for (const json& x : v) all[k].push_back(x);
}

json completion_json(const Job& j, const std::string& text, const std::string& finish_reason, const json& logprobs) {
  json r = head(j, false);
  json choice = {{"index", 0}, {"finish_reason", null_if(finish_reason)}, {"logprobs", logprobs}};
  if (j.req.endpoint == Endpoint::Chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  r["choices"] = json::array({choice});
  r["usage"] = usage_json(j);
  r["kv"] = kv_json(j);
  return r;
}

json chunk_json(const Job& j, const std::string& text, const std::string& finish_reason, bool role,
                const json& logprobs) {
  json r = head(j, true);
  json choice = {{"index", 0}, {"finish_reason", null_if(finish_reason)}, {"logprobs", logprobs}};
  if (j.req.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (role) delta = {{"role", "assistant"}, {"content", ""}};
    else if (finish_reason.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  if (!finish_reason.empty()) r["kv"] = kv_json(j);
  return r;
}

json usage_chunk_json(const Job& j) {
  json r = head(j, true);
  r["choices"] = json::array();
  r["usage"] = usage_json(j);
  return r;
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace ckv::server
