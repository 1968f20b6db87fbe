// compresskv perplexity: mean negative log-likelihood of a file. A file that
// fits the context is scored as one sequence (every token after the first);
// a longer one as llama.cpp's perplexity does: non-overlapping windows of
// n_ctx tokens (the first replaced by BOS when the model adds one), each read
// by a fresh session, scoring the predictions of the second half of each
// window; the tokens after the last whole window are left out.
#include <climits>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

struct Score {
  double nll = 0;
  int64_t count = 0;
  int64_t bad_pos = -1;  // first position with non-finite logits
};

// Reads tokens[0, n) in a fresh session and adds -log p(tokens[i+1]) for i in [first, n-1).
void score_window(const Model& m, const std::vector<int>& tokens, int64_t first, int n_ctx, int64_t offset,
                  const std::function<std::unique_ptr<Backend>()>& backend, Score& sc) {
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.make_backend = backend;
  Session s(m, so);
  const int V = m.config.vocab_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  s.prefill(tokens, nullptr, [&](int64_t pos, const float* lg) {
    if (pos < first || pos + 1 >= n) return;
    if (!finite_logits(lg, V)) {
      if (sc.bad_pos < 0) sc.bad_pos = offset + pos;
      return;
    }
    double mx = lg[0];
    for (int i = 1; i < V; ++i) mx = std::max<double>(mx, lg[i]);
    double sum = 0;
    for (int i = 0; i < V; ++i) sum += std::exp(lg[i] - mx);
    sc.nll += std::log(sum) + mx - lg[tokens[pos + 1]];
    ++sc.count;
  });
}

}  // namespace

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
  c->add_option("-f,--file", a->file, "text file (- for standard input)")->required();
  c->add_option("-c,--ctx-size", a->ctx, "context size; a longer file is scored in windows of this size")
      ->check(int_range(2, INT32_MAX, "(leave -c out for the model's context)"))
      ->default_str("the model's");
  c->callback([a, &action] {
    action = [a] {
      auto m = load(a->model);
      auto tok = tokenizer_for(*m);
      std::vector<int> ids = tok->encode(prompt_text("", a->file), false);
      const bool bos = tok->add_bos() && tok->bos() >= 0;
      if (bos) ids.insert(ids.begin(), tok->bos());
      if (ids.size() < 2) throw Error(a->file + ": fewer than 2 tokens, nothing to score");
      const auto make_backend = backend_factory(a->model, false);
      const int n_ctx = a->ctx > 0 ? a->ctx : m->config.context;
      const int64_t n = static_cast<int64_t>(ids.size());
      Score sc;
      int64_t windows = 1;
      if (n <= n_ctx) {
        score_window(*m, ids, 0, n_ctx, 0, make_backend, sc);
      } else {
        windows = n / n_ctx;
        for (int64_t w = 0; w < windows; ++w) {
          std::vector<int> win(ids.begin() + w * n_ctx, ids.begin() + (w + 1) * n_ctx);
          if (bos) win[0] = tok->bos();
          score_window(*m, win, n_ctx / 2, n_ctx, w * n_ctx, make_backend, sc);
        }
      }
      if (sc.bad_pos >= 0)
        throw Error(m->path + ": the model gave non-finite logits (NaN or infinity) at token " +
                    std::to_string(sc.bad_pos) + " of " + a->file + ": its weights are broken (or overflow); "
                    "no perplexity");
      if (sc.count == 0) throw Error(a->file + ": no token to score with -c " + std::to_string(n_ctx));
      const double mean = sc.nll / sc.count;
      nlohmann::json j = {{"tokens", n}, {"scored", sc.count}, {"windows", windows}, {"n_ctx", n_ctx},
                          {"mean_nll", mean}, {"ppl", std::exp(mean)}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    };
  });
  return c;
}

}  // namespace ckv::cli
