#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ckv::test {

std::string shared_dir() { return CKV_SHARED_DIR; }
std::string source_dir() { return CKV_SOURCE_DIR; }
std::string binary() { return CKV_BINARY; }
bool have_shared() { return std::filesystem::exists(shared_dir() + "/golden"); }
bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_text(path)); }

std::vector<float> read_f32(const std::string& path) {
  std::string s = read_text(path);
  std::vector<float> v(s.size() / 4);
  std::memcpy(v.data(), s.data(), v.size() * 4);
  return v;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

TmpDir::TmpDir(const std::string& tag) {
  std::string t = (std::filesystem::temp_directory_path() / ("ckv_test_" + tag + "_XXXXXX")).string();
  if (!mkdtemp(t.data())) throw std::runtime_error("cannot create a temporary directory from " + t);
  path = t;
}

TmpDir::~TmpDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

static std::string quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

RunResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text) {
  char tmpl[] = "/tmp/ckvtestXXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string in = dir + "/in", out = dir + "/out", err = dir + "/err";
  std::ofstream(in) << stdin_text;
  // Shared cores (CI runners, a busy machine): OpenMP's busy waiting can make
  // a short run many times slower; a value set by the caller stays.
  setenv("OMP_WAIT_POLICY", "passive", 0);
  std::string cmd = quote(binary());
  for (auto& a : args) cmd += " " + quote(a);
  cmd += " <" + in + " >" + out + " 2>" + err;
  int st = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_text(out);
  r.err = read_text(err);
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace ckv::test
