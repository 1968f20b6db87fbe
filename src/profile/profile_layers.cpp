#include "profile/profile_layers.h"

#include <omp.h>

#include <cmath>
#include <span>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "engine/session.h"
#include "eval/niah_probe.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "util/error.h"
#include "util/jsonl.h"

namespace ckv {

namespace {

std::string user_prompt(const std::string& content, const ChatTemplate* chat) {
  return chat ? chat->render({{"user", content}}, true) : content;
}

// Haystack text of tokens [start, start + n), begun at a sentence start.
std::string passage(const Tokenizer& tok, const std::vector<int>& hay, size_t start, int n) {
  const size_t end = std::min(hay.size(), start + static_cast<size_t>(n));
  std::string t = tok.decode(std::vector<int>(hay.begin() + static_cast<long>(start), hay.begin() + static_cast<long>(end)));
  if (start > 0)
    if (size_t p = t.find(". "); p != std::string::npos && p < t.size() / 4) t = t.substr(p + 2);
  return t;
}

}  // namespace

std::vector<CalibSet> haystack_calib_sets(const Tokenizer& tok, const eval::Haystack& hay, const ChatTemplate* chat,
                                          int n_prompts, int length) {
  if (n_prompts < 1) throw Error("--calib-prompts must be at least 1");
  if (length < 16) throw Error("--calib-length must be at least 16 tokens");
  const size_t H = hay.tokens.size();
  static const char* kQuestions[] = {
      "What is the main point the author makes in this passage?",
      "Summarize the argument of this passage in one sentence.",
      "What example does the author use in this passage, and why?",
      "What does the author think people usually get wrong here?",
  };
  CalibSet cont{"continue", hay.path + " (passage continuations)", {}};
  CalibSet ques{"questions", hay.path + " (questions about a passage)", {}};
  // 2 * n_prompts passages at evenly spaced places: even ones continue, odd ones are asked about.
  const size_t step = H > static_cast<size_t>(length) ? (H - length) / (2 * n_prompts) : 0;
  for (int i = 0; i < 2 * n_prompts; ++i) {
    const std::string text = passage(tok, hay.tokens, step * i, length);
    if (i % 2 == 0) {
      const std::string p = chat ? user_prompt("Continue this text:\n\n" + text, chat) : text;
      cont.prompts.push_back(eval::prompt_tokens(tok, p, chat != nullptr));
    } else {
      const std::string q = kQuestions[(i / 2) % 4];
      const std::string p = user_prompt(text + "\n\nQuestion: " + q + "\nAnswer:", chat);
      ques.prompts.push_back(eval::prompt_tokens(tok, p, chat != nullptr));
    }
  }
  return {cont, ques};
}

CalibSet read_calib_file(const std::string& path, const Tokenizer& tok, const ChatTemplate* chat) {
  CalibSet s;
  s.source = path;
  s.name = path;
  for_each_jsonl_object(path, "calibration file (--calib)", "an object with \"prompt\" or \"text\"",
                        [&](const nlohmann::json& o, const std::string& where) {
    std::string text;
    bool as_user = false;
    if (auto it = o.find("prompt"); it != o.end() && it->is_string()) text = it->get<std::string>(), as_user = true;
    else if (auto t = o.find("text"); t != o.end() && t->is_string()) text = t->get<std::string>();
    else throw Error(where + ": expected a string field \"prompt\" (a user message) or \"text\" (read as it is)");
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw Error(where + ": empty prompt");
    const std::string p = as_user ? user_prompt(text, chat) : text;
    s.prompts.push_back(eval::prompt_tokens(tok, p, as_user && chat != nullptr));
  });
  if (s.prompts.empty()) throw file_error(path, "holds no calibration prompt");
  return s;
}

std::vector<double> prompt_layer_errors(const Model& m, const Tokenizer& tok, const Profile& profile,
                                        const std::vector<int>& prompt, const LayerErrorOptions& opt, int* steps) {
  const ModelConfig& c = m.config;
  const int L = c.n_layers, H = c.n_heads, G = c.n_kv_heads, hd = c.head_dim, dim = c.dim;
  const int T = static_cast<int>(prompt.size());
  if (T + opt.max_new > c.context)
    throw Error("a calibration prompt of " + std::to_string(T) + " tokens and " + std::to_string(opt.max_new) +
                " decoding steps exceeds the model's context of " + std::to_string(c.context));
  std::vector<double> err(L, 0.0);
  // The full-cache read, keeping the window's queries for the selection.
  SessionOptions fo;
  fo.press = opt.press;
  fo.keep_queries = opt.press.window;
  const Session* full_ptr = nullptr;
  std::vector<std::vector<std::vector<int32_t>>> kept;  // [L][G][n]: prompt rows of O_comp
  // Per step: gather buffers and the engine's prefill attention kernel over them.
  cpu::PrefillScratch ws;
  std::vector<float> dk, dv, att(static_cast<size_t>(H) * hd), o_full(dim), o_comp(dim);
  std::vector<int64_t> start(G);
  fo.on_decode_layer = [&](int l, const float* q, const float* attn) {
    const KvCache& kv = full_ptr->kv();
    // Prefix of head g: its kept prompt rows then the generated rows before this token.
    int pmax = 0;
    for (int g = 0; g < G; ++g) pmax = std::max(pmax, static_cast<int>(kept[l][g].size()) + kv.len(l, g) - 1 - T);
    const size_t row = static_cast<size_t>(G) * hd;
    dk.assign((pmax + 1) * row, 0.0f);
    dv.assign((pmax + 1) * row, 0.0f);
    for (int g = 0; g < G; ++g) {
      std::vector<int32_t> rows = kept[l][g];
      for (int r = T; r < kv.len(l, g) - 1; ++r) rows.push_back(r);
      start[g] = pmax - static_cast<int64_t>(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        kv.key(l, g, rows[i], &dk[(start[g] + i) * row + g * hd]);
        kv.value(l, g, rows[i], &dv[(start[g] + i) * row + g * hd]);
      }
      kv.key(l, g, kv.len(l, g) - 1, &dk[pmax * row + g * hd]);  // this token: the "new" row
      kv.value(l, g, kv.len(l, g) - 1, &dv[pmax * row + g * hd]);
    }
    DenseKV d{dk.data(), dv.data(), pmax, std::span<const int64_t>(start)};
    ws.reserve(pmax + 1, omp_get_max_threads());
    cpu::attention_prefill(q, 0, 1, d, H, G, hd, ws, att.data());
    const Tensor& wo = m.layers[l].wo;
    cpu::matmul(wo, attn, 1, o_full.data());
    cpu::matmul(wo, att.data(), 1, o_comp.data());
    double diff = 0, norm = 0;
    for (int i = 0; i < dim; ++i) {
      const double x = o_comp[i] - o_full[i];
      diff += x * x;
      norm += static_cast<double>(o_full[i]) * o_full[i];
    }
    err[l] += std::sqrt(diff) / (std::sqrt(norm) + 1e-6);
  };
  Session full(m, fo);
  full_ptr = &full;
  std::vector<float> logits(c.vocab_size);
  full.prefill(prompt, logits.data());
  // What 2.1 keeps at the small uniform budget, from the same read.
  SessionOptions so;
  so.select = "srh";
  so.alloc = "uniform";
  so.press = opt.press;
  so.press.budget = opt.budget;
  so.profile = &profile;
  {
    auto comp = full.compress_copy(so);
    kept.assign(L, {});
    for (int l = 0; l < L; ++l) {
      if (comp->kept().empty() || comp->kept()[l].empty()) {  // nothing evicted: every position
        std::vector<int32_t> all(T);
        for (int i = 0; i < T; ++i) all[i] = i;
        kept[l].assign(G, all);
      } else {
        kept[l] = comp->kept()[l];
      }
    }
  }
  int n = 0;
  for (int s = 0; s < opt.max_new; ++s) {
    const int id = Sampler::argmax(logits.data(), c.vocab_size);
    if (tok.is_eog(id)) break;
    full.decode(id, logits.data());
    ++n;
  }
  if (steps) *steps = n;
  return err;
}

std::vector<double> combine_layer_errors(const std::vector<std::vector<double>>& per_set) {
  if (per_set.empty()) throw Error("profile-layers: no calibration set");
  const size_t L = per_set[0].size();
  std::vector<double> mean(L, 0.0);
  for (const auto& v : per_set) {
    double s = 0;
    for (double x : v) s += x;
    for (size_t l = 0; l < L; ++l) mean[l] += (s > 0 ? v[l] / s : 1.0 / L) / per_set.size();
  }
  double s = 0;
  for (double x : mean) s += x;
  for (double& x : mean) x = s > 0 ? x / s : 1.0 / L;
  return mean;
}

LayerScores layer_scores(const Model& m, const Tokenizer& tok, const Profile& profile,
                         const std::vector<CalibSet>& sets, const LayerErrorOptions& opt,
                         const std::function<void(size_t, size_t)>& on_prompt) {
  const int L = m.config.n_layers;
  LayerScores r;
  std::vector<std::vector<double>> sums;
  nlohmann::json js = nlohmann::json::array();
  for (size_t si = 0; si < sets.size(); ++si) {
    std::vector<double> sum(L, 0.0);
    int64_t steps = 0, tokens = 0;
    for (size_t pi = 0; pi < sets[si].prompts.size(); ++pi) {
      int n = 0;
      auto e = prompt_layer_errors(m, tok, profile, sets[si].prompts[pi], opt, &n);
      for (int l = 0; l < L; ++l) sum[l] += e[l];
      steps += n;
      tokens += static_cast<int64_t>(sets[si].prompts[pi].size());
      if (on_prompt) on_prompt(si, pi);
    }
    sums.push_back(sum);
    js.push_back({{"name", sets[si].name}, {"source", sets[si].source}, {"prompts", sets[si].prompts.size()},
                  {"prompt_tokens", tokens}, {"steps", steps}});
  }
  r.e = combine_layer_errors(sums);
  for (auto& s : sums) r.per_set.push_back(combine_layer_errors({s}));
  for (size_t i = 0; i < js.size(); ++i) js[i]["scores"] = r.per_set[i];
  r.provenance = {{"method",
                   "DESIGN.md 2.5: relative error of W_o attention output over the positions 2.1 keeps (semantic "
                   "retrieval heads of this profile, uniform budget) against the full cache, greedy decoding with "
                   "the full cache; normalised per set, averaged, normalised"},
                  {"budget", opt.budget},
                  {"max_new", opt.max_new},
                  {"window", opt.press.window},
                  {"kernel", opt.press.kernel},
                  {"n_srh", opt.press.n_srh},
                  {"sets", js}};
  return r;
}

}  // namespace ckv
