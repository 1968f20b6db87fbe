// One request inside the server: what the HTTP thread prepared (prompt ids,
// sampling, the sequence's options and its page reservation), the engine
// thread's state for it, and the channel of events between the two.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/sequence.h"
#include "profile/profile.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/stop_filter.h"
#include "tokenizer/tokenizer.h"

namespace ckv::server {

using Clock = std::chrono::steady_clock;

// The compression a request runs with, as reported back ("kv" of a response).
struct KvSettings {
  SequenceOptions seq;
  std::shared_ptr<const Profile> profile;  // what seq.profile points to, when it reads one
  std::string profile_name;                // its name among the server's profiles ("default": its own)
  std::string method;                      // the press's name
  int budget = 0, window = 0;        // budget 0: full
};

// A sampled token's log-probability under the model (the log-softmax of its
// logits: before temperature, top-k or top-p) and the most likely tokens
// there, most likely first.
struct TokenLogprob {
  int id = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int, float>> top;
};

struct Event {
  enum Kind { Text, Finish, Fail } kind = Text;
  std::string text;           // Text: new text (may be "" for a model without tokenizer: one event per token)
  std::string finish_reason;  // Finish: "stop" | "length"
  std::optional<ApiError> error;  // Fail
  // Text, Finish: the logprobs of the tokens sampled since the last event
  // (text held back by a stop string's prefix comes later than its tokens).
  std::vector<TokenLogprob> logprobs;
};

enum class JobState { Queued, Prefill, Decode, Done };

struct Job {
  // ---- set before submit, then read-only
  std::string id;
  GenRequest req;
  std::string model;  // echoed
  int64_t created = 0;  // unix seconds
  Clock::time_point arrival;
  std::vector<int> prompt;
  int64_t max_new = 0;  // tokens to generate at most (max_tokens within the context)
  SamplerParams sampling;
  KvSettings kv;
  int64_t pages = 0;  // reserved at admission (Sequence::pages_bound)

  // ---- the engine thread's own
  std::unique_ptr<Sequence> seq;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> decoder;
  std::unique_ptr<StopFilter> stops;
  std::vector<float> logits;  // [vocab]; after a decode step with top > 0, its top candidates
  std::vector<int32_t> top_ids;  // [top]: their ids (DecodeStep::top)
  int top = 0;
  std::vector<TokenLogprob> pending;  // req.logprobs >= 0: the sampled tokens' not yet sent
  int last = -1;              // the token to decode next
  Clock::time_point last_token_at;
  bool admitted = false;

  // ---- shared (atomics: /v1/sequences reads them from HTTP threads)
  std::atomic<bool> cancelled{false};
  std::atomic<JobState> state{JobState::Queued};
  std::atomic<int64_t> generated{0};
  std::atomic<int64_t> kv_bytes{0}, full_kv_bytes{0};  // now
  std::atomic<int64_t> prompt_kv_bytes{0}, prompt_full_kv_bytes{0};  // after the prompt

  // The channel: the engine pushes, the HTTP thread pops.
  void push(Event e) {
    {
      std::lock_guard<std::mutex> l(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
  }
  // Waits up to `timeout` for an event; false when none came.
  bool pop(Event& e, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, timeout, [&] { return !events_.empty(); })) return false;
    e = std::move(events_.front());
    events_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
};

}  // namespace ckv::server
