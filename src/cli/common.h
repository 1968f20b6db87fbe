// Options and set-up shared by the subcommands.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/sampler.h"
#include "engine/session.h"
#include "kernels/cuda/cuda_backend.h"
#include "model/model.h"
#include "profile/profile.h"
#include "tokenizer/tokenizer.h"

namespace ckv::cli {

// Range checks for numeric flags, as CLI11 validators: the value must parse
// whole and lie in the range, else CLI11 reports "FLAG: must be ..., found X"
// (main.cpp prints it as "FLAG must be ..."). `note` is added to the sentence,
// e.g. "(-1: until end of sequence)".
CLI::Validator int_range(int64_t lo, int64_t hi, const std::string& note = "");
// Finite reals in [lo, hi], or (lo, hi] when lo_open.
CLI::Validator real_range(double lo, double hi, bool lo_open = false, const std::string& note = "");
// bench's own flags (-p, -n, -d, -r), checked by name: ranges attached to the
// options (call it after they are added; options it does not find are left
// alone), and the rule that a test needs -p or -n above 0.
void check_bench_flags(CLI::App* bench);
// Error naming `flag` unless `path` can be created or replaced: its folder
// exists and is writable, and it is not a folder itself. Call it before the work.
void check_output_path(const std::string& path, const std::string& flag);
// True when every logit is finite (engine/sampler.h); run and perplexity stop
// with an error otherwise (a model with a NaN weight, say), eval should too.
using ckv::finite_logits;
// One stderr warning.
void warn(const std::string& what);

struct ModelArgs {
  std::string model;
  std::string tokenizer;  // llama2.c tokenizer file
  int threads = 0;        // 0 = all cores
  std::string device;     // --device cpu|cuda; "" = cuda when built with CUDA and a GPU is present
  std::string random_weights;  // bench: a config.json whose shape gets seeded random weights (speed only)
  uint64_t seed = 0;
  int tp = 1;  // --tp: devices the model is split over (run, bench)
};
void add_model_args(CLI::App* app, ModelArgs& a);
// --tp N (tensor parallelism, engine/tp.h) on the subcommands that take it.
void add_tp_arg(CLI::App* app, ModelArgs& a);
// Loads the model (or builds the random-weights model) and sets the thread count.
std::unique_ptr<Model> load(const ModelArgs& a);
// "cpu" or "cuda": --device, or the default (cuda when available).
std::string device_of(const ModelArgs& a);
// Makes the backend --device names (q8: the CPU's --matmul q8).
std::function<std::unique_ptr<Backend>()> backend_factory(const ModelArgs& a, bool q8);
// Rank r's backend of --tp (CUDA: device r; checks that --tp devices exist).
std::function<std::unique_ptr<Backend>(int rank)> rank_backend_factory(const ModelArgs& a, bool q8);
// The model's tokenizer, or an error saying the model has none.
std::unique_ptr<Tokenizer> tokenizer_for(const Model& m);

// Flags of a session (run, bench): the --kv-* compression settings, the cache
// row type and the decode matmul mode.
struct SessionArgs {
  std::string method = "full";
  std::string select, alloc;  // --kv-select / --kv-alloc: a (selection, allocation) pair
  int budget = 0;
  int window = 8, kernel = 5, srh = 4, sinks = 4, beta = 20;
  std::string pool = "avg";
  std::string window_at = "end";  // --kv-window-at end|user
  float alpha = 0.2f;
  std::string profile;
  std::string dump_kept;
  std::string matmul = "exact";  // --matmul exact|q8
  std::string kv_type;           // --kv-type f32|f16; "" = default_kv_type()
  const CLI::App* app = nullptr;  // the subcommand: which flags were given
};
void add_session_args(CLI::App* app, SessionArgs& a);
// --kv-window-at (run, bench and eval share it).
void add_window_at_arg(CLI::App* app, SessionArgs& a);
// --kv-type's default where not given: f16 pages on CUDA (what its split-K
// decode kernel reads; llama.cpp's default), f32 on the CPU (exact).
void default_kv_type(SessionArgs& kv, const ModelArgs& m);
// Session options for these flags; loads and checks the profile into `prof`
// (no --kv-type: f32).
// Checks the method name first, then warns about flags the method ignores.
SessionOptions session_options(const SessionArgs& a, const Model& m, Profile& prof,
                                const Profile* loaded = nullptr);
// Path of a shipped profile (profiles/) matching the model's shape and
// fingerprint, "" when none.
std::string shipped_profile_for(const Model& m);
// Whether these settings read a profile (SRH selection or error-aware budgets).
bool profile_needed(const std::string& method, const std::string& select, const std::string& alloc);
// --kv-dump-kept: {"prompt_tokens": T, "layers": [[[...], ...], ...]}.
void dump_kept(const std::string& path, const Session& s, int64_t prompt_tokens);

// Prompt text from -p or -f (file contents; "-" is standard input), "" when
// neither. Bytes that are not UTF-8 become U+FFFD, with one warning (what a
// reference tokenizer sees of a file decoded with errors='replace').
std::string prompt_text(const std::string& text, const std::string& file);
std::string human_bytes(double b);
// Resident set size of this process now and at its peak (bytes, /proc).
size_t rss_now();
size_t rss_peak();

}  // namespace ckv::cli
