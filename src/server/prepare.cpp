#include "server/prepare.h"

#include <atomic>
#include <ctime>
#include <random>

#include "tokenizer/prompt.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ckv::server {

namespace {

std::string next_id(Endpoint e) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char b[48];
  std::snprintf(b, sizeof b, "%s-%012llx%04llx", e == Endpoint::Chat ? "chatcmpl" : "cmpl",
                static_cast<unsigned long long>(salt & 0xffffffffffffULL), static_cast<unsigned long long>(++counter));
  return b;
}

// The prompt's tokens; for a chat, `user_suffix` gets how many follow the
// final user message's content (--kv-window-at user), as `run --chat` counts.
std::vector<int> prompt_of(const ServeModel& sm, const GenRequest& r, int& user_suffix) {
  const char* param = r.endpoint == Endpoint::Chat ? "messages" : "prompt";
  if (r.endpoint == Endpoint::Completion && r.prompt_is_ids) {
    const int V = sm.ctx->model().config.vocab_size;
    for (size_t i = 0; i < r.prompt_ids.size(); ++i)
      if (r.prompt_ids[i] >= V)
        throw ApiError(400, "'prompt[" + std::to_string(i) + "]' token id " + std::to_string(r.prompt_ids[i]) +
                                " is out of the vocabulary [0, " + std::to_string(V) + ")", "prompt");
    return r.prompt_ids;
  }
  if (!sm.tok)
    throw ApiError(400, std::string("this model has no tokenizer: ") +
                            (r.endpoint == Endpoint::Chat ? "chat requests cannot be read; use /v1/completions with "
                                                            "a prompt of token ids"
                                                          : "give the prompt as an array of token ids"),
                   param);
  std::string text = r.prompt;
  size_t user_end = std::string::npos;
  if (r.endpoint == Endpoint::Chat) {
    if (!sm.chat) throw ApiError(400, "this model's chat template cannot be used: " + sm.chat_error, "messages");
    text = sm.chat->render(r.messages, true, &user_end);
  }
  try {
    std::vector<int> ids = encode_prompt(*sm.tok, text);
    if (user_end != std::string::npos) user_suffix = tail_tokens(*sm.tok, ids, text.size() - user_end);
    return ids;
  } catch (const Error& e) {
    throw ApiError(400, e.what(), param);
  }
}

}  // namespace

std::shared_ptr<Job> prepare_job(const ServeModel& sm, GenRequest req) {
  auto j = std::make_shared<Job>();
  j->arrival = Clock::now();
  j->created = static_cast<int64_t>(std::time(nullptr));
  j->id = next_id(req.endpoint);
  j->model = req.model.value_or(sm.alias);
  const char* param = req.endpoint == Endpoint::Chat ? "messages" : "prompt";
  int user_suffix = 0;
  j->prompt = prompt_of(sm, req, user_suffix);
  const int64_t n = static_cast<int64_t>(j->prompt.size()), n_ctx = sm.ctx->n_ctx();
  if (n >= n_ctx)
    throw ApiError(400, "the prompt has " + std::to_string(n) + " tokens; this server's context holds " +
                            std::to_string(n_ctx) + " (-c), with room for at least one generated token",
                   param, "context_length_exceeded");
  const int64_t room = n_ctx - n;  // as `run -n`: max_tokens is cut to the context
  j->max_new = std::min(req.max_tokens.value_or(room), room);

  j->kv = sm.kv_settings(req.kv);
  j->kv.seq.user_suffix = user_suffix;  // used only with window_at user (a plain prompt: 0, the end)
  try {
    j->pages = Sequence::pages_bound(*sm.ctx, j->kv.seq, n, j->max_new);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "kv");
  }
  if (!sm.ever_fits(Sequence::pages_bound(*sm.ctx, j->kv.seq, n, 0)))
    throw ApiError(400, "the prompt's compressed cache alone (" + std::to_string(n) +
                            " tokens) is larger than this server's KV memory (--kv-memory)", param);
  if (!sm.ever_fits(j->pages))
    throw ApiError(400, "the prompt's cache with room for " + std::to_string(j->max_new) +
                            " generated tokens is larger than this server's KV memory (--kv-memory); ask for fewer "
                            "max_tokens",
                   "max_tokens");

  SamplerParams& sp = j->sampling;
  sp.temperature = req.temperature;
  sp.top_p = req.top_p;
  sp.top_k = req.top_k;
  sp.seed = req.seed ? static_cast<uint64_t>(*req.seed) : std::random_device{}();
  sp.frequency_penalty = req.frequency_penalty;
  sp.presence_penalty = req.presence_penalty;
  sp.repetition_penalty = req.repetition_penalty;
  const int V = sm.ctx->model().config.vocab_size;
  for (auto [id, bias] : req.logit_bias)
    if (id >= V)
      throw ApiError(400, "'logit_bias' names token " + std::to_string(id) + ", past the vocabulary (" +
                              std::to_string(V) + " tokens)",
                     "logit_bias");
  sp.logit_bias = req.logit_bias;
  j->sampler = std::make_unique<Sampler>(sp);
  j->sampler->set_prompt(j->prompt);
  if (sm.tok) {
    j->decoder = std::make_unique<StreamDecoder>(*sm.tok);
    j->stops = std::make_unique<StopFilter>(req.stop);
  }
  j->logits.resize(sm.ctx->model().config.vocab_size);
  j->req = std::move(req);
  return j;
}

}  // namespace ckv::server
