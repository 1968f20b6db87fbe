// compresskv run: generate text from a prompt (optionally as a chat turn).
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <utility>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "engine/sampler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/prompt.h"
#include "tokenizer/stop_filter.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

struct RunArgs {
  ModelArgs model;
  SessionArgs kv;
  std::string prompt, file, system, chat_template;
  bool chat = false, ignore_eos = false;
  int n_predict = -1, ctx = 0;
  float temp = 0.8f, top_p = 0.95f;
  float frequency_penalty = 0.0f, presence_penalty = 0.0f, repeat_penalty = 1.0f;
  int top_k = 40;
  int64_t seed = -1;
  std::vector<std::string> stop, logit_bias;
};

// llama.cpp's --logit-bias TOKEN_ID(+/-)BIAS ("15043+1", "2-100"), each id
// below the vocabulary.
std::vector<std::pair<int, float>> parse_logit_bias(const std::vector<std::string>& args, int vocab) {
  std::vector<std::pair<int, float>> out;
  for (const std::string& a : args) {
    const size_t k = a.find_first_of("+-", 1);
    auto bad = [&](const std::string& why) {
      return Error("--logit-bias " + a + ": " + why + " (TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1)");
    };
    if (k == std::string::npos) throw bad("no + or - between the token id and the bias");
    int id = -1;
    float bias = 0;
    const char *b = a.data(), *end = b + a.size();
    if (auto [e, ec] = std::from_chars(b, b + k, id); ec != std::errc() || e != b + k || id < 0)
      throw bad("the token id is not an integer >= 0");
    const char* v = b + k + (a[k] == '+');  // from_chars takes a leading '-', not '+'
    if (auto [e, ec] = std::from_chars(v, end, bias); ec != std::errc() || e != end || !std::isfinite(bias))
      throw bad("the bias is not a number");
    if (id >= vocab)
      throw bad("token " + std::to_string(id) + " is past the vocabulary (" + std::to_string(vocab) + " tokens)");
    out.emplace_back(id, bias);
  }
  return out;
}

// Flags the combination given does not read (CLI11 tells given from default).
void warn_unused_run_flags(const RunArgs& a, const CLI::App& app) {
  auto given = [&](const char* f) { return app.count(f) > 0; };
  for (const char* f : {"--system", "--chat-template"})
    if (given(f) && !a.chat) warn(std::string(f) + " does nothing without --chat (ignored)");
  if (a.temp == 0.0f)
    for (const char* f : {"--top-k", "--top-p", "--seed"})
      if (given(f)) warn(std::string(f) + " does nothing with --temp 0 (greedy decoding; ignored)");
}

int run(const RunArgs& a, const CLI::App& app) {
  // Everything that can be refused without the model, before loading it.
  warn_unused_run_flags(a, app);
  if (!a.kv.dump_kept.empty()) check_output_path(a.kv.dump_kept, "--kv-dump-kept");
  parse_logit_bias(a.logit_bias, INT_MAX);  // its form; the ids against the vocabulary once the model is read
  auto m = load(a.model);
  auto tok = tokenizer_for(*m);
  std::string text = prompt_text(a.prompt, a.file);
  size_t user_end = std::string::npos;  // --chat: where the user message ends (--kv-window-at user)
  if (a.chat) {
    ChatTemplate t = chat_template_of(m->vocab, a.chat_template, m->path);
    std::vector<ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", text});
    text = t.render(msgs, true, &user_end);
  }
  std::vector<int> ids = encode_prompt(*tok, text);

  Profile prof;
  SessionOptions so = session_options(a.kv, *m, prof);
  so.make_backend = backend_factory(a.model, so.q8_matmul);
  so.tp = a.model.tp;
  if (so.tp > 1) so.make_rank_backend = rank_backend_factory(a.model, so.q8_matmul);
  so.n_ctx = a.ctx;
  if (user_end != std::string::npos) so.user_suffix = tail_tokens(*tok, ids, text.size() - user_end);
  int n_ctx = a.ctx > 0 ? a.ctx : m->config.context;
  if (static_cast<int64_t>(ids.size()) > n_ctx)
    throw Error("prompt has " + std::to_string(ids.size()) + " tokens, more than the context size " +
                std::to_string(n_ctx) + " (-c)");
  int64_t room = n_ctx - static_cast<int64_t>(ids.size());
  int64_t n_gen = a.n_predict < 0 ? room : std::min<int64_t>(a.n_predict, room);
  const bool tty = isatty(STDERR_FILENO);
  if (tty && ids.size() > 512)
    so.on_progress = [](int l, int L) { std::fprintf(stderr, "\rreading prompt: layer %d/%d", l + 1, L), std::fflush(stderr); };
  Session s(*m, so);

  SamplerParams sp;
  sp.temperature = a.temp;
  sp.top_k = a.top_k;
  sp.top_p = a.top_p;
  sp.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : std::random_device{}();
  sp.frequency_penalty = a.frequency_penalty;
  sp.presence_penalty = a.presence_penalty;
  sp.repetition_penalty = a.repeat_penalty;
  sp.logit_bias = parse_logit_bias(a.logit_bias, m->config.vocab_size);
  Sampler sampler(sp);
  sampler.set_prompt(ids);

  const int V = m->config.vocab_size;
  std::vector<float> logits(V);
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  s.prefill(ids, logits.data());
  auto t1 = clock::now();
  auto check_logits = [&](int64_t pos) {
    if (!finite_logits(logits.data(), V))
      throw Error(m->path + ": the model gave non-finite logits (NaN or infinity) at position " + std::to_string(pos) +
                  ": its weights are broken (or overflow); nothing sensible can be generated");
  };
  check_logits(static_cast<int64_t>(ids.size()) - 1);
  if (tty && so.on_progress) std::fprintf(stderr, "\r\033[K");
  if (!a.kv.dump_kept.empty()) dump_kept(a.kv.dump_kept, s, static_cast<int64_t>(ids.size()));

  StreamDecoder dec(*tok);
  StopFilter stops(a.stop);
  int64_t generated = 0;
  bool hit = false;
  for (int64_t i = 0; i < n_gen && !hit; ++i) {
    int next = sampler.sample(logits.data(), V);
    ++generated;
    if (!a.ignore_eos && tok->is_eog(next)) break;
    std::fputs(stops.push(dec.push(next), hit).c_str(), stdout);
    std::fflush(stdout);
    if (hit || i + 1 == n_gen) break;
    s.decode(next, logits.data());
    check_logits(s.n_past() - 1);
  }
  if (!hit) std::fputs(stops.push(dec.flush(), hit).c_str(), stdout);
  if (!hit) std::fputs(stops.flush().c_str(), stdout);
  if (generated > 0) std::fputs("\n", stdout);  // as llama2.c ends its output
  std::fflush(stdout);  // the text before the statistics in `run ... > f 2>&1`
  auto t2 = clock::now();
  double pp_s = std::chrono::duration<double>(t1 - t0).count(), tg_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "prompt tokens: %zu, prompt tokens/s: %.2f, generated tokens: %lld, generated tokens/s: %.2f\n",
               ids.size(), ids.size() / pp_s, static_cast<long long>(generated), generated / tg_s);
  // Against what a full cache of the same positions holds (one definition: KvCache::full_bytes).
  size_t held = s.kv_bytes(), full = s.kv_full_bytes();
  std::fprintf(stderr, "kv cache (%s): %s held, full cache %s (%.1f%%)\n", s.press().name().c_str(),
               human_bytes(held).c_str(), human_bytes(full).c_str(), full ? 100.0 * held / full : 0.0);
  return 0;
}

}  // namespace

