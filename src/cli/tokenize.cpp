// compresskv tokenize: token ids of a text as one JSON array (no BOS added).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/subcommands.h"

namespace ckv::cli {

CLI::App* add_tokenize(CLI::App& app, std::function<int()>& action) {
  struct Args {
    ModelArgs model;
    std::string prompt, file;
    bool no_special = false;
  };
  static Args args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("tokenize", "print the token ids of a text as a JSON array");
  add_model_args(c, a->model);
  CLI::Option* p = c->add_option("-p,--prompt", a->prompt, "text");
  CLI::Option* f = c->add_option("-f,--file", a->file, "text file (- for standard input)");
  c->add_flag("--no-parse-special", a->no_special, "treat special-token text as plain text");
  c->callback([a, p, f, &action] {
    // An empty -p "" is a text; neither flag is a mistake.
    if (p->count() == 0 && f->count() == 0) throw CLI::ValidationError("tokenize", "needs -p TEXT or -f FILE");
    action = [a] {
      auto m = load(a->model);
      auto tok = tokenizer_for(*m);
      std::vector<int> ids = tok->encode(prompt_text(a->prompt, a->file), !a->no_special);
      std::printf("%s\n", nlohmann::json(ids).dump().c_str());
      return 0;
    };
  });
  return c;
}

}  // namespace ckv::cli
