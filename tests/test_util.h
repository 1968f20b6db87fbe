// Shared helpers for tests: where ../shared is, reading golden files, running
// the compresskv binary.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckv::test {

std::string shared_dir();  // ../shared beside the source tree
std::string source_dir();
std::string binary();      // path of the compresskv program
bool have_shared();         // false when ../shared is absent (tests then skip)
std::string read_text(const std::string& path);
nlohmann::json read_json(const std::string& path);
std::vector<float> read_f32(const std::string& path);

struct RunResult {
  int status = -1;  // exit code
  std::string out, err;
};
// Runs the compresskv binary with the given arguments (shell-quoted here).
RunResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "");

}  // namespace ckv::test

#define CKV_REQUIRE_SHARED()                                      \
  do {                                                            \
    if (!ckv::test::have_shared()) GTEST_SKIP() << "no ../shared"; \
  } while (0)
