#include "server/scheduler.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "engine/forward.h"
#include "util/top_logits.h"

namespace ckv::server {

namespace {

const char* state_name(JobState s) {
  switch (s) {
    case JobState::Queued: return "queued";
    case JobState::Prefill: return "prefill";
    case JobState::Decode: return "decode";
    default: return "done";
  }
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Engine::Engine(Context& ctx, const Tokenizer* tok, Metrics& metrics, Admission admission, EngineOptions opt)
    : ctx_(ctx), tok_(tok), metrics_(metrics), opt_(opt), pool_pages_(admission.pool_pages()), admission_(admission) {}

Engine::~Engine() { shutdown(); }

void Engine::start() {
  // OpenMP's thread count is per thread: the engine thread takes the one the
  // context was prepared with (-t; the CPU kernels' scratch is sized by it).
  const int threads = omp_get_max_threads();
  thread_ = std::thread([this, threads] {
    omp_set_num_threads(threads);
    loop();
  });
}

void Engine::submit(const std::shared_ptr<Job>& j) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) throw ApiError(503, "the server is shutting down");
    // First come, first served: a request is admitted at once only when none waits before it.
    if (queue_.empty() && admission_.try_admit(j->pages)) {
      j->admitted = true;
      admitted_.push_back(j);
    } else if (static_cast<int>(queue_.size()) < opt_.queue) {
      queue_.push_back(j);
    } else {
      throw ApiError(429, "the server is busy: " + std::to_string(queue_.size()) +
                              " requests wait for memory already (--queue); retry later", "", "queue_full");
    }
    live_.push_back(j);
    wake_ = true;
  }
  cv_.notify_all();
}

void Engine::cancel(const std::shared_ptr<Job>& j) {
  j->cancelled = true;
  {
    std::lock_guard<std::mutex> l(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Engine::has_work() const {
  return wake_ || !admitted_.empty() || !waiting_.empty() || reading_ || !running_.empty();
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || has_work(); });
      wake_ = false;
      if (stopping_) break;
    }
    reap_cancelled();
    admit();
    step_read();
    step_decode();
    publish();
  }
  // Shutting down: every request ends now, with a final event.
  std::vector<std::shared_ptr<Job>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    all.assign(live_.begin(), live_.end());
  }
  for (auto& j : all) fail(j, 503, "the server is shutting down");
  waiting_.clear(), running_.clear(), reading_.reset();
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.clear(), admitted_.clear();
  }
  publish();
}

// Cancelled requests leave at once: their sequences (and pages) are freed.
void Engine::reap_cancelled() {
  auto gone = [](const std::shared_ptr<Job>& j) { return j->cancelled.load(); };
  std::vector<std::shared_ptr<Job>> ended;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto* q : {&queue_, &admitted_})
      for (auto it = q->begin(); it != q->end();) {
        if (gone(*it)) ended.push_back(*it), it = q->erase(it);
        else ++it;
      }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (gone(*it)) ended.push_back(*it), it = waiting_.erase(it);
    else ++it;
  }
  if (reading_ && gone(reading_)) ended.push_back(reading_), reading_.reset();
  for (auto it = running_.begin(); it != running_.end();) {
    if (gone(*it)) ended.push_back(*it), it = running_.erase(it);
    else ++it;
  }
  for (auto& j : ended) release(j);
}

void Engine::admit() {
  std::vector<std::shared_ptr<Job>> fresh;
  {
    std::lock_guard<std::mutex> l(mu_);
    while (!queue_.empty() && admission_.try_admit(queue_.front()->pages)) {
      queue_.front()->admitted = true;
      admitted_.push_back(queue_.front());
      queue_.pop_front();
    }
    fresh.assign(admitted_.begin(), admitted_.end());
    admitted_.clear();
  }
  for (auto& j : fresh) {
    try {
      j->seq = std::make_unique<Sequence>(ctx_, j->kv.seq);
    } catch (const std::exception& e) {
      fail(j, 500, std::string("cannot start the sequence: ") + e.what());
      continue;
    }
    j->state = JobState::Prefill;
    waiting_.push_back(j);
  }
}

// Prompt reads between two decode steps: --prefill-slice layers at a time,
// and more (the rest of the prompt, the next prompts) while the turn has spent
// less than --prefill-ms reading. A short prompt is read whole in one turn;
// a long one lets the running sequences decode after each slice.
void Engine::step_read() {
  const Clock::time_point t0 = Clock::now();
  const auto budget = std::chrono::duration<double, std::milli>(opt_.prefill_ms);
  while (read_slice()) {
    if (opt_.prefill_ms <= 0) return;
    ctx_.backend().sync();  // the time the slice took on the device, not to queue it
    if (Clock::now() - t0 >= budget) return;
  }
}

