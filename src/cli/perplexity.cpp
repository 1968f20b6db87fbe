// compresskv perplexity: scores a whole file as one sequence.
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "util/error.h"

namespace ckv::cli {

CLI::App* add_perplexity(CLI::App& app, std::function<int()>& action) {
  struct Args {
    ModelArgs model;
    std::string file;
    int ctx = 0;
  };
  static Args args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("perplexity", "mean negative log-likelihood and perplexity of a file");
  add_model_args(c, a->model);
  c->add_option("-f,--file", a->file, "text file")->required();
  c->add_option("-c,--ctx-size", a->ctx, "context size (default: the model's)");
  c->callback([a, &action] {
    action = [a] {
      auto m = load(a->model);
      auto tok = tokenizer_for(*m);
      std::vector<int> ids = tok->encode(prompt_text("", a->file), false);
      if (tok->add_bos() && tok->bos() >= 0) ids.insert(ids.begin(), tok->bos());
      if (ids.size() < 2) throw Error(a->file + ": fewer than 2 tokens, nothing to score");
      SessionOptions so;
      so.n_ctx = a->ctx;
      Session s(*m, so);
      if (static_cast<int64_t>(ids.size()) > s.n_ctx())
        throw Error(a->file + ": " + std::to_string(ids.size()) + " tokens, more than the context size " +
                    std::to_string(s.n_ctx()) + " (-c)");
      const int V = m->config.vocab_size;
      double nll = 0;
      int64_t count = 0;
      s.prefill(ids, nullptr, [&](int64_t pos, const float* lg) {
        if (pos + 1 >= static_cast<int64_t>(ids.size())) return;
        double mx = lg[0];
        for (int i = 1; i < V; ++i) mx = std::max<double>(mx, lg[i]);
        double sum = 0;
        for (int i = 0; i < V; ++i) sum += std::exp(lg[i] - mx);
        nll += std::log(sum) + mx - lg[ids[pos + 1]];
        ++count;
      });
      double mean = nll / count;
      nlohmann::json j = {{"tokens", static_cast<int64_t>(ids.size())}, {"mean_nll", mean}, {"ppl", std::exp(mean)}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    };
  });
  return c;
}

}  // namespace ckv::cli
