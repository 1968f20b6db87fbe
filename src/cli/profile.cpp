// compresskv profile import: a model profile from the CompressKV authors'
// published head rankings and layer scores (DESIGN.md 2.6).
#include <cstdio>

#include "cli/common.h"
#include "cli/subcommands.h"

namespace ckv::cli {

CLI::App* add_profile(CLI::App& app, std::function<int()>& action) {
  struct Args {
    ModelArgs model;
    std::string heads, scores, out;
  };
  static Args args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("profile", "model profiles for --kv-method compresskv");
  c->require_subcommand(1);
  CLI::App* imp = c->add_subcommand("import", "build a profile from the authors' published files");
  add_model_args(imp, a->model);
  // The model is read for its shape and fingerprint only: a config.json does (no weights are made).
  imp->add_option("--random-weights", a->model.random_weights,
                  "instead of -m: the profile of a --random-weights model of this config.json's shape");
  imp->add_option("--heads", a->heads, "per-layer ranked head indices ({\"0\": [h, ...], ...})")->required();
  imp->add_option("--layer-scores", a->scores, "per-layer scores with avg_score");
  imp->add_option("-o,--output", a->out, "profile file to write")->required();
  imp->callback([a, &action] {
    action = [a] {
      check_output_path(a->out, "-o");
      auto m = load(a->model);
      const ModelConfig& c = m->config;
      Profile p = import_published_profile(a->heads, a->scores, c.arch, c.n_layers, c.n_heads, c.n_kv_heads,
                                           c.head_dim, m->fingerprint());
      p.save(a->out);
      std::fprintf(stderr, "wrote %s: %d layers, %zu ranked heads per layer, %s\n", a->out.c_str(), c.n_layers,
                   p.srh_ranking.empty() ? 0 : p.srh_ranking[0].size(),
                   p.layer_scores.empty() ? "uniform budgets (no layer scores)" : "error-aware budgets");
      return 0;
    };
  });
  return c;
}

}  // namespace ckv::cli
