// Decode steps replayed from recordings (CUDA graphs): the host enqueues a
// step's hundreds of kernels once per batch shape, not once per step. A
// shape is the rows of each sequence and which of them give logits; the
// recorded kernels read everything else (tokens, positions, page tables,
// lengths) from the step's inputs on the device (Backend::set_step), so one
// recording serves every step of its shape, whatever the sequences.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "kernels/backend.h"

namespace ckv {

class StepRecordings {
 public:
  // A step's kernels: a non-owning callable (a step allocates nothing; a
  // std::function of a large lambda would).
  class Kernels {
   public:
    template <class F>
    Kernels(F& f) : obj_(&f), call_([](void* o) { (*static_cast<F*>(o))(); }) {}
    void operator()() const { call_(obj_); }

   private:
    void* obj_;
    void (*call_)(void*);
  };

  explicit StepRecordings(StepRecorder& b) : b_(b) {}
  ~StepRecordings();
  StepRecordings(const StepRecordings&) = delete;
  StepRecordings& operator=(const StepRecordings&) = delete;

  // Runs `kernels` (a step's device work, no host synchronisation) for a
  // batch of this shape: replays its recording; records it on the shape's
  // second use (the first runs directly: lazy set-up inside the kernels
  // calls stays out of recordings); runs directly where the backend cannot
  // record or a recording of the shape failed.
  void run(const std::vector<int32_t>& shape, Kernels kernels);

  // Recordings kept (the least recently used beyond this are dropped).
  static constexpr size_t kMaxKept = 64;
  size_t kept() const;

 private:
  struct Entry {
    int handle = -1;
    int uses = 0;
    bool failed = false;
    uint64_t last = 0;
  };
  void evict();
  StepRecorder& b_;
  std::map<std::vector<int32_t>, Entry> map_;
  uint64_t clock_ = 0;
};

}  // namespace ckv
