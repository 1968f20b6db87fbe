// Shared helpers for tests: where ../shared is, reading golden files, running
// the compresskv binary.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace ckv::test {

std::string shared_dir();  // ../shared beside the source tree
std::string source_dir();
std::string binary();      // path of the compresskv program
bool have_shared();         // false when ../shared is absent (tests then skip)
bool under_ci();            // CI=true in the environment
std::string read_text(const std::string& path);
nlohmann::json read_json(const std::string& path);
std::vector<float> read_f32(const std::string& path);
// Writes bytes to path (replacing it); throws when it cannot.
void write_file(const std::string& path, const std::string& bytes);

// A fresh directory under the system temp dir, removed with its contents at
// the end of its scope; dir / "name" is a path inside it.
struct TmpDir {
  std::filesystem::path path;
  explicit TmpDir(const std::string& tag);
  ~TmpDir();
  TmpDir(const TmpDir&) = delete;
  TmpDir& operator=(const TmpDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct RunResult {
  int status = -1;  // exit code
  std::string out, err;
};
// Runs the compresskv binary with the given arguments (shell-quoted here).
RunResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "");

// Message of the ckv::Error f throws ("" and a test failure when none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ckv::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ckv::Error: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

}  // namespace ckv::test

// expr must throw a ckv::Error whose message holds every given substring.
#define EXPECT_ERROR(expr, ...)                                                         \
  do {                                                                                  \
    std::string msg_ = ckv::test::error_of([&] { (void)(expr); });                      \
    for (const std::string& s_ : std::vector<std::string>{__VA_ARGS__})                 \
      EXPECT_NE(msg_.find(s_), std::string::npos) << "'" << s_ << "' not in: " << msg_; \
  } while (0)

// Skips a test that needs ../shared when it is absent, except under CI=true,
// where a missing ../shared is a failure (ctest counts a skip as a pass).
#define CKV_REQUIRE_SHARED()                                                                       \
  do {                                                                                             \
    if (!ckv::test::have_shared()) {                                                               \
      if (ckv::test::under_ci()) GTEST_FAIL() << "../shared is missing (" << ckv::test::shared_dir() \
                                              << ") and CI=true: the golden tests cannot run";     \
      GTEST_SKIP() << "no ../shared";                                                              \
    }                                                                                              \
  } while (0)
