// The engine thread: continuous batching over one Context (issue 11 item 3).
// Each turn of its loop admits queued requests by memory (admission.h),
// advances the one prompt being read by --prefill-slice layers
// (Sequence::read_layers; reads go one at a time, as the workspace holds one
// layer's dense K/V), runs one decode step over every running sequence, and
// samples, detokenizes and pushes each sequence's text to its channel. HTTP
// threads only submit, cancel and read channels; everything that touches the
// Context happens here.
#pragma once
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/context.h"
#include "server/admission.h"
#include "server/job.h"
#include "server/metrics.h"

namespace ckv::server {

// The logprob of token t under a row of logits [V] and its n_top most likely
// alternatives (Event::logprobs).
TokenLogprob token_logprob(const float* logits, int V, int t, int n_top);

struct EngineOptions {
  int prefill_slice = 1;  // layers of a prompt read at a time between two decode steps
  int queue = 64;         // requests waiting for admission at most
  double prefill_ms = 0;  // more slices (and prompts) while a turn has read for less than this
};

class Engine {
 public:
  // tok may be null (a model without tokenizer: every token is an event of text "").
  Engine(Context& ctx, const Tokenizer* tok, Metrics& metrics, Admission admission, EngineOptions opt);
  ~Engine();  // shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the engine thread; call it from the thread that made the context.
  void start();
  // Admits the job now or queues it; ApiError 429 when the queue is full, 503
  // when shutting down. The job's events then come on its channel.
  void submit(const std::shared_ptr<Job>& job);
  // The client went away: the sequence is freed on the engine's next turn
  // (between two steps), its pages back in the pool.
  void cancel(const std::shared_ptr<Job>& job);
  // Ends every request (a final Fail event: 503) and stops the thread.
  void shutdown();
  bool ever_fits(int64_t pages) const { return pool_pages_ >= pages; }
  int64_t pool_pages() const { return pool_pages_; }
  // GET /v1/sequences.
  nlohmann::json sequences_json() const;

 private:
  void loop();
  bool has_work() const;  // under mu_
  void reap_cancelled();
  void admit();
  void step_read();
  bool read_slice();
  void step_decode();
  // The next token of j from its logits, -1 when they are not finite
  // (thread-safe across jobs: the batch's picks run in parallel).
  static int pick(Job& j, int n_vocab);
  bool emit(const std::shared_ptr<Job>& j, int token);  // false: the job ended
  void finish(const std::shared_ptr<Job>& j, const std::string& reason, bool flush);
  void fail(const std::shared_ptr<Job>& j, int status, const std::string& why);
  void release(const std::shared_ptr<Job>& j);
  void publish();

  Context& ctx_;
  const Tokenizer* tok_;
  Metrics& metrics_;
  const EngineOptions opt_;
  const int64_t pool_pages_;

  mutable std::mutex mu_;  // guards the members below up to thread_
  std::condition_variable cv_;
  Admission admission_;
  std::deque<std::shared_ptr<Job>> queue_;     // waiting for admission
  std::deque<std::shared_ptr<Job>> admitted_;  // admitted, no Sequence yet
  std::vector<std::shared_ptr<Job>> live_;     // every job not ended (for /v1/sequences)
  bool stopping_ = false, wake_ = false;
  std::thread thread_;

  // The engine thread's own.
  std::deque<std::shared_ptr<Job>> waiting_;  // with a Sequence, waiting to read
  std::shared_ptr<Job> reading_;
  std::vector<std::shared_ptr<Job>> running_;
  std::vector<DecodeStep> steps_;
  std::vector<int> picked_;
};

}  // namespace ckv::server
