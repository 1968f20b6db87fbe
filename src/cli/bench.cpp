// compresskv bench: llama-bench-style speed and memory (DESIGN.md section 6).
// pp = read P tokens after a D-token context; tg = generate N tokens after a
// D-token context. A compressing method reads and compresses the context
// first, so tg@D measures decoding over the compressed cache.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/sequence.h"
#include "engine/tp.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

struct BenchArgs {
  ModelArgs model;
  SessionArgs kv;
  std::vector<int> n_prompt{512}, n_gen{128}, depth{0};
  int reps = 5, batch = 1;
  bool json = false, no_warmup = false;
};

struct Row {
  std::string test;
  int n_prompt = 0, n_gen = 0, depth = 0;
  double tps = 0;
  size_t kv_bytes = 0, kv_full = 0, peak = 0;
};

size_t weight_bytes(const Model& m) {
  size_t b = m.tok_embd.nbytes + m.output_norm.nbytes + (m.config.tied_output ? 0 : m.output.nbytes);
  for (auto& l : m.layers)
    for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm,
                            &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      b += t->nbytes;
  return b;
}

// One context or a tensor-parallel group (--tp): the same test on either.
void sync(Context& c) { c.backend().sync(); }
void sync(TpGroup& g) { g.sync(); }
bool host_memory(Context& c) { return c.backend().host_memory(); }
bool host_memory(TpGroup& g) { return g.context(0).backend().host_memory(); }
size_t kv_bytes(const Sequence& s) { return s.kv().bytes(); }
size_t kv_bytes(const TpSequence& s) { return s.kv_bytes(); }
size_t kv_full(const Sequence& s) { return s.kv().full_bytes(s.n_past()); }
size_t kv_full(const TpSequence& s) { return s.kv_full_bytes(); }
template <class Ctx> struct EngineOf;
template <> struct EngineOf<Context> { using Seq = Sequence; using Step = DecodeStep; };
template <> struct EngineOf<TpGroup> { using Seq = TpSequence; using Step = TpDecodeStep; };

// One repetition over `batch` sequences of one context; returns the
// aggregate tokens/s of the timed part.
template <class Ctx>
double one_rep(Ctx& ctx, const SequenceOptions& so, int batch, int P, int N, int D, std::mt19937& rng, Row& row) {
  using Seq = typename EngineOf<Ctx>::Seq;
  using Step = typename EngineOf<Ctx>::Step;
  const Model& m = ctx.model();
  std::uniform_int_distribution<int> tokd(0, m.config.vocab_size - 1);
  auto random_tokens = [&](int n) {
    std::vector<int> t(n);
    for (auto& x : t) x = tokd(rng);
    return t;
  };
  std::vector<std::unique_ptr<Seq>> seqs;
  for (int i = 0; i < batch; ++i) seqs.push_back(std::make_unique<Seq>(ctx, so));
  const int V = m.config.vocab_size;
  std::vector<float> logits(static_cast<size_t>(batch) * V);
  if (D > 0)
    for (auto& s : seqs) s->read(random_tokens(D), logits.data());
  using clock = std::chrono::steady_clock;
  double secs = 0;
  int64_t count = 0;
  if (P > 0) {
    std::vector<std::vector<int>> prompts;
    for (int i = 0; i < batch; ++i) prompts.push_back(random_tokens(P));
    auto t0 = clock::now();
    for (int i = 0; i < batch; ++i) seqs[i]->read(prompts[i], logits.data());
    secs = std::chrono::duration<double>(clock::now() - t0).count();
    count = int64_t(P) * batch;
  } else {
    std::vector<int> tok(batch);
    for (int& t : tok) t = tokd(rng);
    // Greedy, as llama-bench: each step sends back the top logit only.
    std::vector<Step> steps(batch);
    std::vector<int32_t> top(batch);
    for (int i = 0; i < batch; ++i) {
      steps[i] = {seqs[i].get(), std::span<const int>(&tok[i], 1), &logits[size_t(i) * V]};
      steps[i].top = 1;
      steps[i].top_ids = &top[i];
    }
    auto t0 = clock::now();
    for (int g = 0; g < N; ++g) {
      decode_step(ctx, steps);
      for (int i = 0; i < batch; ++i) tok[i] = top[i];
    }
    sync(ctx);
    secs = std::chrono::duration<double>(clock::now() - t0).count();
    count = int64_t(N) * batch;
  }
  row.kv_bytes = row.kv_full = 0;
  // On the CPU the weights are the model's own bytes; a GPU backend counts its copies in fixed_bytes().
  size_t peak = ctx.fixed_bytes() + (host_memory(ctx) ? weight_bytes(m) : 0);
  for (auto& s : seqs) {
    row.kv_bytes += kv_bytes(*s);
    row.kv_full += kv_full(*s);
    peak += s->peak_bytes();
  }
  row.peak = std::max(row.peak, peak);
  return count / secs;
}

}  // namespace

