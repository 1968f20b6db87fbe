// compresskv eval niah | ruler | kld: every method and budget on the same
// prompts in one run (DESIGN.md 6): results.json, table.md and PNG figures
// in the output directory, the table on stdout.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "eval/haystack.h"
#include "eval/kld.h"
#include "eval/needles.h"
#include "eval/niah.h"
#include "eval/progress.h"
#include "eval/report.h"
#include "eval/ruler.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

// Flags every eval task shares.
struct Common {
  ModelArgs model;
  std::vector<std::string> methods{"full", "streamingllm", "snapkv", "pyramidkv", "adakv", "compresskv"};
  std::vector<int> budgets{64, 128, 256, 512};
  SessionArgs kv;
  std::string out;
  bool no_plots = false;
  double pool_gib = 4;
};

void add_common(CLI::App* c, Common& a, const std::string& default_out) {
  a.out = default_out;
  add_model_args(c, a.model);
  c->add_option("--methods", a.methods, "methods, comma-separated: presets or SELECTION+ALLOCATION pairs, e.g. srh+uniform (FullKV always runs as the reference)")
      ->delimiter(',');
  c->add_option("--budgets", a.budgets, "average budgets, comma-separated (default 64,128,256,512)")->delimiter(',');
  c->add_option("--kv-window", a.kv.window, "observation window (default 8)");
  add_window_at_arg(c, a.kv);
  c->add_option("--kv-kernel", a.kv.kernel, "pooling kernel (default 5)");
  c->add_option("--kv-pool", a.kv.pool, "pooling: avg or max (default avg)");
  c->add_option("--kv-srh", a.kv.srh, "semantic retrieval heads per layer (compresskv, default 4)");
  c->add_option("--kv-profile", a.kv.profile, "model profile (compresskv; default: a shipped profile matching the model)");
  c->add_option("--kv-sinks", a.kv.sinks, "attention sinks kept (streamingllm, default 4)");
  c->add_option("--kv-alpha", a.kv.alpha, "Ada-KV uniform share (default 0.2)");
  c->add_option("--kv-beta", a.kv.beta, "PyramidKV beta (default 20)");
  c->add_option("--kv-type", a.kv.kv_type, "cache rows: f32 (default) or f16");
  c->add_option("--matmul", a.kv.matmul, "exact (default) or q8");
  c->add_option("-o,--output", a.out, "output directory (default " + default_out + ")");
  c->add_flag("--no-plots", a.no_plots, "write no PNG figures");
  c->add_option("--pool-gib", a.pool_gib,
                "KV pool of a grid in GiB (default 4): cells are copied and decoded in groups that fit it with room "
                "for a full cache each; on a GPU the pool is allocated, and a larger one decodes more cells a step")
      ->check(real_range(0, 4096, true));
}

struct Setup {
  std::unique_ptr<Model> m;
  std::unique_ptr<Tokenizer> tok;
  Profile prof;
  SessionOptions base;
  std::vector<eval::Cell> cells;
};

// Loads the model and its tokenizer (the grid's lists are checked first).
void load_model(const Common& a, Setup& s) {
  s.cells = eval::grid_cells(a.methods, a.budgets);
  eval::make_output_dir(a.out);  // before the work: a bad -o fails now
  s.m = load(a.model);
  s.tok = tokenizer_for(*s.m);
}

// Checks every cell's settings (and loads the profile) before any work.
void check_cells(const Common& a, Setup& s) {
  SessionArgs kv = a.kv;
  bool needs_profile = false;
  for (const auto& m : a.methods) {
    auto [sel, alloc] = eval::split_pair(m);
    needs_profile = needs_profile || profile_needed(m, sel, alloc);
  }
  kv.method = needs_profile ? "compresskv" : "full";  // loads (or finds) the profile when one is read
  kv.budget = a.budgets.empty() ? 0 : a.budgets[0];
  s.base = session_options(kv, *s.m, s.prof);
  s.base.method = "full";
  s.base.make_backend = backend_factory(a.model, s.base.q8_matmul);
  eval::set_grid_pool_bytes(a.pool_gib * (1 << 30));
  eval::check_cells(*s.m, s.cells, s.base);
}

