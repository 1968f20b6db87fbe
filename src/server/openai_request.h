// POST /v1/chat/completions and /v1/completions bodies, parsed and checked
// into a typed request (the fields of serve_contract.md; unknown fields are
// ignored, as OpenAI's own clients send more than a server needs). Errors
// are ApiError 400 naming the field ("messages[1].content", "kv.budget").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/api_error.h"
#include "tokenizer/chat_template.h"

namespace ckv::server {

enum class Endpoint { Chat, Completion };

// The "kv" extension: overrides of the server's --kv-* settings.
struct KvRequest {
  std::optional<std::string> method, select, alloc, window_at, profile;
  std::optional<int> budget, window;
};

struct GenRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::optional<std::string> model;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completion: text ...
  std::vector<int> prompt_ids;        // ... or token ids
  bool prompt_is_ids = false;
  std::optional<int64_t> max_tokens;  // none: until the context is full
  float temperature = 1.0f;           // OpenAI's defaults
  float top_p = 1.0f;
  int top_k = 0;  // extension; 0 = off
  float frequency_penalty = 0.0f, presence_penalty = 0.0f;  // OpenAI's; 0 = off
  float repetition_penalty = 1.0f;  // extension (vLLM's); 1 = off
  std::vector<std::pair<int, float>> logit_bias;  // token id, bias in [-100, 100]
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false, ignore_eos = false;
  // Log-probabilities of the sampled tokens with this many alternatives each
  // (completions: logprobs N; chat: logprobs true, top_logprobs N); -1: none.
  int logprobs = -1;
  KvRequest kv;
};

// The most alternatives a token's logprobs list (OpenAI's top_logprobs limit).
constexpr int kMaxTopLogprobs = 20;

// Parses a request body (JSON text) for an endpoint; throws ApiError.
GenRequest parse_request(const std::string& body, Endpoint e);

}  // namespace ckv::server