static int bench(const BenchArgs& a) {
  auto m = load(a.model);
  Profile prof;
  const SessionOptions so = session_options(a.kv, *m, prof);
  const SequenceOptions seq_opt = sequence_options(so);
  const auto make_backend = backend_factory(a.model, so.q8_matmul);
  const auto rank_factory = rank_backend_factory(a.model, so.q8_matmul);
  std::vector<Row> rows;
  for (int D : a.depth) {
    for (int P : a.n_prompt)
      if (P > 0) rows.push_back({"pp" + std::to_string(P), P, 0, D});
    for (int N : a.n_gen)
      if (N > 0) rows.push_back({"tg" + std::to_string(N), 0, N, D});
  }
  if (rows.empty()) throw Error("nothing to measure: -p and -n are both 0");
  const std::string backend = std::string(device_of(a.model) == "cuda" ? "CUDA" : "CPU") +
                              (a.model.tp > 1 ? " x" + std::to_string(a.model.tp) : "");
  const int threads = omp_get_max_threads();
  const std::string method = a.kv.select.empty() ? a.kv.method : a.kv.select + "+" + a.kv.alloc;
  const bool full = method == "full";
  const std::string budget = full ? "-" : std::to_string(a.kv.budget);
  if (!a.json) {
    std::printf("| model | backend | threads | method | budget | batch | test | t/s | kv held | kv full | peak |\n");
    std::printf("| --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
  }
  std::mt19937 rng(1234);
  for (Row& r : rows) {
    int64_t need = int64_t(r.depth) + r.n_prompt + r.n_gen;
    if (need > m->config.context)
      throw Error("test " + r.test + " at depth " + std::to_string(r.depth) + " needs " + std::to_string(need) +
                  " positions, more than the model's context " + std::to_string(m->config.context));
    // One context a test, sized for it: the workspace and pool it needs.
    ContextOptions co = context_options(so);
    co.n_ctx = static_cast<int>(need);
    co.max_seqs = a.batch;
    std::vector<double> tps;
    auto measure = [&](auto& ctx) {
      if (!a.no_warmup) {
        Row w;
        one_rep(ctx, seq_opt, a.batch, std::min(r.n_prompt, 32), std::min(r.n_gen, 4),
                r.depth > 0 ? std::min(r.depth, 64) : 0, rng, w);
      }
      for (int i = 0; i < a.reps; ++i) tps.push_back(one_rep(ctx, seq_opt, a.batch, r.n_prompt, r.n_gen, r.depth, rng, r));
    };
    if (a.model.tp > 1) {
      TpGroup g(*m, a.model.tp, rank_factory, co);
      measure(g);
    } else {
      Context ctx(*m, make_backend(), co);
      measure(ctx);
    }
    std::sort(tps.begin(), tps.end());
    r.tps = tps[tps.size() / 2];
    std::string test = r.test + (r.depth ? " @ d" + std::to_string(r.depth) : "");
    if (a.json) {
      nlohmann::json j = {{"model", m->name},        {"backend", backend},       {"threads", threads},
                          {"method", method},    {"budget", full ? 0 : a.kv.budget},
                          {"batch", a.batch}, {"tp", a.model.tp},
                          {"test", r.n_prompt ? "pp" : "tg"}, {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen},
                          {"depth", r.depth},         {"tokens_per_s", r.tps},    {"kv_bytes", r.kv_bytes},
                          {"kv_bytes_full", r.kv_full}, {"peak_bytes", r.peak},   {"rss_peak_bytes", rss_peak()},
                          {"reps", a.reps},           {"commit", CKV_COMMIT}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("| %s | %s | %d | %s | %s | %d | %s | %.2f | %s | %s | %s |\n", m->name.c_str(), backend.c_str(),
                  threads, method.c_str(), budget.c_str(), a.batch, test.c_str(), r.tps,
                  human_bytes(r.kv_bytes).c_str(),
                  human_bytes(r.kv_full).c_str(), human_bytes(r.peak).c_str());
    }
    std::fflush(stdout);
  }
  if (!a.json) std::printf("\nprocess peak RSS: %s; commit %s\n", human_bytes(rss_peak()).c_str(), CKV_COMMIT);
  return 0;
}

CLI::App* add_bench(CLI::App& app, std::function<int()>& action) {
  static BenchArgs args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("bench", "prompt-processing and generation speed, llama-bench style");
  add_model_args(c, a->model);
  add_tp_arg(c, a->model);
  c->add_option("--random-weights", a->model.random_weights,
                "instead of -m: seeded random bf16 weights of this config.json's shape, on the GPU (speed only, "
                "never quality; configs/ has Llama-3.1-8B, Mistral-7B-v0.3, Qwen2.5-7B)");
  c->add_option("--seed", a->model.seed, "seed of --random-weights (default 0)");
  add_session_args(c, a->kv);
  c->add_option("-p,--n-prompt", a->n_prompt, "prompt tokens (0 leaves pp out; several values allowed)")->delimiter(',');
  c->add_option("-n,--n-gen", a->n_gen, "generated tokens (0 leaves tg out)")->delimiter(',');
  c->add_option("-d,--n-depth", a->depth, "context depth before each test")->delimiter(',');
  c->add_option("-r,--repetitions", a->reps, "repetitions (median reported)")->check(CLI::PositiveNumber);
  c->add_option("-b,--batch", a->batch, "sequences decoded together, each with its own cache (tokens/s is their sum)")
      ->check(CLI::Range(1, 1024));
  c->add_flag("--json", a->json, "one JSON object per test");
  c->add_flag("--no-warmup", a->no_warmup, "skip the warm-up run");
  c->callback([a, &action] { action = [a] {
      default_kv_type(a->kv, a->model);
      return bench(*a);
    }; });
  return c;
}

}  // namespace ckv::cli
