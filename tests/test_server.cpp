// The server's own pieces without HTTP: request parsing and its errors, the
// admission arithmetic, the page bound against real sequences, the metrics
// text, and the engine thread (continuous batching, sliced prefill) against
// one Session per prompt.
#include <cmath>
#include <numeric>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/forward.h"
#include "engine/session.h"
#include "model/model.h"
#include "server/admission.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/prepare.h"
#include "server/scheduler.h"
#include "test_util.h"

namespace ckv {
namespace {

using namespace server;

std::string param_of(const std::string& body, Endpoint e = Endpoint::Chat) {
  try {
    parse_request(body, e);
  } catch (const ApiError& err) {
    EXPECT_EQ(err.status, 400);
    return err.param.empty() ? "(null)" : err.param;
  }
  return "(accepted)";
}

TEST(ServerRequest, ParsesTheContractsFields) {
  GenRequest r = parse_request(R"({"model": "m", "messages": [{"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]}],
      "max_tokens": 12, "temperature": 0, "top_p": 0.5, "seed": 7, "stop": ["a", "b"], "n": 1, "stream": true,
      "stream_options": {"include_usage": true}, "ignore_eos": true, "frequency_penalty": 0,
      "kv": {"method": "snapkv", "budget": 64, "window": 4, "window_at": "end"}})",
                               Endpoint::Chat);
  EXPECT_EQ(*r.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "hello");
  EXPECT_EQ(*r.max_tokens, 12);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(*r.seed, 7);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream && r.include_usage && r.ignore_eos);
  EXPECT_EQ(*r.kv.method, "snapkv");
  EXPECT_EQ(*r.kv.budget, 64);
  EXPECT_EQ(*r.kv.window, 4);

  GenRequest c = parse_request(R"({"prompt": [1, 2, 3], "max_completion_tokens": 5})", Endpoint::Completion);
  EXPECT_TRUE(c.prompt_is_ids);
  EXPECT_EQ(c.prompt_ids, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(*c.max_tokens, 5);
  EXPECT_EQ(c.temperature, 1.0f);  // OpenAI's defaults
  EXPECT_EQ(c.top_p, 1.0f);
  EXPECT_EQ(parse_request(R"({"prompt": ["once"]})", Endpoint::Completion).prompt, "once");
}

TEST(ServerRequest, RefusalsNameTheField) {
  EXPECT_EQ(param_of("{not json"), "(null)");
  EXPECT_EQ(param_of(R"({"messages": )" + std::string(100000, '[') + std::string(100000, ']') + "}"), "(null)");
  EXPECT_EQ(param_of("[1]"), "(null)");
  EXPECT_EQ(param_of("{}"), "messages");
  EXPECT_EQ(param_of(R"({"messages": []})"), "messages");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "robot", "content": "x"}]})"), "messages[0].role");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": 5}]})"), "messages[0].content");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
            "messages[0].content[0].type");
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(param_of("{" + m + R"(, "max_tokens": "9"})"), "max_tokens");
  EXPECT_EQ(param_of("{" + m + R"(, "max_tokens": 1.5})"), "max_tokens");
  EXPECT_EQ(param_of("{" + m + R"(, "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(param_of("{" + m + R"(, "temperature": 3})"), "temperature");
  EXPECT_EQ(param_of("{" + m + R"(, "top_p": 0})"), "top_p");
  EXPECT_EQ(param_of("{" + m + R"(, "n": 2})"), "n");
  EXPECT_EQ(param_of("{" + m + R"(, "stop": ["a","b","c","d","e"]})"), "stop");
  EXPECT_EQ(param_of("{" + m + R"(, "stream": "yes"})"), "stream");
  EXPECT_EQ(param_of("{" + m + R"(, "kv": {"budget": "big"}})"), "kv.budget");
  EXPECT_EQ(param_of("{" + m + R"(, "kv": {"window_at": "middle"}})"), "kv.window_at");
  EXPECT_EQ(param_of("{" + m + R"(, "kv": 3})"), "kv");
  EXPECT_EQ(param_of("{" + m + R"(, "model": 3})"), "model");
  EXPECT_EQ(param_of(R"({"prompt": 5})", Endpoint::Completion), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": [1, -2]})", Endpoint::Completion), "prompt[1]");
  EXPECT_EQ(param_of(R"({"prompt": ["a", "b"]})", Endpoint::Completion), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": "x", "messages": 1})", Endpoint::Completion), "(accepted)");
  // logprobs: completions an integer 0..20; chat a boolean, top_logprobs 0..20 with it
  EXPECT_EQ(param_of(R"({"prompt": "x", "logprobs": 21})", Endpoint::Completion), "logprobs");
  EXPECT_EQ(param_of(R"({"prompt": "x", "logprobs": true})", Endpoint::Completion), "logprobs");
  EXPECT_EQ(param_of(R"({"prompt": "x", "logprobs": 0})", Endpoint::Completion), "(accepted)");
  EXPECT_EQ(param_of("{" + m + R"(, "logprobs": 2})"), "logprobs");
  EXPECT_EQ(param_of("{" + m + R"(, "top_logprobs": 2})"), "top_logprobs");
  EXPECT_EQ(param_of("{" + m + R"(, "logprobs": true, "top_logprobs": 21})"), "top_logprobs");
  EXPECT_EQ(param_of("{" + m + R"(, "logprobs": true, "top_logprobs": 20})"), "(accepted)");
}