void say_cells(const Setup& s, size_t prompts) {
  std::fprintf(stderr, "%zu prompts x %zu cells (FullKV and %zu method x budget pairs)\n", prompts, s.cells.size(),
               s.cells.size() - 1);
}

int max_of(const std::vector<int>& v) { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }

// The y axis of a task's score-against-budget plot.
std::string ylabel_of(const std::string& task) {
  if (task == "niah") return "NIAH score (ROUGE-1 recall x 100)";
  if (task == "ruler") return "RULER score (string_match_all)";
  return "mean KL divergence from FullKV (nats)";
}

void finish(const Common& a, const eval::Results& r, const std::string& extra_md,
            const std::function<std::vector<std::string>()>& more_plots) {
  const std::string ylabel = ylabel_of(r.task);
  eval::make_output_dir(a.out);
  const std::string md = eval::write_results(a.out, r, extra_md);
  std::vector<std::string> files{a.out + "/results.json", a.out + "/table.md"};
  if (!a.no_plots) {
    for (auto& f : eval::write_summary_plot(a.out, r, ylabel)) files.push_back(f);
    if (more_plots)
      for (auto& f : more_plots()) files.push_back(f);
  }
  std::printf("%s", md.c_str());
  std::fprintf(stderr, "wrote %zu files in %s\n", files.size(), a.out.c_str());
}

// ---- niah

struct NiahArgs {
  Common c;
  std::string haystack, needles, style = "auto";
  eval::NiahGrid grid;
  int max_new = 50;
};

int niah(const NiahArgs& a) {
  eval::check_niah_grid(a.grid);
  if (a.haystack.empty()) throw Error("eval niah needs --haystack DIR|FILE (the text the needles are hidden in)");
  Setup s;
  load_model(a.c, s);
  const std::vector<eval::Needle> needles = a.needles.empty() ? eval::evaluation_needles() : eval::read_needles(a.needles);
  const eval::Haystack hay = eval::Haystack::load(a.haystack, *s.tok, max_of(a.grid.lengths));
  const auto chat = eval::prompt_style(s.m->vocab, a.style);
  const auto probes = eval::niah_probes(*s.tok, hay, needles, a.grid, chat ? &*chat : nullptr);
  eval::check_probe_lengths(probes, a.max_new, s.m->config.context);
  check_cells(a.c, s);
  say_cells(s, probes.size());
  double weight = 0;
  for (auto& p : probes) weight += static_cast<double>(p.tokens.size());
  eval::Progress prog("eval niah", static_cast<int>(probes.size()), weight);
  eval::Results r = eval::run_niah(*s.m, *s.tok, probes, needles, s.cells, s.base, a.max_new,
                                   [&](size_t i) { prog.advance(static_cast<double>(probes[i].tokens.size())); });
  prog.finish();
  finish(a.c, r, "", [&] { return eval::write_heatmaps(a.c.out, r, s.cells, a.grid); });
  return 0;
}

// ---- ruler

struct RulerArgs {
  Common c;
  std::string haystack, style = "auto";
  std::vector<std::string> tasks = eval::ruler_tasks();
  std::vector<int> lengths{4096};
  int samples = 5, max_new = 0;
  uint64_t seed = 42;
};

