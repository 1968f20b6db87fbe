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
// The whole response of a finished request (stream: false).
nlohmann::json completion_json(const Job& j, const std::string& text, const std::string& finish_reason);
// One stream chunk: chat {delta}, or completion {text}. role: the chat's first
// chunk (delta {role: "assistant"}); finish_reason "" = null; the final chunk
// (finish_reason set) carries the "kv" report.
nlohmann::json chunk_json(const Job& j, const std::string& text, const std::string& finish_reason, bool role);
// The usage chunk after the final one (stream_options.include_usage).
nlohmann::json usage_chunk_json(const Job& j);
// "data: <json>\n\n"
std::string sse(const nlohmann::json& j);

}  // namespace ckv::server