TEST(ServerAdmission, PlanAndReservations) {
  // 1 MiB limit, 64 KiB transient, 4 tables of 1 KiB, 4 KiB pages: (1048576 - 65536 - 4096) / 4096 pages.
  MemoryPlan p = plan_memory(1 << 20, 64 << 10, 1 << 10, 4, 4096);
  EXPECT_EQ(p.reserved, (64u << 10) + 4096u);
  EXPECT_EQ(p.pool_pages, (1048576 - 65536 - 4096) / 4096);
  EXPECT_ERROR(plan_memory(64 << 10, 64 << 10, 1 << 10, 4, 4096), "--kv-memory", "no room");

  Admission a(100, 2);
  EXPECT_TRUE(a.ever_fits(100));
  EXPECT_FALSE(a.ever_fits(101));
  EXPECT_TRUE(a.try_admit(60));
  EXPECT_FALSE(a.try_admit(41));  // pages
  EXPECT_TRUE(a.try_admit(40));
  a.release(40);
  EXPECT_EQ(a.reserved_pages(), 60);
  EXPECT_TRUE(a.try_admit(1));
  EXPECT_FALSE(a.try_admit(1));  // max_seqs
  EXPECT_EQ(a.sequences(), 2);

  EXPECT_EQ(parse_bytes("4096", "--kv-memory"), 4096u);
  EXPECT_EQ(parse_bytes("512M", "--kv-memory"), 512000000u);
  EXPECT_EQ(parse_bytes("2GiB", "--kv-memory"), 2147483648u);
  EXPECT_EQ(parse_bytes("1.5KiB", "--kv-memory"), 1536u);
  EXPECT_ERROR(parse_bytes("12 parsecs", "--kv-memory"), "--kv-memory", "12 parsecs");
  EXPECT_ERROR(parse_bytes("-1", "--max-body"), "--max-body");
  EXPECT_EQ(default_kv_memory(false, 1000), 500u);
  EXPECT_EQ(default_kv_memory(true, 100ull << 30), (100ull << 30) - (1ull << 30) - (5ull << 30));
}

// The bound against a brute force over every way G heads can split their rows.
TEST(ServerAdmission, LayerPagesBoundHoldsForEverySplit) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 2000; ++trial) {
    const int G = 1 + rng() % 4, P = 1 + rng() % 20;
    const int64_t T = 1 + rng() % 200, kept = 1 + rng() % 220, gen = rng() % 50;
    // Random split: each head <= T, total <= G * min(kept, T).
    int64_t left = G * std::min(kept, T), pages = 0, worst_uniform = 0;
    for (int g = 0; g < G; ++g) {
      const int64_t n = std::min<int64_t>(T, left > 0 ? rng() % (left + 1) : 0);
      left -= n;
      pages += (n + gen + P - 1) / P;
      worst_uniform += (std::min(kept, T) + gen + P - 1) / P;
    }
    const int64_t bound = layer_pages_bound(G, kept, T, gen, P);
    EXPECT_LE(pages, bound) << G << " " << P << " " << T << " " << kept << " " << gen;
    EXPECT_LE(worst_uniform, bound);  // the even split is covered too
  }
}

std::unique_ptr<Model> stories() { return load_model(test::source_dir() + "/models/stories260k/stories260K.bin"); }

std::vector<int> some_prompt(int n, int seed) {
  std::mt19937 rng(seed);
  std::vector<int> p(n);
  for (int& t : p) t = 3 + rng() % 500;
  p[0] = 1;
  return p;
}

