// compresskv: one program, one subcommand per task (cli/<name>.cpp).
#include <cstdio>
#include <exception>

#include "cli/subcommands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"compresskv: LLM inference with a compressed KV cache (CompressKV, arXiv 2508.02401)"};
  app.require_subcommand(1);
  std::function<int()> action;
  using namespace ckv::cli;
  add_run(app, action);
  add_tokenize(app, action);
  add_perplexity(app, action);
  add_info(app, action);
  add_bench(app, action);
  add_profile(app, action);
  add_identify_heads(app, action);
  add_profile_layers(app, action);
  add_eval(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "error: %s (see --help)\n", e.what());
    return e.get_exit_code();
  }
  try {
    return action ? action() : 0;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
