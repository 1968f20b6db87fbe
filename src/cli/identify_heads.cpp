// compresskv identify-heads: the semantic retrieval heads of a model
// (DESIGN.md 2.4), written as a model profile; the probes' responses and
// ROUGE-1 recalls go to a side file next to it (PROFILE.probes.jsonl).
#include <cstdio>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "eval/progress.h"
#include "profile/identify_heads.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

struct Args {
  ModelArgs model;
  std::string haystack, needles, out = "profile.json", style = "auto";
  IdentifyOptions opt;
};

// PROFILE.json -> PROFILE.probes.jsonl
std::string side_file(const std::string& out) {
  std::string base = out;
  if (base.size() > 5 && base.compare(base.size() - 5, 5, ".json") == 0) base.resize(base.size() - 5);
  return base + ".probes.jsonl";
}

int identify(const Args& a) {
  eval::check_niah_grid(a.opt.grid);
  if (a.opt.max_new < 1) throw Error("--max-new must be at least 1");
  check_output_path(a.out, "-o");
  check_output_path(side_file(a.out), "-o (its side file)");
  auto m = load(a.model);
  auto tok = tokenizer_for(*m);
  IdentifyOptions opt = a.opt;
  opt.make_backend = backend_factory(a.model, false);
  const std::vector<eval::Needle> needles =
      a.needles.empty() ? eval::calibration_needles() : eval::read_needles(a.needles);
  int max_len = 0;
  for (int n : a.opt.grid.lengths) max_len = std::max(max_len, n);
  const eval::Haystack hay = eval::Haystack::load(a.haystack, *tok, max_len);
  const auto chat = eval::prompt_style(m->vocab, a.style);
  const auto probes = eval::niah_probes(*tok, hay, needles, a.opt.grid, chat ? &*chat : nullptr);
  eval::check_probe_lengths(probes, a.opt.max_new, m->config.context);
  int no_span = 0;
  double weight = 0;
  for (auto& p : probes) no_span += !p.span, weight += static_cast<double>(p.tokens.size());
  if (no_span)
    std::fprintf(stderr, "warning: %d of %zu probes have no answer span in their prompt (DESIGN.md 2.4 step 4) and "
                 "cannot count\n", no_span, probes.size());

  eval::Progress prog("identify-heads", static_cast<int>(probes.size()), weight);
  int counted = 0;
  IdentifyResult r;
  std::vector<ProbeRecord> partial;
  const std::string side = side_file(a.out);
  try {
    r = identify_heads(*m, *tok, probes, needles, opt, [&](size_t i, const ProbeRecord& rec) {
      counted += rec.counted;
      partial.push_back(rec);
      char note[64];
      std::snprintf(note, sizeof note, "%d counted", counted);
      prog.advance(static_cast<double>(probes[i].tokens.size()), note);
    });
  } catch (const Error&) {
    // Keep what the probes said, so a failure can be understood.
    if (!partial.empty()) eval::write_text(side, probe_records_jsonl(partial, needles));
    throw;
  }
  prog.finish();

  nlohmann::json& pv = r.profile.provenance["identify_heads"];
  pv["needles"] = a.needles.empty() ? std::string("built-in calibration set") : a.needles;
  pv["needle_set"] = nlohmann::json::array();
  for (auto& n : needles) pv["needle_set"].push_back({{"needle", n.needle}, {"question", n.question}, {"answer", n.answer}});
  pv["haystack"] = a.haystack;
  pv["haystack_files"] = hay.files.size();
  pv["haystack_tokens"] = hay.tokens.size();
  pv["prompt_style"] = chat ? "chat (" + chat->family + ")" : std::string("plain");
  pv["model"] = a.model.model;
  pv["engine"] = std::string("compresskv ") + CKV_COMMIT;
  pv["side_file"] = side;
  r.profile.save(a.out);
  eval::write_text(side, probe_records_jsonl(r.probes, needles));
  std::fprintf(stderr, "wrote %s (%d of %zu probes counted) and %s\n", a.out.c_str(),
               r.profile.provenance["identify_heads"]["counted"].get<int>(), probes.size(), side.c_str());
  const auto& top = r.profile.srh_ranking;
  for (size_t l = 0; l < top.size(); ++l) {
    std::printf("layer %2zu:", l);
    for (size_t i = 0; i < top[l].size() && i < 4; ++i) std::printf(" %d (%.3f)", top[l][i], r.profile.srh_scores[l][i]);
    std::printf("\n");
  }
  return 0;
}

}  // namespace

CLI::App* add_identify_heads(CLI::App& app, std::function<int()>& action) {
  static Args args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("identify-heads", "rank each layer's semantic retrieval heads (DESIGN.md 2.4)");
  add_model_args(c, a->model);
  c->add_option("--haystack", a->haystack, "haystack: a .txt file or a directory of .txt files")->required();
  c->add_option("--needles", a->needles,
                "needle set JSONL (needle, question, answer|real_needle; default: the built-in calibration set)");
  c->add_option("--lengths", a->opt.grid.lengths, "haystack lengths in tokens (default 1000,2000,4000)")
      ->delimiter(',');
  c->add_option("--depths", a->opt.grid.depths, "needle depths in [0, 1] (default 0.1,0.3,0.5,0.7,0.9)")
      ->delimiter(',');
  c->add_option("--prompt-style", a->style, "auto (chat template when the model has one), chat or plain");
  c->add_option("--max-new", a->opt.max_new, "answer tokens at most (default 50)");
  c->add_option("--min-recall", a->opt.min_recall,
                "a probe counts when its ROUGE-1 recall exceeds this (default 0.5)");
  c->add_option("-o,--output", a->out, "profile to write (default profile.json); probes go to PROFILE.probes.jsonl");
  c->callback([a, &action] { action = [a] { return identify(*a); }; });
  return c;
}

}  // namespace ckv::cli