// Real sequences hold no more pages than Sequence::pages_bound (and FullKV exactly that).
TEST(ServerAdmission, PagesBoundCoversRealSequences) {
  auto m = stories();
  ContextOptions co;
  co.max_seqs = 1;
  co.n_ctx = 512;
  Context ctx(*m, make_cpu_backend(), co);
  std::vector<float> logits(m->config.vocab_size);
  for (std::string method : {"full", "snapkv", "pyramidkv", "adakv", "streamingllm"})
    for (int T : {1, 7, 100, 300}) {
      SequenceOptions so;
      so.method = method;
      so.press.budget = 32;
      so.press.window = 4;
      const int gen = 20;
      const int64_t bound = Sequence::pages_bound(ctx, so, T, gen);
      Sequence s(ctx, so);
      s.read(some_prompt(T, T), logits.data());
      for (int i = 0; i < gen; ++i) {
        const int t[] = {Sampler::argmax(logits.data(), m->config.vocab_size)};
        DecodeStep st{&s, t, logits.data()};
        decode_step(ctx, std::span<DecodeStep>(&st, 1));
      }
      const int64_t pages = static_cast<int64_t>(s.kv().bytes() / ctx.pool().page_bytes());
      EXPECT_LE(pages, bound) << method << " T=" << T;
      if (method == "full") {
        EXPECT_EQ(pages, bound) << "T=" << T;
      }
    }
}

