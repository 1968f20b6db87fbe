// compresskv serve: an OpenAI-compatible HTTP server over one context with
// continuous batching, each sequence with its own compressed cache (issue 11;
// serve_contract.md). The server itself is src/server/; this file turns the
// flags into its parts and runs them until SIGINT/SIGTERM.
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "server/http_server.h"
#include "tokenizer/prompt.h"
#include "util/error.h"

namespace ckv::cli {

namespace {

using namespace ckv::server;

int g_signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int) {
  const char c = 's';
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &c, 1);  // async-signal-safe
}

struct ServeArgs {
  ModelArgs model;
  SessionArgs kv;
  std::string host = "127.0.0.1", api_key, chat_template, alias, kv_memory, max_body = "8MiB";
  std::vector<std::string> profiles;  // --kv-profiles NAME=PATH ...
  int port = 8080, max_seqs = 16, queue = 64, ctx = 0, prefill_slice = 1;
  double prefill_ms = 50;
};

// The profiles a request may name (kv.profile), loaded and checked once at
// start; "default" is the server's own (--kv-profile, or the shipped one).
using Profiles = std::map<std::string, std::shared_ptr<const Profile>>;

Profiles load_profiles(const ServeArgs& a, const Model& m) {
  Profiles out;
  auto add = [&](const std::string& name, const std::string& path, const std::string& flag) {
    try {
      auto p = std::make_shared<Profile>(Profile::load(path));
      const ModelConfig& c = m.config;
      const std::string w = p->check_model(c.arch, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, m.fingerprint());
      if (!w.empty()) warn(flag + " " + path + ": " + w);
      out[name] = std::move(p);
    } catch (const Error& e) {
      throw Error(flag + " " + (name == "default" ? "" : name + "=") + path + ": " + e.what());
    }
  };
  const std::string own = !a.kv.profile.empty() ? a.kv.profile : shipped_profile_for(m);
  if (!own.empty()) add("default", own, "--kv-profile");
  for (const std::string& e : a.profiles) {
    const size_t eq = e.find('=');
    const std::string path = eq == std::string::npos ? e : e.substr(eq + 1);
    const std::string name = eq == std::string::npos ? std::filesystem::path(e).stem().string() : e.substr(0, eq);
    if (name.empty() || path.empty()) throw Error("--kv-profiles " + e + ": expected NAME=PATH or PATH");
    if (name == "default") throw Error("--kv-profiles " + e + ": 'default' names the server's own --kv-profile");
    if (out.count(name)) throw Error("--kv-profiles " + e + ": the name '" + name + "' is given twice");
    add(name, path, "--kv-profiles");
  }
  return out;
}

// "--kv-budget 8 must be ..." -> param "kv.budget", text "kv.budget 8 must be ...".
ApiError kv_error(const std::string& msg, const std::string& fallback = "kv") {
  std::string param = fallback, text = msg;
  if (msg.find("needs --kv-budget") != std::string::npos) param = "kv.budget";
  else if (size_t p = msg.find("--kv-"); p != std::string::npos) {
    size_t e = p + 5;
    while (e < msg.size() && (std::isalnum(static_cast<unsigned char>(msg[e])) || msg[e] == '-')) ++e;
    param = "kv." + msg.substr(p + 5, e - p - 5);
  }
  for (size_t p; (p = text.find("--kv-")) != std::string::npos;) text.replace(p, 5, "kv.");
  return ApiError(400, text, param);
}