CLI::App* add_run(CLI::App& app, std::function<int()>& action) {
  static RunArgs args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("run", "generate text from a prompt");
  add_model_args(c, a->model);
  add_tp_arg(c, a->model);
  add_session_args(c, a->kv);
  c->add_option("-p,--prompt", a->prompt, "prompt text");
  c->add_option("-f,--file", a->file, "prompt file");
  c->add_flag("--chat", a->chat, "wrap the prompt as one user message of the model's chat template");
  c->add_option("--system", a->system, "system message (with --chat)");
  c->add_option("--chat-template", a->chat_template, "chat template family: chatml, llama3, mistral, llama2");
  c->add_option("-n,--n-predict", a->n_predict, "tokens to generate (-1: until end of sequence or context)")
      ->check(int_range(-1, INT32_MAX, "(-1: until end of sequence or context)"));
  c->add_option("-c,--ctx-size", a->ctx, "context size (default: the model's)")
      ->check(int_range(1, INT32_MAX, "(leave -c out for the model's context)"))
      ->default_str("the model's");
  c->add_option("--temp", a->temp, "temperature (0 = greedy)")->check(real_range(0, 100, false, "(0: greedy)"));
  c->add_option("--top-k", a->top_k, "top-k (0 = off)")->check(int_range(0, INT32_MAX, "(0: off)"));
  c->add_option("--top-p", a->top_p, "top-p (1 = off)")->check(real_range(0, 1, true, "(1: off)"));
  c->add_option("--frequency-penalty", a->frequency_penalty,
                "subtract count x this from the logit of each token generated so far (OpenAI's; 0 = off)")
      ->check(real_range(-2, 2, false, "(0: off)"));
  c->add_option("--presence-penalty", a->presence_penalty,
                "subtract this from the logit of each token generated so far (OpenAI's; 0 = off)")
      ->check(real_range(-2, 2, false, "(0: off)"));
  c->add_option("--repeat-penalty", a->repeat_penalty,
                "divide the positive logits of tokens in the prompt or generated (multiply the negative) by this "
                "(Hugging Face's repetition_penalty; 1 = off)")
      ->check(real_range(0, 10, true, "(1: off)"));
  c->add_option("-l,--logit-bias", a->logit_bias,
                "TOKEN_ID(+/-)BIAS added to that token's logit at every step, e.g. 15043+1 or 2-100 (repeatable)");
  c->add_option("-s,--seed", a->seed, "random seed (-1: random)")->check(int_range(-1, INT64_MAX, "(-1: random)"));
  c->add_option("--stop", a->stop, "stop at this string (repeatable)");
  c->add_flag("--ignore-eos", a->ignore_eos, "do not stop at end-of-sequence tokens");
  c->callback([a, c, &action] { action = [a, c] {
      default_kv_type(a->kv, a->model);
      return run(*a, *c);
    }; });
  return c;
}

}  // namespace ckv::cli