TEST(ServerMetrics, PrometheusText) {
  Metrics mt;
  mt.count_request(200);
  mt.count_request(200);
  mt.count_request(429);
  mt.generated_tokens += 5;
  mt.ttft.observe(0.02);
  mt.ttft.observe(3);
  mt.ttft.observe(1000);
  const std::string t = mt.render();
  EXPECT_NE(t.find("ckv_requests_total{status=\"200\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("ckv_requests_total{status=\"429\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_requests_total{status=\"499\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_generated_tokens_total 5\n"), std::string::npos);
  EXPECT_NE(t.find("# TYPE ckv_time_to_first_token_seconds histogram\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_time_to_first_token_seconds_bucket{le=\"5\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_time_to_first_token_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(t.find("ckv_time_to_first_token_seconds_sum 1003.0"), std::string::npos);
  for (const char* g : {"ckv_queue_depth ", "ckv_running_sequences ", "ckv_kv_bytes ", "ckv_kv_full_bytes ",
                        "ckv_kv_pool_bytes ", "ckv_kv_memory_limit_bytes ", "ckv_inter_token_latency_seconds_count "})
    EXPECT_NE(t.find(g), std::string::npos) << g;
}

// What the engine sends for one job: its text and how it finished.
struct Outcome {
  std::string text, finish;
  int events = 0;
  int status = 0;
  std::vector<TokenLogprob> logprobs;
};
Outcome drain(Job& j) {
  Outcome o;
  for (Event e; j.pop(e, std::chrono::milliseconds(20000));) {
    ++o.events;
    o.logprobs.insert(o.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
    if (e.kind == Event::Text) o.text += e.text;
    else if (e.kind == Event::Finish) return o.finish = e.finish_reason, o;
    else return o.status = e.error->status, o;
  }
  ADD_FAILURE() << "no final event";
  return o;
}

// Greedy text of one Session, as `run --temp 0 -n N` prints it.
std::string session_text(const Model& m, const Tokenizer& tok, const std::vector<int>& prompt, const SequenceOptions& so,
                         int n) {
  SessionOptions opt;
  opt.method = so.method;
  opt.press = so.press;
  opt.n_ctx = 512;
  Session s(m, opt);
  std::vector<float> logits(m.config.vocab_size);
  s.prefill(prompt, logits.data());
  StreamDecoder dec(tok);
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int t = Sampler::argmax(logits.data(), m.config.vocab_size);
    if (tok.is_eog(t)) break;
    out += dec.push(t);
    if (i + 1 < n) s.decode(t, logits.data());
  }
  return out + dec.flush();
}

// A model, a context over it (n_ctx 512) and an engine, with the ServeModel
// that prepares jobs for them.
struct Rig {
  std::unique_ptr<Model> m;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Context> ctx;
  Metrics metrics;
  std::unique_ptr<Engine> engine;
  ServeModel sm;
  Rig(std::unique_ptr<Model> model, int max_seqs, int64_t kv_pages, EngineOptions eo,
      std::function<KvSettings(const KvRequest&)> kv = [](const KvRequest&) { return KvSettings{}; })
      : m(std::move(model)), tok(make_tokenizer(m->vocab)) {
    ContextOptions co;
    co.max_seqs = max_seqs;
    co.n_ctx = 512;
    co.kv_pages = kv_pages;
    ctx = std::make_unique<Context>(*m, make_cpu_backend(), co);
    engine = std::make_unique<Engine>(*ctx, tok.get(), metrics, Admission(ctx->pool().capacity(), max_seqs), eo);
    sm.ctx = ctx.get();
    sm.tok = tok.get();
    sm.alias = "stories";
    sm.kv_settings = std::move(kv);
    sm.ever_fits = [this](int64_t p) { return engine->ever_fits(p); };
  }
};

// Both ways of slicing prompt reads: one slice a turn, and as many as a turn
// may take (every waiting prompt read whole in one turn).
TEST(ServerEngine, ConcurrentGreedyJobsEqualOneSessionEach) {
  for (const double prefill_ms : {0.0, 1e6}) {
    SCOPED_TRACE("prefill_ms " + std::to_string(prefill_ms));
    Rig rig(stories(), 3, 4000, EngineOptions{1, 8, prefill_ms}, [](const KvRequest& k) {
      KvSettings ks;
      ks.seq.method = k.method.value_or("full");
      ks.seq.press.budget = k.budget.value_or(0);
      ks.seq.press.window = 4;
      ks.method = ks.seq.method;
      return ks;
    });
    Engine& engine = *rig.engine;
    engine.start();
    const Model* m = rig.m.get();
    const Tokenizer* tok = rig.tok.get();
    Context& ctx = *rig.ctx;
    Metrics& metrics = rig.metrics;
    const ServeModel& sm = rig.sm;

    struct Case {
      std::string method;
      int budget, len, n;
    };
    const std::vector<Case> cases = {{"full", 0, 40, 30}, {"snapkv", 24, 200, 25}, {"pyramidkv", 24, 120, 40},
                                     {"adakv", 24, 300, 10}, {"streamingllm", 16, 90, 35}};
    std::vector<std::shared_ptr<Job>> jobs;
    for (size_t i = 0; i < cases.size(); ++i) {
      GenRequest r;
      r.endpoint = Endpoint::Completion;
      r.prompt_is_ids = true;
      r.prompt_ids = some_prompt(cases[i].len, 10 + static_cast<int>(i));
      r.max_tokens = cases[i].n;
      r.temperature = 0;
      r.ignore_eos = true;
      if (cases[i].method != "full") r.kv.method = cases[i].method, r.kv.budget = cases[i].budget;
      jobs.push_back(prepare_job(sm, r));
      engine.submit(jobs.back());  // 5 jobs, 3 sequences at most: two wait in the queue
    }
    // One more, cancelled at once: its pages must come back.
    GenRequest r;
    r.endpoint = Endpoint::Completion;
    r.prompt_is_ids = true;
    r.prompt_ids = some_prompt(250, 99);
    auto gone = prepare_job(sm, r);
    engine.submit(gone);
    engine.cancel(gone);

    for (size_t i = 0; i < cases.size(); ++i) {
      Outcome o = drain(*jobs[i]);
      EXPECT_EQ(o.status, 0);
      EXPECT_EQ(o.finish, "length");
      EXPECT_EQ(jobs[i]->generated, cases[i].n);
      SequenceOptions so;
      so.method = cases[i].method;
      so.press.budget = cases[i].budget;
      so.press.window = 4;
      EXPECT_EQ(o.text, session_text(*m, *tok, jobs[i]->prompt, so, cases[i].n)) << cases[i].method;
      EXPECT_GT(jobs[i]->prompt_kv_bytes, 0);
      if (cases[i].method != "full") {
        EXPECT_LT(jobs[i]->prompt_kv_bytes, jobs[i]->prompt_full_kv_bytes);
      }
    }
    engine.shutdown();
    EXPECT_EQ(ctx.pool().in_use(), 0);  // every sequence's pages back, the cancelled one's too
    EXPECT_EQ(metrics.queue_depth, 0);
    EXPECT_EQ(metrics.kv_bytes, 0);
  }
}

TEST(ServerEngine, RefusesWhatNeverFitsAndQueuesPastNothing) {
  Rig rig(stories(), 1, 200, EngineOptions{1, 1});
  Engine& engine = *rig.engine;
  const ServeModel& sm = rig.sm;
  GenRequest r;
  r.endpoint = Endpoint::Completion;
  r.prompt = "Once upon a time";
  r.max_tokens = 500;  // full cache of the whole context: 5 layers x 4 heads x 32 pages > 200
  try {
    prepare_job(sm, r);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "max_tokens") << e.what();
  }
  r.max_tokens = 10;
  r.prompt = std::string(3000, 'a');
  try {
    prepare_job(sm, r);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code, "context_length_exceeded") << e.what();
  }
  // Not started: the first is admitted, the second queued, the third refused.
  r.prompt = "Once upon a time";
  engine.submit(prepare_job(sm, r));
  engine.submit(prepare_job(sm, r));
  try {
    engine.submit(prepare_job(sm, r));
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 429);
  }
}

}  // namespace
}  // namespace ckv

