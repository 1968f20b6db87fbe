// From a parsed request to a job ready for the engine, on the HTTP thread:
// the prompt rendered and tokenized as `run` does, the context length
// checked, the kv settings built and validated, the sampler set, and the
// pages the job reserves computed (all refusals are ApiError 400 before the
// request reaches the engine).
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/context.h"
#include "server/job.h"

namespace ckv::server {

struct ServeModel {
  const Context* ctx = nullptr;
  const Tokenizer* tok = nullptr;      // null: token-id prompts only
  std::optional<ChatTemplate> chat;    // none: chat_error says why
  std::string chat_error;
  std::string alias;                   // model id of /v1/models
  // The request's kv extension over the server's --kv-* defaults, validated as
  // the CLI validates its flags (ApiError 400 naming "kv.<field>").
  std::function<KvSettings(const KvRequest&)> kv_settings;
  // Whether a job of this many pages could ever be admitted.
  std::function<bool(int64_t pages)> ever_fits;
};

std::shared_ptr<Job> prepare_job(const ServeModel& sm, GenRequest req);

}  // namespace ckv::server
