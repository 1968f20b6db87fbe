// compresskv: one program, one subcommand per task (cli/<name>.cpp).
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <set>
#include <string>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "util/error.h"

namespace {

// What CLI11 would misread: "-ngl 99" (llama.cpp's GPU layers) parses as "-n gl".
// A single dash, then letters only, longer than one letter, is an unknown
// option whatever its first letter; a value after an option that takes text
// is left alone.
std::string misread_short_option(int argc, char** argv) {
  static const std::set<std::string> takes_text = {"-p", "--prompt", "--system", "--stop", "-f", "--file", "-m",
                                                   "--model", "-o", "--output", "--chat-template", "--api-key", "--alias", "--host"};
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--") break;
    if (i > 1 && takes_text.count(argv[i - 1])) continue;
    if (s.size() < 3 || s[0] != '-' || s[1] == '-') continue;
    bool letters = true;
    for (size_t k = 1; k < s.size(); ++k) letters = letters && std::isalpha(static_cast<unsigned char>(s[k]));
    if (letters) return s;
  }
  return "";
}

// Standard output must have reached its file: `> /dev/full` is an error.
int check_stdout(int status) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "error: writing standard output failed: %s\n", std::strerror(errno ? errno : EIO));
    return status ? status : 1;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"compresskv: LLM inference with a compressed KV cache (CompressKV, arXiv 2508.02401)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("compresskv ") + CKV_VERSION + " (commit " + CKV_COMMIT + ")");
  app.option_defaults()->always_capture_default();  // --help shows every default
  std::function<int()> action;
  using namespace ckv::cli;
  add_run(app, action);
  add_tokenize(app, action);
  add_perplexity(app, action);
  add_info(app, action);
  check_bench_flags(add_bench(app, action));
  add_profile(app, action);
  add_identify_heads(app, action);
  add_profile_layers(app, action);
  add_eval(app, action);
  add_serve(app, action);

  // Named before CLI11 gives its generic messages.
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::fprintf(stderr, "error: unknown subcommand '%s' (known: %s; see --help)\n", argv[1], known.c_str());
      return 109;
    }
  }
  if (std::string bad = misread_short_option(argc, argv); !bad.empty()) {
    std::fprintf(stderr, "error: unknown option '%s' (options of one letter take one dash, longer ones two; see --help)\n",
                 bad.c_str());
    return 109;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return check_stdout(app.exit(e));  // --help, --version
    std::string msg = e.what();
    // Range checks read "--top-p: must be in (0, 1], ...": as one sentence.
    if (size_t p = msg.find(": must be "); p != std::string::npos && msg[0] == '-') msg.erase(p, 1);
    std::fprintf(stderr, "error: %s (see --help)\n", msg.c_str());
    return e.get_exit_code();
  }
  int status = 0;
  try {
    status = action ? action() : 0;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    status = 1;
  }
  return check_stdout(status);
}