// The request's kv extension over the server's flags, through the same
// session_options as run and bench (same checks, same shipped profile).
KvSettings kv_settings(const SessionArgs& base, const Profiles& profiles, const Model& m, int max_window, int n_ctx,
                       const KvRequest& k) {
  SessionArgs a = base;
  a.app = nullptr;  // no flag warnings per request
  if (k.window_at) a.window_at = *k.window_at;
  if (k.method) {
    a.method = *k.method;
    a.select.clear(), a.alloc.clear();
  }
  if (k.select || k.alloc) {
    if (!k.select || !k.alloc) throw ApiError(400, "'kv.select' and 'kv.alloc' go together: give both", k.select ? "kv.alloc" : "kv.select");
    if (k.method && *k.method != "full") throw ApiError(400, "give either 'kv.method' or 'kv.select'/'kv.alloc', not both", "kv.method");
    a.method = "full";
    a.select = *k.select, a.alloc = *k.alloc;
  }
  if (k.budget) a.budget = *k.budget;
  if (k.window) a.window = *k.window;
  if (a.window > max_window)
    throw ApiError(400, "'kv.window' " + std::to_string(a.window) + " exceeds the server's window room of " +
                            std::to_string(max_window) + " query rows (its --kv-window or 64)", "kv.window");
  const bool compressing = a.method != "full" || !a.select.empty();
  if (compressing && a.budget > n_ctx)
    throw ApiError(400, "'kv.budget' " + std::to_string(a.budget) + " exceeds the context size " + std::to_string(n_ctx), "kv.budget");
  KvSettings ks;
  ks.profile_name = k.profile.value_or("default");
  if (auto it = profiles.find(ks.profile_name); it != profiles.end()) {
    ks.profile = it->second;
  } else if (k.profile) {
    std::string names;
    for (const auto& [n, p] : profiles) names += (names.empty() ? "" : ", ") + n;
    throw ApiError(400, "'kv.profile' '" + *k.profile + "' is not one of this server's profiles (" +
                            (names.empty() ? "none" : names) + "; serve --kv-profiles NAME=PATH)", "kv.profile");
  }
  a.profile.clear();  // the loaded one or none (no file is read per request)
  Profile none;
  SessionOptions so;
  try {
    so = session_options(a, m, none, ks.profile.get());
  } catch (const Error& e) {
    throw kv_error(e.what(), k.method ? "kv.method" : "kv");
  }
  if (!so.profile && k.profile)
    throw ApiError(400, "'kv.profile' is given, but this method reads no profile (compresskv, srh or error-aware do)",
                   "kv.profile");
  ks.seq = sequence_options(so);
  if (!so.profile) ks.profile.reset();
  try {
    ks.method = Sequence::make_press_for(ks.seq, m)->name();
  } catch (const Error& e) {
    throw kv_error(e.what(), "kv.method");
  }
  ks.budget = compressing ? a.budget : 0;
  ks.window = a.window;
  return ks;
}

int serve(const ServeArgs& a, const CLI::App& app) {
  // SIGINT/SIGTERM wake a thread through a pipe (whichever thread the signal
  // lands on, and even when the shell started us with SIGINT ignored); a
  // client gone mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  if (pipe(g_signal_pipe) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const size_t max_body = parse_bytes(a.max_body, "--max-body");
  const size_t kv_memory = a.kv_memory.empty() ? 0 : parse_bytes(a.kv_memory, "--kv-memory");
  auto m = load(a.model);
  const Profiles profiles = load_profiles(a, *m);  // before anything is allocated: a bad one stops the start
  std::unique_ptr<Tokenizer> tok;
  if (!m->vocab.tokens.empty()) tok = tokenizer_for(*m);
  Profile prof;
  SessionOptions so = session_options(a.kv, *m, prof);  // the server's default kv settings, checked as run does
  so.n_ctx = a.ctx;
  const std::string device = device_of(a.model);

  ContextOptions co = context_options(so);
  co.max_seqs = a.max_seqs;
  MemoryPlan plan;
  co.size_kv_pool = [&](const Backend& b, size_t page_bytes) {
    const ModelConfig& c = m->config;
    const int n_ctx = a.ctx > 0 ? a.ctx : c.context;
    const size_t limit = kv_memory ? kv_memory : default_kv_memory(device == "cuda", b.free_memory());
    plan = plan_memory(limit, Sequence::read_transient_bytes(c, n_ctx),
                       KvCache::table_bytes_for(c.n_layers, c.n_kv_heads, n_ctx, b.kv_page_rows(), b.host_memory()),
                       a.max_seqs, page_bytes);
    return plan.pool_pages;
  };
  Context ctx(*m, backend_factory(a.model, so.q8_matmul)(), co);

  Metrics metrics;
  metrics.kv_memory_limit = static_cast<int64_t>(plan.limit);
  metrics.kv_pool_bytes = static_cast<int64_t>(ctx.pool().capacity() * ctx.pool().page_bytes());
  EngineOptions eo;
  eo.prefill_slice = a.prefill_slice;
  eo.prefill_ms = a.prefill_ms;
  eo.queue = a.queue;
  Engine engine(ctx, tok.get(), metrics, Admission(plan.pool_pages, a.max_seqs), eo);

  ServeModel sm;
  sm.ctx = &ctx;
  sm.tok = tok.get();
  if (tok) {
    try {
      sm.chat = chat_template_of(m->vocab, a.chat_template, m->path);
    } catch (const Error& e) {
      sm.chat_error = e.what();
      warn(std::string("chat requests will be refused: ") + e.what());
    }
  } else {
    sm.chat_error = "the model has no tokenizer";
  }
  sm.alias = !a.alias.empty() ? a.alias
             : !a.model.model.empty() ? std::filesystem::path(a.model.model).stem().string()
                                      : std::filesystem::path(a.model.random_weights).stem().string();
  const int max_window = ctx.options().max_window, n_ctx = ctx.n_ctx();
  sm.kv_settings = [&](const KvRequest& k) { return kv_settings(a.kv, profiles, *m, max_window, n_ctx, k); };
  sm.ever_fits = [&](int64_t pages) { return engine.ever_fits(pages); };

  HttpOptions ho;
  ho.host = a.host;
  ho.port = a.port;
  ho.api_key = a.api_key;
  ho.max_body = max_body;
  ho.threads = std::min(a.max_seqs + a.queue + 16, 1024);  // every admitted and queued stream holds a connection
  HttpServer http(sm, engine, metrics, ho);
  const int port = http.bind();
  engine.start();
  if (app.count("--kv-memory") == 0)
    std::fprintf(stderr, "kv memory: %s (default: %s), pool %s\n", human_bytes(plan.limit).c_str(),
                 device == "cuda" ? "free device memory minus 1 GiB + 5%" : "half of the available RAM",
                 human_bytes(metrics.kv_pool_bytes).c_str());
  std::fprintf(stderr, "compresskv serve: listening on http://%s:%d\n", a.host.c_str(), port);
  std::fflush(stderr);

  std::thread waiter([&] {
    char c = 0;
    while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    if (c == 's') std::fprintf(stderr, "compresskv serve: stopping\n");
    engine.shutdown();  // every request gets its final event
    http.stop();
  });
  http.run();
  const char quit = 'q';  // ends the waiter when run() returned by itself
  if (write(g_signal_pipe[1], &quit, 1) < 0) std::perror("compresskv serve: waking the signal thread");
  waiter.join();
  engine.shutdown();
  return 0;
}

}  // namespace

