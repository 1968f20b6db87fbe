#include "profile/identify_heads.h"

#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/session.h"
#include "eval/generate.h"
#include "eval/rouge.h"
#include "profile/head_scores.h"
#include "util/error.h"

namespace ckv {

ProbeRecord run_identify_probe(const Model& m, const Tokenizer& tok, const eval::NiahProbe& p,
                               const eval::Needle& n, const IdentifyOptions& opt, HeadScores& scores) {
  const ModelConfig& c = m.config;
  ProbeRecord rec;
  rec.needle = p.needle;
  rec.length = p.length;
  rec.depth = p.depth;
  rec.tokens = static_cast<int>(p.tokens.size());
  const int a = p.span ? p.span->a : 0, b = p.span ? p.span->b : 1;
  if (p.span) rec.span_a = a, rec.span_b = b;
  ProbeHeadSums sums(c.n_layers, c.n_heads, p.tokens, a, std::min<int>(b, static_cast<int>(p.tokens.size())));

  SessionOptions so;
  so.make_backend = opt.make_backend;
  AttentionProbe probe;  // the engine's own decode attention, summed over [a, b)
  probe.lo = a;
  probe.hi = b;
  probe.on_layer = [&](int l, const float* mass, const int32_t* argmax) { sums.layer(l, mass, argmax); };
  so.probe = &probe;
  Session s(m, so);
  // The last prompt token is read as a decode step so that the first
  // generated token's attention comes from the probe (as the reference does).
  std::vector<int> head(p.tokens.begin(), p.tokens.end() - 1);
  std::vector<float> logits(c.vocab_size);
  if (!head.empty()) s.prefill(head, nullptr);
  s.decode(p.tokens.back(), logits.data());
  eval::GenerateOptions go;
  go.max_new = opt.max_new;
  go.on_token = [&](int, int id) { sums.token(id); };
  eval::Answer ans = eval::greedy_answer(s, tok, logits, go);
  rec.response = ans.text;
  rec.recall = eval::rouge1_recall(n.answer, ans.text);
  rec.steps_in_span = sums.steps_in_span();
  rec.counted = p.span.has_value() && rec.recall > opt.min_recall;
  if (rec.counted) scores.add(sums);
  return rec;
}

IdentifyResult identify_heads(const Model& m, const Tokenizer& tok, const std::vector<eval::NiahProbe>& probes,
                              const std::vector<eval::Needle>& needles, const IdentifyOptions& opt,
                              const std::function<void(size_t, const ProbeRecord&)>& on_probe) {
  const ModelConfig& c = m.config;
  if (probes.empty()) throw Error("identify-heads: no probes (empty --lengths, --depths or needle set)");
  HeadScores scores(c.n_layers, c.n_heads);
  IdentifyResult r;
  for (size_t i = 0; i < probes.size(); ++i) {
    r.probes.push_back(run_identify_probe(m, tok, probes[i], needles.at(probes[i].needle), opt, scores));
    if (on_probe) on_probe(i, r.probes.back());
  }
  int answered = 0, spans = 0;
  for (auto& p : r.probes) answered += p.recall > opt.min_recall, spans += p.span_a >= 0;
  if (scores.counted() == 0)
    throw Error("identify-heads: no probe counts (" + std::to_string(answered) + " of " +
                std::to_string(probes.size()) + " answered with ROUGE-1 recall > " + std::to_string(opt.min_recall) +
                ", " + std::to_string(spans) + " found their answer span): the head ranking would be arbitrary");

  Profile& pr = r.profile;
  pr.arch = c.arch;
  pr.n_layers = c.n_layers;
  pr.n_heads = c.n_heads;
  pr.n_kv_heads = c.n_kv_heads;
  pr.head_dim = c.head_dim;
  pr.fingerprint = m.fingerprint();
  const auto sem = scores.semantic(), ret = scores.retrieval();
  nlohmann::json ret_scores = nlohmann::json::array();
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<int> rs = rank_heads(sem[l]), rr = rank_heads(ret[l]);
    std::vector<double> ss, sr;
    for (int h : rs) ss.push_back(sem[l][h]);
    for (int h : rr) sr.push_back(ret[l][h]);
    pr.srh_ranking.push_back(rs);
    pr.srh_scores.push_back(ss);
    pr.retrieval_ranking.push_back(rr);
    ret_scores.push_back(sr);
  }
  pr.provenance["identify_heads"] = {
      {"method",
       "DESIGN.md 2.4: semantic retrieval score (attention mass over the answer span on in-span steps), and the "
       "traditional retrieval score of Wu et al. beside it"},
      {"lengths", opt.grid.lengths},
      {"depths", opt.grid.depths},
      {"needle_count", needles.size()},
      {"max_new", opt.max_new},
      {"min_recall", opt.min_recall},
      {"probes", probes.size()},
      {"counted", scores.counted()},
      {"answered", answered},
      {"with_span", spans},
      {"retrieval_scores", ret_scores},
  };
  return r;
}

std::string probe_records_jsonl(const std::vector<ProbeRecord>& records, const std::vector<eval::Needle>& needles) {
  std::ostringstream ss;
  for (const ProbeRecord& p : records) {
    nlohmann::json o = {{"needle", p.needle},
                        {"answer", needles.at(p.needle).answer},
                        {"length", p.length},
                        {"depth", p.depth},
                        {"tokens", p.tokens},
                        {"span", p.span_a >= 0 ? nlohmann::json{p.span_a, p.span_b} : nlohmann::json(nullptr)},
                        {"response", p.response},
                        {"recall", p.recall},
                        {"steps_in_span", p.steps_in_span},
                        {"counted", p.counted}};
    ss << o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return ss.str();
}

}  // namespace ckv