namespace ckv {
namespace {

using namespace server;

// A model with a NaN weight: each request ends with a 500 error event, the
// engine goes on (the next request is served the same way) and no page leaks.
TEST(ServerEngine, NonFiniteLogitsEndTheRequestNotTheEngine) {
  test::TmpDir t("server_nan");
  std::string b = test::read_text(test::source_dir() + "/models/stories260k/stories260K.bin");
  const float nan = std::nanf("");
  std::memcpy(&b[28], &nan, sizeof nan);  // token_embedding_table[0][0]: the logit of token 0 (tied)
  test::write_file(t / "stories260K.bin", b);
  std::filesystem::copy_file(test::source_dir() + "/models/stories260k/tok512.bin", t / "tok512.bin");
  Rig rig(load_model(t / "stories260K.bin"), 2, 0, EngineOptions{2, 4});
  Engine& engine = *rig.engine;
  engine.start();
  const ServeModel& sm = rig.sm;
  for (int i = 0; i < 2; ++i) {
    GenRequest r;
    r.endpoint = Endpoint::Completion;
    r.prompt = "Once upon a time";
    r.max_tokens = 5;
    auto j = prepare_job(sm, r);
    engine.submit(j);
    Event e;
    ASSERT_TRUE(j->pop(e, std::chrono::milliseconds(20000)));
    ASSERT_EQ(e.kind, Event::Fail);
    EXPECT_EQ(e.error->status, 500);
    EXPECT_NE(std::string(e.error->what()).find("non-finite"), std::string::npos) << e.error->what();
  }
  engine.shutdown();
  EXPECT_EQ(rig.ctx->pool().in_use(), 0);
}

// logprobs: each sampled token's log-softmax under the model's logits
// (before temperature) and its most likely alternatives, against a Session
// fed the same tokens and a log-softmax in double here. Greedy: the token is
// the first alternative; sampled at temperature 1.5: the values are still the
// model's own.
TEST(ServerEngine, LogprobsAreTheModelsLogSoftmax) {
  Rig rig(stories(), 2, 2000, EngineOptions{1, 4});
  rig.engine->start();
  const Model& m = *rig.m;
  const int V = m.config.vocab_size;
  for (const float temp : {0.0f, 1.5f}) {
    GenRequest r;
    r.endpoint = Endpoint::Completion;
    r.prompt_is_ids = true;
    r.prompt_ids = some_prompt(60, 7);
    r.max_tokens = 20;
    r.temperature = temp;
    r.seed = 11;
    r.ignore_eos = true;
    r.logprobs = 3;
    auto job = prepare_job(rig.sm, r);
    rig.engine->submit(job);
    const Outcome o = drain(*job);
    ASSERT_EQ(o.finish, "length");
    ASSERT_EQ(o.logprobs.size(), 20u);
    SessionOptions so;
    so.n_ctx = 512;
    Session s(m, so);
    std::vector<float> logits(V);
    s.prefill(r.prompt_ids, logits.data());
    for (size_t i = 0; i < o.logprobs.size(); ++i) {
      const TokenLogprob& lp = o.logprobs[i];
      double mx = -INFINITY, sum = 0;
      for (float x : logits) mx = std::max(mx, double(x));
      for (float x : logits) sum += std::exp(double(x) - mx);
      const double lse = mx + std::log(sum);
      EXPECT_NEAR(lp.logprob, logits[lp.id] - lse, 1e-4) << "token " << i;
      std::vector<int> ids(V);
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + 3, ids.end(),
                        [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
      ASSERT_EQ(lp.top.size(), 3u);
      for (int k = 0; k < 3; ++k) {
        EXPECT_EQ(lp.top[k].first, ids[k]) << "token " << i << " alternative " << k;
        EXPECT_NEAR(lp.top[k].second, logits[ids[k]] - lse, 1e-4);
      }
      if (temp == 0.0f) {
        EXPECT_EQ(lp.id, ids[0]) << "greedy token " << i;
      }
      if (i + 1 < o.logprobs.size()) s.decode(lp.id, logits.data());
    }
  }
  rig.engine->shutdown();
}

}  // namespace
}  // namespace ckv
