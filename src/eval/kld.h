// eval kld: how far each method's next-token distributions drift from
// FullKV's. The first n_ctx tokens of a file are the prompt (compressed by
// the method), the next n_eval are teacher-forced, and each step's
// distribution is compared with FullKV's on the same tokens: mean, median,
// p99 and max KL(FullKV || method) in nats and top-1 agreement, as
// llama.cpp's perplexity --kl-divergence reports them.
#pragma once
#include <string>
#include <vector>

#include "eval/grid.h"
#include "eval/results.h"

namespace ckv::eval {

// KL(softmax(ref) || softmax(x)) in nats; logits [V], computed in double.
double kl_divergence(const float* ref_logits, const float* logits, int V);

// p-th quantile (p in [0, 1]) with linear interpolation between order
// statistics (numpy's default); NaN for an empty vector.
double quantile(std::vector<double> v, double p);

struct KlStats {
  double mean = 0, median = 0, p99 = 0, max = 0;
  double top1 = 0;  // fraction of steps whose argmax agrees
  nlohmann::json to_json() const;
};
KlStats kl_stats(const std::vector<double>& kl, int top1_agree);

struct KldOptions {
  int n_ctx = 2048;
  int n_eval = 256;
};

// Throws ckv::Error naming `source`, --n-ctx or --n-eval when the tokens or
// the model's context cannot hold n_ctx + n_eval.
void check_kld_input(const Model& m, const std::vector<int>& tokens, const std::string& source,
                     const KldOptions& opt);

// tokens: the file's tokens; must hold n_ctx + n_eval (ckv::Error naming
// `source`, --n-ctx and --n-eval otherwise). One row per cell.
Results run_kld(const Model& m, const std::vector<int>& tokens, const std::string& source,
                const std::vector<Cell>& cells, const SessionOptions& base, const KldOptions& opt,
                const std::function<void(size_t cell)>& on_cell = {});

}  // namespace ckv::eval