int ruler(const RulerArgs& a) {
  eval::check_ruler_tasks(a.tasks);
  if (a.lengths.empty()) throw Error("--lengths is empty");
  for (int n : a.lengths)
    if (n < 1) throw Error("--lengths: " + std::to_string(n) + " is not a positive token count");
  if (a.samples < 1) throw Error("--samples must be at least 1");
  if (a.haystack.empty()) throw Error("eval ruler needs --haystack DIR|FILE (the essay text of the niah tasks)");
  Setup s;
  load_model(a.c, s);
  const eval::Haystack hay = eval::Haystack::load(a.haystack, *s.tok, max_of(a.lengths));
  const auto chat = eval::prompt_style(s.m->vocab, a.style);
  std::vector<eval::RulerSample> samples;
  double weight = 0;
  for (int n : a.lengths)
    for (const auto& t : a.tasks)
      for (int i = 0; i < a.samples; ++i) {
        samples.push_back(eval::ruler_sample(*s.tok, hay, t, n, i, a.seed, chat ? &*chat : nullptr));
        const auto& smp = samples.back();
        const int64_t need = static_cast<int64_t>(smp.tokens.size()) + (a.max_new > 0 ? a.max_new : smp.max_new);
        if (need > s.m->config.context)
          throw Error("--lengths: " + std::to_string(n) + " tokens and the answer of task " + t + " exceed the model's "
                      "context of " + std::to_string(s.m->config.context) + " positions");
        weight += static_cast<double>(smp.tokens.size());
      }
  check_cells(a.c, s);
  say_cells(s, samples.size());
  eval::Progress prog("eval ruler", static_cast<int>(samples.size()), weight);
  eval::Results r = eval::run_ruler(*s.m, *s.tok, samples, s.cells, s.base, a.max_new, [&](size_t i) {
    prog.advance(static_cast<double>(samples[i].tokens.size()), samples[i].task);
  });
  prog.finish();
  finish(a.c, r, "\n# Per task\n" + eval::per_group_tables(r), {});
  return 0;
}

// ---- kld

struct KldArgs {
  Common c;
  std::string file;
  eval::KldOptions opt;
};

int kld(const KldArgs& a) {
  Setup s;
  load_model(a.c, s);
  std::vector<int> ids = s.tok->encode(prompt_text("", a.file), false);
  if (s.tok->add_bos() && s.tok->bos() >= 0) ids.insert(ids.begin(), s.tok->bos());
  eval::check_kld_input(*s.m, ids, a.file, a.opt);
  check_cells(a.c, s);
  say_cells(s, 1);
  eval::Progress prog("eval kld", static_cast<int>(s.cells.size()), static_cast<double>(s.cells.size()));
  eval::Results r = eval::run_kld(*s.m, ids, a.file, s.cells, s.base, a.opt, [&](size_t i) {
    prog.advance(1, eval::method_label(s.cells[i].method) + (s.cells[i].full() ? "" : " " + std::to_string(s.cells[i].budget)));
  });
  prog.finish();
  finish(a.c, r, "", {});
  return 0;
}

// ---- plot: the figures again from a results.json (e.g. one made on a
// machine without gnuplot)

struct PlotArgs {
  std::string in, out;
};

int plot(const PlotArgs& a) {
  std::ifstream f(a.in);
  if (!f) throw file_error(a.in, "cannot read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(a.in, std::string("not JSON: ") + e.what());
  }
  const eval::Results r = eval::Results::from_json(j, a.in);
  std::string dir = a.out.empty() ? std::filesystem::path(a.in).parent_path().string() : a.out;
  if (dir.empty()) dir = ".";
  eval::make_output_dir(dir);
  std::vector<std::string> files = eval::write_summary_plot(dir, r, ylabel_of(r.task));
  if (r.task == "niah") {
    std::vector<eval::Cell> cells;
    eval::NiahGrid g;
    g.lengths.clear(), g.depths.clear();
    for (const eval::Row& row : r.rows) {
      const eval::Cell c{row.method, row.budget.value_or(0)};
      if (std::none_of(cells.begin(), cells.end(), [&](const eval::Cell& x) { return x.method == c.method && x.budget == c.budget; }))
        cells.push_back(c);
      if (std::find(g.lengths.begin(), g.lengths.end(), row.length) == g.lengths.end())
        g.lengths.push_back(static_cast<int>(row.length));
      if (row.depth && std::find(g.depths.begin(), g.depths.end(), *row.depth) == g.depths.end())
        g.depths.push_back(*row.depth);
    }
    std::sort(g.lengths.begin(), g.lengths.end());
    std::sort(g.depths.begin(), g.depths.end());
    for (auto& p : eval::write_heatmaps(dir, r, cells, g)) files.push_back(p);
  }
  std::fprintf(stderr, "wrote %zu figures in %s\n", files.size(), dir.c_str());
  return files.empty() ? 1 : 0;
}

}  // namespace

