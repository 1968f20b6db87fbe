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

json completion_json(const Job& j, const std::string& text, const std::string& finish_reason) {
  json r = head(j, false);
  json choice = {{"index", 0}, {"finish_reason", null_if(finish_reason)}, {"logprobs", nullptr}};
  if (j.req.endpoint == Endpoint::Chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  r["choices"] = json::array({choice});
  r["usage"] = usage_json(j);
  r["kv"] = kv_json(j);
  return r;
}

json chunk_json(const Job& j, const std::string& text, const std::string& finish_reason, bool role) {
  json r = head(j, true);
  json choice = {{"index", 0}, {"finish_reason", null_if(finish_reason)}, {"logprobs", nullptr}};
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
