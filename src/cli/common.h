// Options and set-up shared by the subcommands.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/session.h"
#include "model/model.h"
#include "profile/profile.h"
#include "tokenizer/tokenizer.h"

namespace ckv::cli {

struct ModelArgs {
  std::string model;
  std::string tokenizer;  // llama2.c tokenizer file
  int threads = 0;        // 0 = all cores
};
void add_model_args(CLI::App* app, ModelArgs& a);
// Loads the model and sets the thread count.
std::unique_ptr<Model> load(const ModelArgs& a);
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
  float alpha = 0.2f;
  std::string profile;
  std::string dump_kept;
  std::string matmul = "exact";  // --matmul exact|q8
  std::string kv_type = "f32";   // --kv-type f32|f16
};
void add_session_args(CLI::App* app, SessionArgs& a);
// Session options for these flags; loads and checks the profile into `prof`.
SessionOptions session_options(const SessionArgs& a, const Model& m, Profile& prof);
// Path of a shipped profile (profiles/) matching the model's shape and
// fingerprint, "" when none.
std::string shipped_profile_for(const Model& m);
// Whether these settings read a profile (SRH selection or error-aware budgets).
bool profile_needed(const std::string& method, const std::string& select, const std::string& alloc);
// --kv-dump-kept: {"prompt_tokens": T, "layers": [[[...], ...], ...]}.
void dump_kept(const std::string& path, const Session& s, int64_t prompt_tokens);

// Prompt text from -p or -f (file contents), "" when neither.
std::string prompt_text(const std::string& text, const std::string& file);
std::string human_bytes(double b);
// Resident set size of this process now and at its peak (bytes, /proc).
size_t rss_now();
size_t rss_peak();

}  // namespace ckv::cli