CLI::App* add_eval(CLI::App& app, std::function<int()>& action) {
  CLI::App* e = app.add_subcommand("eval", "quality of every method and budget: niah, ruler, kld (DESIGN.md 6)");
  e->require_subcommand(1);

  static NiahArgs na;
  CLI::App* n = e->add_subcommand("niah", "needle in a haystack: ROUGE-1 recall x 100 over lengths x depths");
  add_common(n, na.c, "eval-niah");
  n->add_option("--haystack", na.haystack, "haystack: a .txt file or a directory of .txt files")->required();
  n->add_option("--needles", na.needles, "needle set JSONL (default: the built-in evaluation set)");
  n->add_option("--lengths", na.grid.lengths, "haystack lengths in tokens (default 1000,2000,4000)")->delimiter(',');
  n->add_option("--depths", na.grid.depths, "needle depths in [0, 1] (default 0.1,0.3,0.5,0.7,0.9)")->delimiter(',');
  n->add_option("--prompt-style", na.style, "auto (chat template when the model has one), chat or plain");
  n->add_option("--max-new", na.max_new, "answer tokens at most (default 50)");
  n->callback([&action] { action = [] { return niah(na); }; });

  static RulerArgs ra;
  CLI::App* r = e->add_subcommand("ruler", "RULER-style synthetic tasks, string_match_all x 100");
  add_common(r, ra.c, "eval-ruler");
  r->add_option("--haystack", ra.haystack, "essay haystack: a .txt file or a directory of .txt files")->required();
  r->add_option("--tasks", ra.tasks, "tasks, comma-separated (default: all 11)")->delimiter(',');
  r->add_option("--lengths", ra.lengths, "prompt lengths in tokens (default 4096)")->delimiter(',');
  r->add_option("--samples", ra.samples, "samples per task and length (default 5)");
  r->add_option("--seed", ra.seed, "generator seed (default 42)");
  r->add_option("--prompt-style", ra.style, "auto (chat template when the model has one), chat or plain");
  r->add_option("--max-new", ra.max_new, "answer tokens at most (default: RULER's per task: 128, vt 30, cwe 120, fwe 50)");
  r->callback([&action] { action = [] { return ruler(ra); }; });

  static KldArgs ka;
  CLI::App* k = e->add_subcommand("kld", "KL divergence of next-token distributions against FullKV");
  add_common(k, ka.c, "eval-kld");
  k->add_option("-f,--file", ka.file, "text file: the first --n-ctx tokens are the prompt")->required();
  k->add_option("--n-ctx", ka.opt.n_ctx, "prompt tokens (default 2048)");
  k->add_option("--n-eval", ka.opt.n_eval, "teacher-forced tokens compared (default 256)");
  k->callback([&action] { action = [] { return kld(ka); }; });

  static PlotArgs pa;
  CLI::App* p = e->add_subcommand("plot", "the PNG figures again from a results.json (needs gnuplot)");
  p->add_option("-i,--input", pa.in, "results.json of eval niah, ruler or kld")->required();
  p->add_option("-o,--output", pa.out, "output directory (default: the input's)");
  p->callback([&action] { action = [] { return plot(pa); }; });
  return e;
}

}  // namespace ckv::cli
