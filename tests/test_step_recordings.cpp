// engine/step_recordings: when a step runs directly, is recorded, replayed,
// recorded again or given up on, against a recorder that logs its calls (the
// CUDA graphs themselves are tested against direct steps in
// test_cuda_backend: CudaEndToEnd.RecordedStepsEqualDirectSteps).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/step_recordings.h"
#include "util/error.h"

namespace ckv {
namespace {

// Records what it is asked to: "run" while a recording is open means the
// kernels were queued into it; replay(h) counts as running recording h.
struct FakeRecorder : StepRecorder {
  bool can = true;
  bool open = false;
  bool fail_end = false;
  int next = 0;
  std::map<int, bool> alive;
  std::vector<std::string> log;
  bool begin_recording() override {
    if (!can) return false;
    open = true;
    log.push_back("begin");
    return true;
  }
  int end_recording() override {
    open = false;
    if (fail_end) throw Error("capture invalidated");
    log.push_back("end");
    alive[next] = true;
    return next++;
  }
  void abort_recording() override {
    open = false;
    log.push_back("abort");
  }
  bool replay(int h) override {
    if (!alive.count(h)) return false;
    log.push_back("replay " + std::to_string(h));
    return true;
  }
  void drop_recording(int h) override {
    alive.erase(h);
    log.push_back("drop " + std::to_string(h));
  }
};

using Log = std::vector<std::string>;

TEST(StepRecordings, DirectThenRecordedOnTheSecondUseThenReplayed) {
  FakeRecorder r;
  StepRecordings rec(r);
  auto kernels = [&] { r.log.push_back(r.open ? "queued" : "ran"); };
  const std::vector<int32_t> a = {3, 3}, b = {3};
  for (int i = 0; i < 3; ++i) rec.run(a, kernels);
  EXPECT_EQ(r.log, (Log{"ran", "begin", "queued", "end", "replay 0", "replay 0"}));
  r.log.clear();
  rec.run(b, kernels);  // another shape: its own first use
  rec.run(b, kernels);
  rec.run(a, kernels);
  EXPECT_EQ(r.log, (Log{"ran", "begin", "queued", "end", "replay 1", "replay 0"}));
  EXPECT_EQ(rec.kept(), 2u);
}

TEST(StepRecordings, AGoneRecordingIsRecordedAgain) {
  FakeRecorder r;
  StepRecordings rec(r);
  auto kernels = [&] { r.log.push_back(r.open ? "queued" : "ran"); };
  const std::vector<int32_t> a = {3};
  rec.run(a, kernels);
  rec.run(a, kernels);
  r.alive.clear();  // the backend's scratch moved
  r.log.clear();
  rec.run(a, kernels);
  EXPECT_EQ(r.log, (Log{"begin", "queued", "end", "replay 1"}));
}

TEST(StepRecordings, AShapeThatCannotBeRecordedRunsDirectlyFromThenOn) {
  FakeRecorder r;
  StepRecordings rec(r);
  bool throw_in_recording = true;
  auto kernels = [&] {
    if (r.open && throw_in_recording) throw Error("not capturable");
    r.log.push_back(r.open ? "queued" : "ran");
  };
  const std::vector<int32_t> a = {3};
  for (int i = 0; i < 4; ++i) rec.run(a, kernels);
  EXPECT_EQ(r.log, (Log{"ran", "begin", "abort", "ran", "ran", "ran"}));
  EXPECT_EQ(rec.kept(), 0u);
  // A recording that does not take at its end: the same.
  FakeRecorder r2;
  r2.fail_end = true;
  StepRecordings rec2(r2);
  auto k2 = [&] { r2.log.push_back(r2.open ? "queued" : "ran"); };
  for (int i = 0; i < 3; ++i) rec2.run(a, k2);
  EXPECT_EQ(r2.log, (Log{"ran", "begin", "queued", "ran", "ran"}));
  // A step that fails outright fails: its error reaches the caller.
  FakeRecorder r3;
  StepRecordings rec3(r3);
  auto bad = [] { throw Error("bad token"); };
  EXPECT_THROW(rec3.run(a, bad), Error);
}

TEST(StepRecordings, ABackendThatDoesNotRecordAlwaysRunsDirectly) {
  FakeRecorder r;
  r.can = false;
  StepRecordings rec(r);
  int runs = 0;
  auto kernels = [&] { ++runs; };
  for (int i = 0; i < 5; ++i) rec.run({1}, kernels);
  EXPECT_EQ(runs, 5);
  EXPECT_EQ(rec.kept(), 0u);
}

TEST(StepRecordings, TheLeastRecentlyUsedBeyondTheLimitAreDropped) {
  FakeRecorder r;
  int dropped = 0;
  {
    StepRecordings rec(r);
    auto kernels = [] {};
    const size_t n = StepRecordings::kMaxKept + 3;
    for (size_t s = 0; s < n; ++s) {
      const std::vector<int32_t> shape(s + 1, 3);
      rec.run(shape, kernels);
      rec.run(shape, kernels);
      rec.run({3}, kernels);  // keeps the first shape the most recent
    }
    EXPECT_EQ(rec.kept(), StepRecordings::kMaxKept);
    for (const auto& l : r.log) dropped += l.rfind("drop", 0) == 0;
    EXPECT_EQ(dropped, 3);
    EXPECT_TRUE(r.alive.count(0)) << "the shape used every round was dropped";
  }
  EXPECT_TRUE(r.alive.empty()) << "recordings left behind";
}

}  // namespace
}  // namespace ckv