// One slice of the prompt being read (starting the next one first if none
// is); false when there was nothing to read.
bool Engine::read_slice() {
  if (!reading_ && !waiting_.empty()) {
    reading_ = waiting_.front();
    waiting_.pop_front();
    try {
      reading_->seq->begin_read(reading_->prompt);
    } catch (const std::exception& e) {
      fail(reading_, 500, std::string("reading the prompt failed: ") + e.what());
      reading_.reset();
      return true;
    }
  }
  if (!reading_) return false;
  std::shared_ptr<Job> j = reading_;
  try {
    if (!j->seq->read_layers(opt_.prefill_slice)) return true;
    j->seq->finish_read(j->logits.data());
  } catch (const std::exception& e) {
    // Reads are all or nothing: the sequence holds nothing now.
    fail(j, 500, std::string("reading the prompt failed: ") + e.what());
    reading_.reset();
    return true;
  }
  reading_.reset();
  const int64_t n = static_cast<int64_t>(j->prompt.size());
  j->prompt_kv_bytes = static_cast<int64_t>(j->seq->kv().bytes());
  j->prompt_full_kv_bytes = static_cast<int64_t>(j->seq->kv().full_bytes(n));
  metrics_.prompt_tokens += n;
  j->state = JobState::Decode;
  if (emit(j, pick(*j, ctx_.model().config.vocab_size))) running_.push_back(j);
  return true;
}

void Engine::step_decode() {
  if (running_.empty()) return;
  // Each sequence sends back what its sampler reads: its top candidates
  // (greedy: one; top-k: k), the whole row only when it needs it. On a GPU
  // the rows' downloads and scans took half of a 32-sequence step.
  const int V = ctx_.model().config.vocab_size;
  steps_.clear();
  for (auto& j : running_) {
    const int k = j->sampler->candidates(V);
    j->top = k <= Backend::kMaxTopLogits && j->req.logprobs < 0 ? k : 0;  // logprobs: the whole row
    j->top_ids.resize(j->top);
    steps_.push_back({j->seq.get(), std::span<const int>(&j->last, 1), j->logits.data()});
    steps_.back().top = j->top;
    steps_.back().top_ids = j->top_ids.data();
  }
  try {
    decode_step(ctx_, steps_);
  } catch (const std::exception& e) {
    // All or nothing: no cache changed. Admission makes this unreachable; if
    // it happens, the batch's requests end rather than the server.
    for (auto& j : running_) fail(j, 500, std::string("decode step failed: ") + e.what());
    running_.clear();
    return;
  }
  // The batch's tokens in parallel (a whole-vocabulary scan for those that
  // sent back their row), then their text in order.
  const int n = static_cast<int>(running_.size());
  picked_.resize(n);
#pragma omp parallel for schedule(dynamic) if (n > 1)
  for (int i = 0; i < n; ++i) picked_[i] = pick(*running_[i], V);
  std::vector<std::shared_ptr<Job>> still;
  still.reserve(running_.size());
  for (int i = 0; i < n; ++i)
    if (emit(running_[i], picked_[i])) still.push_back(running_[i]);
  running_.swap(still);
}

int Engine::pick(Job& j, int V) {
  if (j.top > 0) {  // a non-finite row reports NaN first (Backend::top_logits)
    if (!std::isfinite(j.logits[0])) return -1;
    return j.sampler->sample_top(j.logits.data(), j.top_ids.data(), j.top);
  }
  if (!finite_logits(j.logits.data(), V)) return -1;
  const int t = j.sampler->sample(j.logits.data(), V);
  if (j.req.logprobs >= 0) j.pending.push_back(token_logprob(j.logits.data(), V, t, j.req.logprobs));
  return t;
}

