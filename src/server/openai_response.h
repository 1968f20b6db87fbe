// Response bodies in OpenAI's shapes: a whole completion, the chunks of a
// stream (server-sent events), usage and the "kv" report of a sequence.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "server/job.h"

namespace ckv::server {

// {"method", "budget", "window", "kv_bytes", "full_kv_bytes"} of j after its prompt.
nlohmann::json kv_json(const Job& j);
nlohmann::json usage_json(const Job& j);
// Where a response's logprobs stand in its text: the token before (the
// pieces' context) and the text offset (completions' text_offset).
struct LogprobCursor {
  int prev = -1;
  int64_t offset = 0;
};
// The "logprobs" of tokens lps in OpenAI's shape for j's endpoint
// (completions: tokens, token_logprobs, top_logprobs, text_offset; chat:
// content [{token, logprob, bytes, top_logprobs}]), advancing `at`; null
// when j asked for none. Token text: its piece (tok null: "").
nlohmann::json logprobs_json(const Job& j, const Tokenizer* tok, const std::vector<TokenLogprob>& lps,
                             LogprobCursor& at);
// Two logprobs objects of the same endpoint as one (a whole answer's events).
void append_logprobs(nlohmann::json& all, const nlohmann::json& more);
// The whole response of a finished request (stream: false).
nlohmann::json completion_json(const Job& j, const std::string& text, const std::string& finish_reason,
                               const nlohmann::json& logprobs = nullptr);
// One stream chunk: chat {delta}, or completion {text}. role: the chat's first
// chunk (delta {role: "assistant"}); finish_reason "" = null; the final chunk
// (finish_reason set) carries the "kv" report.
nlohmann::json chunk_json(const Job& j, const std::string& text, const std::string& finish_reason, bool role,
                          const nlohmann::json& logprobs = nullptr);
// The usage chunk after the final one (stream_options.include_usage).
nlohmann::json usage_chunk_json(const Job& j);
// "data: <json>\n\n"
std::string sse(const nlohmann::json& j);

}  // namespace ckv::server