CLI::App* add_serve(CLI::App& app, std::function<int()>& action) {
  static ServeArgs args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server: many sequences at once, each with its own compressed cache");
  add_model_args(c, a->model);
  add_session_args(c, a->kv);
  c->add_option("--random-weights", a->model.random_weights,
                "instead of -m: seeded random bf16 weights of this config.json's shape, on the GPU (speed only; token-id prompts)");
  c->add_option("--seed", a->model.seed, "seed of --random-weights");
  c->add_option("--host", a->host, "address to listen on");
  c->add_option("--port", a->port, "port (0: any free one)")->check(int_range(0, 65535));
  c->add_option("--max-seqs", a->max_seqs, "sequences decoded together at most")->check(int_range(1, 4096));
  c->add_option("--kv-memory", a->kv_memory,
                "bytes for the sequences' KV pages, page tables and prompt reads (K/M/G: powers of 1000, KiB/MiB/GiB: "
                "of 1024; default: free device memory minus 1 GiB + 5% on a GPU, half the available RAM on the CPU)");
  c->add_option("--queue", a->queue, "requests waiting for memory at most; more get 429")->check(int_range(0, 100000));
  c->add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' (all routes but /health and /)");
  c->add_option("-c,--ctx-size", a->ctx, "context size (default: the model's)")
      ->check(int_range(1, INT32_MAX, "(leave -c out for the model's context)"))
      ->default_str("the model's");
  c->add_option("--prefill-slice", a->prefill_slice, "layers of a prompt read at a time between two decode steps")
      ->check(int_range(1, 4096));
  c->add_option("--prefill-ms", a->prefill_ms,
                "between two decode steps, read more slices (and the next prompts) while the turn has read for less "
                "than this many ms (0: one slice a turn)")
      ->check(real_range(0, 60000))
      ->capture_default_str();
  c->add_option("--kv-profiles", a->profiles,
                "more profiles a request may pick by name ({\"kv\": {\"profile\": NAME}}): NAME=PATH, or PATH "
                "(named by its file's stem); the server's own --kv-profile is \"default\"");
  c->add_option("--chat-template", a->chat_template, "chat template family: chatml, llama3, mistral, llama2");
  c->add_option("--max-body", a->max_body, "largest request body (bytes, suffixes as --kv-memory)");
  c->add_option("--alias", a->alias, "model id in /v1/models (default: the model file's stem)");
  c->callback([a, c, &action] { action = [a, c] {
      default_kv_type(a->kv, a->model);
      return serve(*a, *c);
    }; });
  return c;
}

}  // namespace ckv::cli