TokenLogprob token_logprob(const float* logits, int V, int t, int n_top) {
  float mx = -INFINITY;
  for (int i = 0; i < V; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  TokenLogprob lp;
  lp.id = t;
  lp.logprob = static_cast<float>(logits[t] - lse);
  if (n_top > 0) {
    static thread_local std::vector<float> vals;
    static thread_local std::vector<int32_t> ids, scratch;
    vals.resize(n_top), ids.resize(n_top);
    top_logits_row(logits, V, n_top, vals.data(), ids.data(), scratch);
    for (int i = 0; i < n_top && ids[i] >= 0; ++i) lp.top.emplace_back(ids[i], static_cast<float>(vals[i] - lse));
  }
  return lp;
}

// Token t of j: its text to the channel, or the end. False when j ended.
bool Engine::emit(const std::shared_ptr<Job>& j, int t) {
  if (t < 0) {
    fail(j, 500, "the model gave non-finite logits (NaN or infinity) at position " +
                     std::to_string(j->seq->n_past() - 1) + ": its weights are broken or overflow");
    return false;
  }
  const Clock::time_point now = Clock::now();
  if (j->generated == 0) metrics_.ttft.observe(seconds(now - j->arrival));
  else metrics_.itl.observe(seconds(now - j->last_token_at));
  j->last_token_at = now;
  ++j->generated;
  ++metrics_.generated_tokens;
  if (tok_ && !j->req.ignore_eos && tok_->is_eog(t)) {
    if (!j->pending.empty()) j->pending.pop_back();  // the end is no token of the answer
    finish(j, "stop", true);
    return false;
  }
  bool hit = false;
  if (tok_) {
    std::string text = j->stops->push(j->decoder->push(t), hit);
    if (!text.empty()) j->push({Event::Text, std::move(text), "", {}, std::exchange(j->pending, {})});
  } else {
    j->push({Event::Text, "", "", {}, std::exchange(j->pending, {})});  // no tokenizer: one event per token
  }
  if (hit) {
    finish(j, "stop", false);
    return false;
  }
  if (j->generated >= j->max_new) {
    finish(j, "length", true);
    return false;
  }
  j->last = t;
  return true;
}

void Engine::finish(const std::shared_ptr<Job>& j, const std::string& reason, bool flush) {
  std::string why = reason;
  if (flush && tok_) {
    bool hit = false;
    std::string text = j->stops->push(j->decoder->flush(), hit);
    if (!hit) text += j->stops->flush();
    else why = "stop";
    if (!text.empty()) j->push({Event::Text, std::move(text), "", {}, std::exchange(j->pending, {})});
  }
  release(j);
  j->push({Event::Finish, "", why, {}, std::exchange(j->pending, {})});
}

void Engine::fail(const std::shared_ptr<Job>& j, int status, const std::string& why) {
  release(j);
  j->push({Event::Fail, "", "", ApiError(status, why), {}});
}

// Frees j's sequence (its pages return to the pool) and its reservation.
void Engine::release(const std::shared_ptr<Job>& j) {
  j->seq.reset();
  j->kv_bytes = 0, j->full_kv_bytes = 0;
  j->state = JobState::Done;
  std::lock_guard<std::mutex> l(mu_);
  if (j->admitted) admission_.release(j->pages);
  j->admitted = false;
  wake_ = true;  // the queue's front may fit now
  live_.erase(std::remove(live_.begin(), live_.end(), j), live_.end());
}

// Gauges and each job's KV figures, after every turn.
void Engine::publish() {
  int64_t held = 0, full = 0;
  auto note = [&](const std::shared_ptr<Job>& j) {
    if (!j->seq) return;
    const int64_t b = static_cast<int64_t>(j->seq->kv().bytes());
    const int64_t n = j->seq->reading() || j->seq->n_past() == 0 ? static_cast<int64_t>(j->prompt.size()) : j->seq->n_past();
    const int64_t f = static_cast<int64_t>(j->seq->kv().full_bytes(n));
    j->kv_bytes = b, j->full_kv_bytes = f;
    held += b, full += f;
  };
  for (auto& j : waiting_) note(j);
  if (reading_) note(reading_);
  for (auto& j : running_) note(j);
  metrics_.kv_bytes = held, metrics_.kv_full_bytes = full;
  std::lock_guard<std::mutex> l(mu_);
  metrics_.queue_depth = static_cast<int64_t>(queue_.size());
  metrics_.running = admission_.sequences();
}

nlohmann::json Engine::sequences_json() const {
  nlohmann::json seqs = nlohmann::json::array();
  int64_t held = 0, full = 0;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& j : live_) {
    const JobState s = j->state;
    if (s == JobState::Done) continue;
    nlohmann::json budget = j->kv.budget > 0 ? nlohmann::json(j->kv.budget) : nlohmann::json(nullptr);
    seqs.push_back({{"id", j->id},
                    {"state", state_name(s)},
                    {"method", j->kv.method},
                    {"budget", budget},
                    {"prompt_tokens", j->prompt.size()},
                    {"generated_tokens", j->generated.load()},
                    {"kv_bytes", j->kv_bytes.load()},
                    {"full_kv_bytes", j->full_kv_bytes.load()}});
    held += j->kv_bytes, full += j->full_kv_bytes;
  }
  return {{"sequences", seqs},
          {"kv_bytes", held},
          {"kv_full_bytes", full},
          {"kv_memory_limit_bytes", metrics_.kv_memory_limit}};
}

}  // namespace ckv::server
