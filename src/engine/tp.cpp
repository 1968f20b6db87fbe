// The tensor-parallel driver (engine/tp.h): rank threads, the group's
// set-up, and Sequence / decode_step over every rank.
#include "engine/tp.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "engine/forward.h"
#include "kernels/cuda/nccl_comm.h"
#include "model/shard.h"
#include "util/error.h"

namespace ckv {

// One thread per rank, kept for the group's life: a CUDA rank's thread has
// its device current, and the CPU's OpenMP teams stay per rank.
struct TpGroup::Workers {
  explicit Workers(int n) : errs(n) {
    const int per_rank = std::max(1, omp_get_max_threads() / n);
    for (int r = 0; r < n; ++r) threads.emplace_back([this, r, per_rank] { loop(r, per_rank); });
  }
  ~Workers() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    start.notify_all();
    for (auto& t : threads) t.join();
  }

  void loop(int r, int omp_threads) {
    omp_set_num_threads(omp_threads);
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* f;
      {
        std::unique_lock<std::mutex> lk(mu);
        start.wait(lk, [&] { return stop || gen != seen; });
        if (stop) return;
        seen = gen;
        f = job;
      }
      std::exception_ptr e;
      try {
        (*f)(r);
      } catch (...) {
        e = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu);
      errs[r] = e;
      if (e && !failed_at) failed_at = std::chrono::steady_clock::now();
      ++done;
      finished.notify_all();
    }
  }

  std::vector<std::thread> threads;
  std::mutex mu;
  std::condition_variable start, finished;
  uint64_t gen = 0;
  const std::function<void(int)>* job = nullptr;
  int done = 0;
  bool stop = false;
  std::vector<std::exception_ptr> errs;
  std::optional<std::chrono::steady_clock::time_point> failed_at;
};

namespace {

bool agreed_failure(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const RankStepFailed&) {
    return true;
  } catch (...) {
    return false;
  }
}

bool own_agreed_failure(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const RankStepFailed& f) {
    return f.own;
  } catch (...) {
    return false;
  }
}

}  // namespace

void TpGroup::run(const std::function<void(int rank)>& f) {
  if (broken_)
    throw Error("tensor parallel: the group's NCCL communicators were torn down after an earlier failure; start again");
  Workers& w = *workers_;
  std::unique_lock<std::mutex> lk(w.mu);
  w.job = &f;
  w.done = 0;
  w.failed_at.reset();
  std::fill(w.errs.begin(), w.errs.end(), nullptr);
  ++w.gen;
  w.start.notify_all();
  // A rank that failed outside an agreed step may leave the others waiting in
  // a collective for it: release them (threads at once; NCCL, whose abort
  // tears the communicators down, after a grace period in which ranks that
  // were past their last collective can finish).
  bool aborted = false;
  std::vector<bool> reusable(size_, true);
  while (w.done < size_) {
    w.finished.wait_for(lk, std::chrono::milliseconds(100));
    if (aborted || !w.failed_at) continue;
    bool unagreed = false;
    for (const auto& e : w.errs) unagreed |= e && !agreed_failure(e);
    if (!unagreed || comms_.empty()) continue;
    if (nccl_ && std::chrono::steady_clock::now() - *w.failed_at < std::chrono::seconds(10)) continue;
    for (int r = 0; r < size_; ++r) reusable[r] = comms_[r]->abort();
    aborted = true;
  }
  if (aborted) {
    for (int r = 0; r < size_; ++r) {
      if (reusable[r]) comms_[r]->reset();
      else broken_ = true;
    }
  }
  std::exception_ptr first, own, unagreed;
  for (const auto& e : w.errs) {
    if (!e) continue;
    if (!first) first = e;
    if (!own && own_agreed_failure(e)) own = e;
    if (!unagreed && !agreed_failure(e)) unagreed = e;
  }
  if (own) std::rethrow_exception(own);
  if (unagreed) std::rethrow_exception(unagreed);
  if (first) std::rethrow_exception(first);
}

TpGroup::TpGroup(const Model& full, int size, const RankBackendFactory& make_backend, const ContextOptions& opt)
    : full_(full), size_(size) {
  shard_plan(full.config, 0, size);  // --tp checked before any device is touched
  workers_ = std::make_unique<Workers>(size);
  shards_.resize(size);
  ctx_.resize(size);
  std::vector<std::unique_ptr<Backend>> backends(size);
  try {
    run([&](int r) {
      shards_[r] = shard_model(full, r, size);
      backends[r] = make_backend(r);
    });
    if (size > 1) {
      int cuda = 0;
      for (auto& b : backends) cuda += b->name() == "CUDA";
      if (cuda != 0 && cuda != size) throw Error("--tp: the ranks' backends must all be CUDA or all CPU");
      nccl_ = cuda == size;
      if (nccl_) {
        std::vector<Backend*> bs;
        for (auto& b : backends) bs.push_back(b.get());
        comms_ = make_nccl_comms(bs);
      } else {
        comms_ = make_thread_comms(size);
      }
    }
    run([&](int r) {
      ContextOptions o = opt;
      o.comm = size > 1 ? comms_[r].get() : nullptr;
      ctx_[r] = std::make_unique<Context>(*shards_[r], std::move(backends[r]), o);
    });
  } catch (...) {
    try {
      run([&](int r) {
        ctx_[r].reset();
        backends[r].reset();
      });
    } catch (...) {
    }
    throw;
  }
}

