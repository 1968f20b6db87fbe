// compresskv profile-layers: each layer's eviction error e_l (DESIGN.md 2.5)
// on calibration prompts, added to a profile made by identify-heads.
#include <cstdio>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "eval/niah_probe.h"
#include "eval/progress.h"
#include "profile/profile_layers.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

struct Args {
  ModelArgs model;
  std::string profile, haystack, out, style = "auto";
  std::vector<std::string> calib;
  int prompts = 4, length = 1500;
  int window = 8, kernel = 5, srh = 4;
  LayerErrorOptions opt;
};

int profile_layers(Args a) {
  if (a.haystack.empty() == a.calib.empty())
    throw Error("profile-layers needs calibration prompts: --haystack DIR|FILE (two default sets built from it) or "
                "--calib FILE ... (one set per JSONL file), not both");
  if (a.opt.budget <= a.window) throw Error("--budget " + std::to_string(a.opt.budget) + " must exceed --kv-window " +
                                            std::to_string(a.window));
  if (a.opt.max_new < 1) throw Error("--max-new must be at least 1");
  check_output_path(a.out.empty() ? a.profile : a.out, a.out.empty() ? "--profile" : "-o");
  if (a.model.device == "cuda")
    std::fprintf(stderr, "warning: profile-layers reads the cache rows on the host: it runs on the CPU\n");
  auto m = load(a.model);
  auto tok = tokenizer_for(*m);
  Profile prof = Profile::load(a.profile);
  const ModelConfig& c = m->config;
  const std::string warn = prof.check_model(c.arch, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, m->fingerprint());
  if (!warn.empty()) std::fprintf(stderr, "warning: %s\n", warn.c_str());
  a.opt.press.window = a.window;
  a.opt.press.kernel = a.kernel;
  a.opt.press.n_srh = a.srh;
  const auto chat = eval::prompt_style(m->vocab, a.style);
  std::vector<CalibSet> sets;
  if (!a.haystack.empty()) {
    const eval::Haystack hay = eval::Haystack::load(a.haystack, *tok, 2 * static_cast<int64_t>(a.length));
    sets = haystack_calib_sets(*tok, hay, chat ? &*chat : nullptr, a.prompts, a.length);
  } else {
    for (const auto& f : a.calib) sets.push_back(read_calib_file(f, *tok, chat ? &*chat : nullptr));
  }
  int n = 0;
  double weight = 0;
  for (auto& s : sets)
    for (auto& p : s.prompts) {
      ++n, weight += static_cast<double>(p.size());
      if (static_cast<int64_t>(p.size()) + a.opt.max_new > c.context)
        throw Error(s.source + ": a calibration prompt of " + std::to_string(p.size()) + " tokens and " +
                    std::to_string(a.opt.max_new) + " steps exceeds the model's context of " +
                    std::to_string(c.context) + " (--calib-length / --max-new)");
    }
  eval::Progress prog("profile-layers", n, weight);
  LayerScores r = layer_scores(*m, *tok, prof, sets, a.opt, [&](size_t si, size_t pi) {
    prog.advance(static_cast<double>(sets[si].prompts[pi].size()), sets[si].name);
  });
  prog.finish();
  prof.layer_scores = r.e;
  r.provenance["prompt_style"] = chat ? "chat (" + chat->family + ")" : std::string("plain");
  r.provenance["model"] = a.model.model;
  r.provenance["engine"] = std::string("compresskv ") + CKV_COMMIT;
  if (!a.haystack.empty())
    r.provenance["haystack"] = a.haystack, r.provenance["calib_prompts"] = a.prompts,
    r.provenance["calib_length"] = a.length;
  prof.provenance["profile_layers"] = r.provenance;
  const std::string out = a.out.empty() ? a.profile : a.out;
  prof.save(out);
  std::fprintf(stderr, "wrote %s: layer scores from %zu calibration sets (%d prompts)\n", out.c_str(), sets.size(), n);
  for (size_t l = 0; l < r.e.size(); ++l) std::printf("layer %2zu: %.4f\n", l, r.e[l]);
  return 0;
}

}  // namespace

CLI::App* add_profile_layers(CLI::App& app, std::function<int()>& action) {
  static Args args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("profile-layers", "measure each layer's eviction error into a profile (DESIGN.md 2.5)");
  add_model_args(c, a->model);
  c->add_option("--profile", a->profile, "profile made by identify-heads (its SRH ranking selects the kept positions)")
      ->required();
  c->add_option("--haystack", a->haystack, "text for the two default calibration sets (continuations, questions)");
  c->add_option("--calib", a->calib, "calibration set JSONL ({\"prompt\": ...} or {\"text\": ...} a line); repeatable");
  c->add_option("--budget", a->opt.budget, "tokens kept per layer while measuring (default 32)");
  c->add_option("--max-new", a->opt.max_new, "greedy decoding steps per prompt (default 32)");
  c->add_option("--calib-prompts", a->prompts, "prompts per default set (default 4)");
  c->add_option("--calib-length", a->length, "tokens of each default prompt's passage (default 1500)");
  c->add_option("--kv-window", a->window, "observation window (default 8)");
  c->add_option("--kv-kernel", a->kernel, "pooling kernel (default 5)");
  c->add_option("--kv-srh", a->srh, "semantic retrieval heads per layer (default 4)");
  c->add_option("--prompt-style", a->style, "auto (chat template when the model has one), chat or plain");
  c->add_option("-o,--output", a->out, "profile to write (default: --profile, updated in place)");
  c->callback([a, &action] { action = [a] { return profile_layers(*a); }; });
  return c;
}

}  // namespace ckv::cli
