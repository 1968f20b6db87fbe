// The in-process communicator (kernels/comm.h): ranks are threads sharing
// host memory, as the CPU backend's tensor parallelism runs them
// (engine/tp.h). A sum is split by element: the thread of rank r adds its
// share of the elements over every rank's buffer, in rank order, and writes
// the result back into all of them, so no element is written twice and every
// rank sees the same bits.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels/comm.h"

namespace ckv {

namespace {

struct Shared {
  explicit Shared(int n) : n(n), fptr(n), iptr(n), len(n) {}
  const int n;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool aborted = false;
  std::vector<float*> fptr;
  std::vector<const int32_t*> iptr;
  std::vector<int64_t> len;

  void wait_all() {
    std::unique_lock<std::mutex> lk(mu);
    if (aborted) throw Error("tensor parallel: another rank failed; this rank's step was abandoned");
    const uint64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lk, [&] { return generation != gen || aborted; });
    if (generation == gen) throw Error("tensor parallel: another rank failed; this rank's step was abandoned");
  }
};

class ThreadComm final : public Communicator {
 public:
  ThreadComm(std::shared_ptr<Shared> s, int rank) : s_(std::move(s)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return s_->n; }

  void all_reduce_sum(float* buf, int64_t n) override {
    s_->fptr[rank_] = buf;
    s_->len[rank_] = n;
    s_->wait_all();
    for (int r = 0; r < s_->n; ++r)
      if (s_->len[r] != n)
        throw Error("tensor parallel: all-reduce of " + std::to_string(n) + " floats on rank " +
                    std::to_string(rank_) + " but " + std::to_string(s_->len[r]) + " on rank " + std::to_string(r));
    const int64_t lo = n * rank_ / s_->n, hi = n * (rank_ + 1) / s_->n;
    for (int64_t i = lo; i < hi; ++i) {
      float sum = s_->fptr[0][i];
      for (int r = 1; r < s_->n; ++r) sum += s_->fptr[r][i];
      for (int r = 0; r < s_->n; ++r) s_->fptr[r][i] = sum;
    }
    s_->wait_all();
  }

  void all_gather(const int32_t* mine, int32_t* out, int n) override {
    s_->iptr[rank_] = mine;
    s_->len[rank_] = n;
    s_->wait_all();
    for (int r = 0; r < s_->n; ++r) {
      if (s_->len[r] != n) throw Error("tensor parallel: all-gather of different lengths across ranks");
      std::memcpy(out + static_cast<size_t>(r) * n, s_->iptr[r], sizeof(int32_t) * n);
    }
    s_->wait_all();
  }

  void barrier() override { s_->wait_all(); }

  bool abort() override {
    std::lock_guard<std::mutex> lk(s_->mu);
    s_->aborted = true;
    s_->cv.notify_all();
    return true;
  }
  void reset() override {
    std::lock_guard<std::mutex> lk(s_->mu);
    s_->aborted = false;
    s_->arrived = 0;
    ++s_->generation;
  }

 private:
  std::shared_ptr<Shared> s_;
  int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_comms(int n) {
  if (n < 1) throw Error("--tp " + std::to_string(n) + " must be at least 1");
  auto s = std::make_shared<Shared>(n);
  std::vector<std::unique_ptr<Communicator>> v;
  for (int r = 0; r < n; ++r) v.push_back(std::make_unique<ThreadComm>(s, r));
  return v;
}

}  // namespace ckv