TpGroup::~TpGroup() {
  // Device memory goes back on each rank's own thread (its device current).
  try {
    broken_ = false;
    run([&](int r) {
      ctx_[r].reset();
      if (!comms_.empty()) comms_[r].reset();
    });
  } catch (...) {
  }
  workers_.reset();
}

size_t TpGroup::fixed_bytes() const {
  size_t b = 0;
  for (const auto& c : ctx_) b += c->fixed_bytes();
  return b;
}

void TpGroup::sync() {
  run([&](int r) { ctx_[r]->backend().sync(); });
}

// ---- TpSequence -------------------------------------------------------------

namespace {

// Observers on rank 0 only.
SequenceOptions rank_options(const SequenceOptions& o, int r) {
  SequenceOptions s = o;
  if (r > 0) {
    s.on_layer = nullptr;
    s.on_progress = nullptr;
    s.probe = nullptr;
    s.on_decode_layer = nullptr;
  }
  return s;
}

}  // namespace

TpSequence::TpSequence(TpGroup& g, const SequenceOptions& opt) : g_(g), seqs_(g.size()) {
  try {
    g_.run([&](int r) { seqs_[r] = std::make_unique<Sequence>(g_.context(r), rank_options(opt, r)); });
  } catch (...) {
    try {
      g_.run([&](int r) { seqs_[r].reset(); });
    } catch (...) {
    }
    throw;
  }
}

TpSequence::~TpSequence() {
  try {
    g_.run([&](int r) { seqs_[r].reset(); });
  } catch (...) {
  }
}

void TpSequence::begin_read(std::span<const int> tokens) {
  try {
    g_.run([&](int r) { seqs_[r]->begin_read(tokens); });
  } catch (...) {
    // All or nothing: ranks that began are taken back.
    g_.run([&](int r) {
      if (seqs_[r]->reading()) seqs_[r]->cancel_read();
    });
    throw;
  }
}

bool TpSequence::read_layers(int n) {
  std::vector<char> done(g_.size());
  g_.run([&](int r) { done[r] = seqs_[r]->read_layers(n); });
  return done[0];
}

void TpSequence::finish_read(float* logits_last, const std::function<void(int64_t, const float*)>& each) {
  g_.run([&](int r) {
    if (r == 0) seqs_[r]->finish_read(logits_last, each);
    else seqs_[r]->finish_read(nullptr);
  });
}

void TpSequence::read(std::span<const int> tokens, float* logits_last,
                      const std::function<void(int64_t, const float*)>& each) {
  begin_read(tokens);
  while (!read_layers(g_.model().config.n_layers)) {
  }
  finish_read(logits_last, each);
}

std::unique_ptr<TpSequence> TpSequence::compress_copy(const TpSequence& full, const SequenceOptions& opt) {
  std::unique_ptr<TpSequence> s(new TpSequence(full.g_));
  try {
    full.g_.run([&](int r) { s->seqs_[r] = Sequence::compress_copy(*full.seqs_[r], rank_options(opt, r)); });
  } catch (...) {
    full.g_.run([&](int r) { s->seqs_[r].reset(); });
    throw;
  }
  return s;
}

std::vector<KeptPositions> TpSequence::kept() const {
  std::vector<KeptPositions> all = seqs_[0]->kept();
  for (int r = 1; r < g_.size(); ++r) {
    const auto& k = seqs_[r]->kept();
    for (size_t l = 0; l < all.size() && l < k.size(); ++l) all[l].insert(all[l].end(), k[l].begin(), k[l].end());
  }
  return all;
}

size_t TpSequence::kv_bytes() const {
  size_t b = 0;
  for (const auto& s : seqs_) b += s->kv().bytes();
  return b;
}

size_t TpSequence::kv_full_bytes() const {
  size_t b = 0;
  for (const auto& s : seqs_) b += s->kv().full_bytes(s->n_past());
  return b;
}

size_t TpSequence::peak_bytes() const {
  size_t b = 0;
  for (const auto& s : seqs_) b += s->peak_bytes();
  return b;
}

void decode_step(TpGroup& g, std::span<TpDecodeStep> batch) {
  std::vector<std::vector<DecodeStep>> steps(g.size());
  for (int r = 0; r < g.size(); ++r)
    for (const TpDecodeStep& st : batch) {
      if (!st.seq || &st.seq->group() != &g) throw Error("decode: a sequence of another tensor-parallel group");
      // Rank 0 computes the logits; the others only their part of the layers.
      steps[r].push_back({&st.seq->rank(r), st.tokens, r == 0 ? st.logits : nullptr, r == 0 && st.all_logits,
                          r == 0 ? st.top : 0, r == 0 ? st.top_ids : nullptr});
    }
  g.run([&](int r) { decode_step(g.context(r), steps[r]); });
}

}  // namespace ckv
