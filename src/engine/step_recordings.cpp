#include "engine/step_recordings.h"

#include "util/error.h"

namespace ckv {

StepRecordings::~StepRecordings() {
  for (auto& [shape, e] : map_)
    if (e.handle >= 0) b_.drop_recording(e.handle);
}

size_t StepRecordings::kept() const {
  size_t n = 0;
  for (const auto& [shape, e] : map_) n += e.handle >= 0;
  return n;
}

void StepRecordings::run(const std::vector<int32_t>& shape, Kernels kernels) {
  Entry& e = map_[shape];
  e.last = ++clock_;
  if (e.handle >= 0) {
    if (b_.replay(e.handle)) return;
    e.handle = -1;  // the backend let it go (its scratch moved): record again
  }
  if (e.failed || ++e.uses < 2 || !b_.begin_recording()) {
    kernels();
    return;
  }
  try {
    kernels();
  } catch (...) {
    // Something in the step cannot be recorded (or failed): nothing ran, so
    // the step runs directly, and this shape always will.
    b_.abort_recording();
    e.failed = true;
    kernels();
    return;
  }
  try {
    e.handle = b_.end_recording();
  } catch (const Error&) {  // the recording did not take (an operation that cannot be captured)
    e.failed = true;
    kernels();
    return;
  }
  evict();
  if (!b_.replay(e.handle)) throw Error("decode: a step recorded just now cannot be replayed");
}

void StepRecordings::evict() {
  while (kept() > kMaxKept) {
    auto oldest = map_.end();
    for (auto it = map_.begin(); it != map_.end(); ++it)
      if (it->second.handle >= 0 && (oldest == map_.end() || it->second.last < oldest->second.last)) oldest = it;
    b_.drop_recording(oldest->second.handle);
    map_.erase(oldest);
  }
}

}  // namespace ckv
