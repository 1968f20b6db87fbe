// The engine for many sequences (engine/context, sequence, forward,
// kv_pages): batched decoding equals one sequence at a time, a read advanced
// in slices equals one read in one go, the page pool's accounting, no
// allocation in a decode step, the kept rows are the source rows, decoding
// over a compressed cache is full attention with the evicted positions
// masked out, and the calibration probe against a re-derivation.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>

#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/sequence.h"
#include "engine/session.h"
#include "model/model.h"
#include "profile/profile.h"
#include "test_util.h"
#include "util/error.h"

// Counts heap allocations (the decode step must make none). The replaced
// global new/delete pair is malloc/free, which GCC cannot see as matched.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocs{0};
void* operator new(size_t n) {
  ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
// The nothrow forms too (std::stable_sort's buffer): else the sanitizer's
// operator new pairs with the free above.
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  ++g_allocs;
  return std::malloc(n ? n : 1);
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

using namespace ckv;

namespace {

std::unique_ptr<Model> stories() { return load_model(test::source_dir() + "/models/stories260k/stories260K.bin"); }

std::vector<int> prompt_ids(int T, int vocab, int salt = 0) {
  std::vector<int> ids(T);
  for (int i = 0; i < T; ++i) ids[i] = 3 + (i * 37 + 11 + salt * 101) % (vocab - 3);
  ids[0] = 1;
  return ids;
}

Profile identity_profile(const Model& m, bool layer_scores) {
  Profile p;
  const ModelConfig& c = m.config;
  p.arch = c.arch, p.n_layers = c.n_layers, p.n_heads = c.n_heads, p.n_kv_heads = c.n_kv_heads;
  p.head_dim = c.head_dim;
  std::vector<int> r(c.n_heads);
  for (int h = 0; h < c.n_heads; ++h) r[h] = (h * 5 + 3) % c.n_heads;  // a permutation (5 and 8 coprime)
  p.srh_ranking.assign(c.n_layers, r);
  if (layer_scores)
    for (int l = 0; l < c.n_layers; ++l) p.layer_scores.push_back((l + 1.0) / (c.n_layers * (c.n_layers + 1) / 2.0));
  return p;
}

SequenceOptions seq_opts(const std::string& method, int budget, const Profile* prof) {
  SequenceOptions o;
  o.method = method;
  o.press.budget = budget;
  o.profile = prof;
  return o;
}

struct Trace {
  std::vector<int> tokens;               // greedy tokens
  std::vector<std::vector<float>> logits;  // after the prompt, then each step
};

// One sequence alone on its own context: prompt, then `steps` greedy tokens.
Trace alone(const Model& m, const SequenceOptions& so, const std::vector<int>& ids, int steps) {
  Context ctx(m, make_cpu_backend(), {});
  Sequence s(ctx, so);
  const int V = m.config.vocab_size;
  Trace t;
  std::vector<float> lg(V);
  s.read(ids, lg.data());
  t.logits.push_back(lg);
  for (int i = 0; i < steps; ++i) {
    const int next[] = {Sampler::argmax(lg.data(), V)};
    t.tokens.push_back(next[0]);
    DecodeStep st{&s, next, lg.data()};
    decode_step(ctx, std::span<DecodeStep>(&st, 1));
    t.logits.push_back(lg);
  }
  return t;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

}  // namespace

// Sequences of different lengths, each with its own method, decoded together
// give the tokens (and logits, to rounding) of each decoded alone.
TEST(Engine, BatchedDecodeEqualsOneAtATime) {
  auto m = stories();
  const int V = m->config.vocab_size, steps = 12;
  Profile prof = identity_profile(*m, true);
  const std::vector<std::string> methods = {"full", "snapkv", "adakv", "compresskv", "streamingllm", "pyramidkv",
                                            "adacompresskv"};
  std::vector<std::vector<int>> prompts;
  std::vector<SequenceOptions> opts;
  std::vector<Trace> want;
  for (size_t i = 0; i < methods.size(); ++i) {
    prompts.push_back(prompt_ids(60 + 23 * static_cast<int>(i), V, static_cast<int>(i)));
    opts.push_back(seq_opts(methods[i], 40, &prof));
    want.push_back(alone(*m, opts[i], prompts[i], steps));
  }
  ContextOptions co;
  co.max_seqs = static_cast<int>(methods.size());
  Context ctx(*m, make_cpu_backend(), co);
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::vector<float>> lg(methods.size(), std::vector<float>(V));
  for (size_t i = 0; i < methods.size(); ++i) {
    seqs.push_back(std::make_unique<Sequence>(ctx, opts[i]));
    seqs[i]->read(prompts[i], lg[i].data());
    EXPECT_EQ(lg[i], want[i].logits[0]) << methods[i] << ": the read is the same computation";
  }
  std::vector<int> tok(methods.size());
  for (int step = 0; step < steps; ++step) {
    std::vector<DecodeStep> batch;
    for (size_t i = 0; i < methods.size(); ++i) {
      tok[i] = Sampler::argmax(lg[i].data(), V);
      ASSERT_EQ(tok[i], want[i].tokens[step]) << methods[i] << " step " << step;
      batch.push_back({seqs[i].get(), std::span<const int>(&tok[i], 1), lg[i].data()});
    }
    decode_step(ctx, batch);
    for (size_t i = 0; i < methods.size(); ++i)
      EXPECT_LT(max_diff(lg[i], want[i].logits[step + 1]), 1e-4) << methods[i] << " step " << step;
  }
}

// Several new tokens per sequence in one step (rows of different sequences
// interleaved in the batch) equal feeding them one at a time.
TEST(Engine, MultiTokenStepsEqualSingleSteps) {
  auto m = stories();
  const int V = m->config.vocab_size;
  ContextOptions co;
  co.max_seqs = 2;
  Context ctx(*m, make_cpu_backend(), co);
  Sequence a(ctx, seq_opts("snapkv", 32, nullptr)), b(ctx, seq_opts("full", 0, nullptr));
  Sequence a1(ctx, seq_opts("snapkv", 32, nullptr)), b1(ctx, seq_opts("full", 0, nullptr));
  std::vector<float> lg(V), la(4 * V), lb(3 * V);
  for (Sequence* s : {&a, &a1}) s->read(prompt_ids(90, V, 1), lg.data());
  for (Sequence* s : {&b, &b1}) s->read(prompt_ids(50, V, 2), lg.data());
  const std::vector<int> ta = {5, 9, 13, 17}, tb = {7, 11, 19};
  DecodeStep both[] = {{&a, ta, la.data(), true}, {&b, tb, lb.data(), true}};
  decode_step(ctx, both);
  for (size_t i = 0; i < ta.size(); ++i) {
    DecodeStep st{&a1, std::span<const int>(&ta[i], 1), lg.data()};
    decode_step(ctx, std::span<DecodeStep>(&st, 1));
    EXPECT_LT(max_diff(lg, std::vector<float>(&la[i * V], &la[(i + 1) * V])), 1e-4) << "token " << i;
  }
  for (size_t i = 0; i < tb.size(); ++i) {
    DecodeStep st{&b1, std::span<const int>(&tb[i], 1), lg.data()};
    decode_step(ctx, std::span<DecodeStep>(&st, 1));
    EXPECT_LT(max_diff(lg, std::vector<float>(&lb[i * V], &lb[(i + 1) * V])), 1e-4) << "token " << i;
  }
}

// A compressing read advanced two layers at a time, with decode steps of
// another sequence in between, equals the read in one go, bit for bit.
TEST(Engine, SlicedReadEqualsOneGo) {
  auto m = stories();
  const int V = m->config.vocab_size;
  Profile prof = identity_profile(*m, false);
  for (std::string method : {"compresskv", "adakv", "full"}) {
    ContextOptions co;
    co.max_seqs = 2;
    Context ctx(*m, make_cpu_backend(), co);
    const auto ids = prompt_ids(150, V, 3);
    Sequence whole(ctx, seq_opts(method, 48, &prof));
    std::vector<float> want(V), got(V), other(V);
    whole.read(ids, want.data());

    Sequence runner(ctx, seq_opts("full", 0, nullptr)), sliced(ctx, seq_opts(method, 48, &prof));
    runner.read(prompt_ids(30, V, 4), other.data());
    sliced.begin_read(ids);
    int tok = 3;
    while (!sliced.read_layers(2)) {
      const int t[] = {tok};
      DecodeStep st{&runner, t, other.data()};
      decode_step(ctx, std::span<DecodeStep>(&st, 1));
      tok = Sampler::argmax(other.data(), V);
    }
    sliced.finish_read(got.data());
    EXPECT_EQ(got, want) << method;
    EXPECT_EQ(sliced.kept(), whole.kept()) << method;
    EXPECT_EQ(sliced.n_past(), whole.n_past());
  }
}

// Pages: growth, per-head lengths, all-or-nothing reservation, freeing, and
// a long run of sequences coming and going leaves the pool empty.
TEST(Engine, KvPagesAccounting) {
  auto b = make_cpu_backend();
  const int hd = 8, P = 16;
  KvPool pool(*b, hd, KvType::F16, P, 40);
  EXPECT_EQ(pool.page_bytes(), size_t(2) * P * hd * 2);
  {
    KvCache c(pool, 2, 2, 100);
    c.grow(17);  // 2 pages in each of 4 heads
    EXPECT_EQ(pool.in_use(), 8);
    EXPECT_EQ(c.bytes(), 8 * pool.page_bytes());
    EXPECT_EQ(c.len(1, 1), 17);
    EXPECT_EQ(c.capacity(1, 1), 32);
    c.grow_head(0, 1, 20);  // 37 rows: 3 pages
    EXPECT_EQ(c.len(0, 1), 37);
    EXPECT_EQ(c.pages(0, 1).size(), 3u);
    EXPECT_EQ(pool.in_use(), 9);
    // Pages of one head are distinct and never shared with another head.
    std::vector<int32_t> all;
    for (int l = 0; l < 2; ++l)
      for (int g = 0; g < 2; ++g) all.insert(all.end(), c.pages(l, g).begin(), c.pages(l, g).end());
    std::sort(all.begin(), all.end());
    EXPECT_TRUE(std::adjacent_find(all.begin(), all.end()) == all.end());
    // Past the context: refused, nothing changed.
    EXPECT_THROW(c.grow(64), Error);
    EXPECT_EQ(c.len(0, 0), 17);
    EXPECT_EQ(pool.in_use(), 9);
    // Past the pool: refused, nothing changed.
    KvCache d(pool, 2, 2, 1000);
    EXPECT_THROW(d.grow(200), Error);
    EXPECT_EQ(pool.in_use(), 9);
    EXPECT_EQ(d.bytes(), 0u);
    c.shrink(2);  // 15 rows: 1 page each, head (0,1) 35 rows: 3 pages
    EXPECT_EQ(c.len(0, 0), 15);
    EXPECT_EQ(c.pages(0, 0).size(), 1u);
    EXPECT_EQ(pool.in_use(), 6);
    EXPECT_EQ(c.full_bytes(17), size_t(2) * 2 * 2 * pool.page_bytes());
  }
  EXPECT_EQ(pool.in_use(), 0) << "a cache gives its pages back";
  std::mt19937 rng(7);
  std::vector<std::unique_ptr<KvCache>> live;
  for (int i = 0; i < 2000; ++i) {
    if (live.size() < 4 && rng() % 2) live.push_back(std::make_unique<KvCache>(pool, 2, 2, 160));
    if (!live.empty()) {
      auto& c = live[rng() % live.size()];
      try {
        c->grow(1 + rng() % 20);
      } catch (const Error&) {
      }
    }
    if (!live.empty() && rng() % 3 == 0) live.erase(live.begin() + rng() % live.size());
    int64_t held = 0;
    for (auto& c : live) held += static_cast<int64_t>(c->bytes() / pool.page_bytes());
    ASSERT_EQ(held, pool.in_use()) << "iteration " << i;
  }
  live.clear();
  EXPECT_EQ(pool.in_use(), 0);
}

// A decode step allocates nothing (after the first, which may size host lists).
TEST(Engine, NoAllocationInDecodeStep) {
  auto m = stories();
  const int V = m->config.vocab_size;
  Profile prof = identity_profile(*m, true);
  ContextOptions co;
  co.max_seqs = 3;
  Context ctx(*m, make_cpu_backend(), co);
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<float> lg(3 * V);
  const char* methods[] = {"full", "compresskv", "adakv"};
  for (int i = 0; i < 3; ++i) {
    seqs.push_back(std::make_unique<Sequence>(ctx, seq_opts(methods[i], 40, &prof)));
    seqs[i]->read(prompt_ids(70 + 10 * i, V, i), &lg[size_t(i) * V]);
  }
  std::vector<int> tok = {4, 5, 6};
  std::vector<DecodeStep> batch;
  for (int i = 0; i < 3; ++i) batch.push_back({seqs[i].get(), std::span<const int>(&tok[i], 1), &lg[size_t(i) * V]});
  decode_step(ctx, batch);  // warm-up
  const long before = g_allocs.load();
  for (int step = 0; step < 40; ++step) {  // crosses page boundaries (16 rows)
    decode_step(ctx, batch);
    for (int i = 0; i < 3; ++i) tok[i] = Sampler::argmax(&lg[size_t(i) * V], V);
  }
  EXPECT_EQ(g_allocs.load() - before, 0) << "heap allocations during 40 decode steps";
}

// The kept K/V rows are the source rows at the kept positions: a full cache
// of the same prompt holds the source rows, position p at row p.
TEST(Engine, KeptRowsEqualSourceRows) {
  auto m = stories();
  const ModelConfig& c = m->config;
  Profile prof = identity_profile(*m, true);
  const auto ids = prompt_ids(120, c.vocab_size, 5);
  SessionOptions fo;
  Session full(*m, fo);
  std::vector<float> lg(c.vocab_size), a(c.head_dim), b(c.head_dim);
  full.prefill(ids, lg.data());
  for (std::string method : {"snapkv", "adakv", "compresskv", "streamingllm", "pyramidkv"})
    for (KvType type : {KvType::F32, KvType::F16}) {
      SessionOptions so;
      so.method = method;
      so.press.budget = 40;
      so.profile = &prof;
      so.kv_type = type;
      Session s(*m, so);
      s.prefill(ids, lg.data());
      SessionOptions fo16 = fo;
      fo16.kv_type = type;
      Session ref(*m, fo16);
      ref.prefill(ids, lg.data());
      for (int l = 0; l < c.n_layers; ++l)
        for (int g = 0; g < c.n_kv_heads; ++g) {
          const auto& kept = s.kept()[l][g];
          ASSERT_EQ(static_cast<int>(kept.size()), s.kv().len(l, g));
          ASSERT_LT(kept.size(), ids.size()) << method << ": nothing was evicted";
          for (size_t j = 0; j < kept.size(); ++j) {
            s.kv().key(l, g, static_cast<int>(j), a.data());
            ref.kv().key(l, g, kept[j], b.data());
            ASSERT_EQ(a, b) << method << " layer " << l << " head " << g << " key row " << j;
            s.kv().value(l, g, static_cast<int>(j), a.data());
            ref.kv().value(l, g, kept[j], b.data());
            ASSERT_EQ(a, b) << method << " layer " << l << " head " << g << " value row " << j;
          }
        }
    }
}

// Decoding over a compressed cache is attention over the full cache with the
// evicted prompt positions masked out: each layer's attention output, from
// the decode observer, against a double-precision re-derivation over the
// full session's rows at the kept positions plus the generated rows.
TEST(Engine, CompressedDecodeIsMaskedFullAttention) {
  auto m = stories();
  const ModelConfig& c = m->config;
  const int H = c.n_heads, G = c.n_kv_heads, hd = c.head_dim, r = H / G;
  Profile prof = identity_profile(*m, false);
  const auto ids = prompt_ids(100, c.vocab_size, 6);
  Session full(*m, SessionOptions{});
  std::vector<float> lg(c.vocab_size);
  full.prefill(ids, lg.data());
  for (std::string method : {"compresskv", "adakv"}) {
    std::vector<std::vector<float>> qs, atts;  // per layer, this step
    SessionOptions so;
    so.method = method;
    so.press.budget = 24;
    so.profile = &prof;
    so.on_decode_layer = [&](int, const float* q, const float* att) {
      qs.emplace_back(q, q + H * hd);
      atts.emplace_back(att, att + H * hd);
    };
    Session s(*m, so);
    s.prefill(ids, lg.data());
    double worst = 0;
    for (int step = 0; step < 5; ++step) {
      qs.clear(), atts.clear();
      s.decode(10 + step, lg.data());
      ASSERT_EQ(static_cast<int>(qs.size()), c.n_layers);
      std::vector<float> k(hd), v(hd);
      for (int l = 0; l < c.n_layers; ++l)
        for (int h = 0; h < H; ++h) {
          const int g = h / r;
          const auto& kept = s.kept()[l][g];
          // Rows: the full cache at the kept positions, then the generated rows of this cache.
          std::vector<std::pair<std::vector<float>, std::vector<float>>> rows;
          for (int32_t p : kept) {
            full.kv().key(l, g, p, k.data()), full.kv().value(l, g, p, v.data());
            rows.emplace_back(k, v);
          }
          for (int j = static_cast<int>(kept.size()); j < s.kv().len(l, g); ++j) {
            s.kv().key(l, g, j, k.data()), s.kv().value(l, g, j, v.data());
            rows.emplace_back(k, v);
          }
          std::vector<double> sc;
          double mx = -INFINITY, sum = 0;
          for (auto& [kk, vv] : rows) {
            double d = 0;
            for (int e = 0; e < hd; ++e) d += double(qs[l][h * hd + e]) * kk[e];
            sc.push_back(d / std::sqrt(double(hd)));
            mx = std::max(mx, sc.back());
          }
          for (double& x : sc) sum += (x = std::exp(x - mx));
          for (int e = 0; e < hd; ++e) {
            double o = 0;
            for (size_t j = 0; j < rows.size(); ++j) o += sc[j] / sum * rows[j].second[e];
            worst = std::max(worst, std::fabs(o - atts[l][h * hd + e]));
          }
        }
    }
    EXPECT_LT(worst, 1e-5) << method;
  }
}

// The identify-heads probe: each head's probability mass over a span of the
// cache and its argmax row, against a re-derivation from the observer's
// query and the cache rows.
TEST(Engine, AttentionProbeMatchesReDerivation) {
  auto m = stories();
  const ModelConfig& c = m->config;
  const int H = c.n_heads, G = c.n_kv_heads, hd = c.head_dim, r = H / G;
  AttentionProbe probe;
  probe.lo = 20, probe.hi = 45;
  std::vector<std::vector<float>> mass, qs;
  std::vector<std::vector<int32_t>> arg;
  probe.on_layer = [&](int, const float* ms, const int32_t* am) {
    mass.emplace_back(ms, ms + H);
    arg.emplace_back(am, am + H);
  };
  SessionOptions so;
  so.probe = &probe;
  so.on_decode_layer = [&](int, const float* q, const float*) { qs.emplace_back(q, q + H * hd); };
  Session s(*m, so);
  std::vector<float> lg(c.vocab_size), k(hd);
  s.prefill(prompt_ids(300, c.vocab_size, 8), lg.data());  // longer than a decode chunk (256 keys)
  s.decode(12, lg.data());
  ASSERT_EQ(static_cast<int>(mass.size()), c.n_layers);
  for (int l = 0; l < c.n_layers; ++l)
    for (int h = 0; h < H; ++h) {
      const int g = h / r, len = s.kv().len(l, g);
      std::vector<double> sc(len);
      double mx = -INFINITY, sum = 0;
      int best = 0;
      for (int j = 0; j < len; ++j) {
        s.kv().key(l, g, j, k.data());
        double d = 0;
        for (int e = 0; e < hd; ++e) d += double(qs[l][h * hd + e]) * k[e];
        sc[j] = d / std::sqrt(double(hd));
        if (sc[j] > sc[best]) best = j;
        mx = std::max(mx, sc[j]);
      }
      double span = 0;
      for (int j = 0; j < len; ++j) sum += std::exp(sc[j] - mx);
      for (int j = probe.lo; j < probe.hi; ++j) span += std::exp(sc[j] - mx) / sum;
      EXPECT_NEAR(mass[l][h], span, 1e-5) << "layer " << l << " head " << h;
      EXPECT_EQ(arg[l][h], best) << "layer " << l << " head " << h;
    }
}

// compress_copy gives the cache, kept positions and continuation that the
// method's own compressing prefill gives.
TEST(Engine, CompressCopyEqualsCompressingPrefill) {
  auto m = stories();
  const ModelConfig& c = m->config;
  Profile prof = identity_profile(*m, true);
  const auto ids = prompt_ids(140, c.vocab_size, 9);
  SessionOptions fo;
  fo.keep_queries = 16;
  Session full(*m, fo);
  std::vector<float> lg(c.vocab_size), a(c.vocab_size), b(c.vocab_size);
  full.prefill(ids, lg.data());
  for (const std::string& method : press_names()) {
    SessionOptions so;
    so.method = method;
    so.press.budget = 40;
    so.profile = &prof;
    Session own(*m, so);
    own.prefill(ids, a.data());
    auto copy = full.compress_copy(so);
    EXPECT_EQ(copy->kept(), own.kept()) << method;
    EXPECT_EQ(copy->n_past(), own.n_past());
    for (int step = 0; step < 4; ++step) {
      own.decode(20 + step, a.data());
      copy->decode(20 + step, b.data());
      EXPECT_EQ(a, b) << method << " step " << step;
    }
  }
}

// The same with the window at the user message (--kv-window-at user): the
// copy honours the suffix exactly as the method's own read does, every layer
// keeps the suffix, and the selection differs from the window at the end.
TEST(Engine, CompressCopyWindowAtUserEqualsCompressingPrefill) {
  auto m = stories();
  const ModelConfig& c = m->config;
  Profile prof = identity_profile(*m, true);
  const auto ids = prompt_ids(140, c.vocab_size, 9);
  const int suffix = 6, T = static_cast<int>(ids.size());
  SessionOptions fo;
  fo.keep_queries = 8 + suffix;
  Session full(*m, fo);
  std::vector<float> lg(c.vocab_size), a(c.vocab_size), b(c.vocab_size);
  full.prefill(ids, lg.data());
  int differ = 0;
  for (const std::string& method : press_names()) {
    SessionOptions so;
    so.method = method;
    so.press.budget = 40;
    so.press.window_at = WindowAt::User;
    so.user_suffix = suffix;
    so.profile = &prof;
    Session own(*m, so);
    own.prefill(ids, a.data());
    auto copy = full.compress_copy(so);
    EXPECT_EQ(copy->kept(), own.kept()) << method;
    if (method != "full")
      for (const auto& layer : own.kept())
        for (const auto& head : layer) {
          ASSERT_GE(head.size(), static_cast<size_t>(suffix + 8));
          for (int i = 0; i < suffix + 8; ++i) EXPECT_EQ(head[head.size() - 1 - i], T - 1 - i) << method;
        }
    SessionOptions at_end = so;
    at_end.press.window_at = WindowAt::End;
    Session end(*m, at_end);
    end.prefill(ids, b.data());
    differ += end.kept() != own.kept();
    for (int step = 0; step < 4; ++step) {
      own.decode(20 + step, a.data());
      copy->decode(20 + step, b.data());
      EXPECT_EQ(a, b) << method << " step " << step;
    }
  }
  EXPECT_GE(differ, 4) << "the window at the user message changes what the scoring methods keep";
  // A copy whose window and suffix need more query rows than the source kept is refused.
  SessionOptions more;
  more.method = "snapkv";
  more.press.budget = 40;
  more.press.window_at = WindowAt::User;
  more.user_suffix = suffix + 1;
  EXPECT_THROW(full.compress_copy(more), Error);
  // A suffix longer than the prompt is refused by the read.
  more.user_suffix = T + 1;
  Session longer(*m, more);
  EXPECT_THROW(longer.prefill(ids, a.data()), Error);
}

// Every read is all or nothing: when the page pool cannot hold a step's rows,
// the step throws and no cache is a row longer; the same step succeeds once
// pages are free again. Likewise a later read that does not fit.
TEST(Engine, FailedStepChangesNothing) {
  auto m = stories();
  const ModelConfig& c = m->config;
  const int V = c.vocab_size;
  ContextOptions co;
  co.max_seqs = 2;
  co.kv_pages = int64_t(c.n_layers) * c.n_kv_heads * 5;  // 80 rows a head in all
  Context ctx(*m, make_cpu_backend(), co);
  std::vector<float> lg(2 * V);
  auto a = std::make_unique<Sequence>(ctx, seq_opts("full", 0, nullptr));
  Sequence b(ctx, seq_opts("full", 0, nullptr));
  a->read(prompt_ids(32, V, 1), lg.data());  // 2 pages a head
  b.read(prompt_ids(48, V, 2), lg.data());   // 3 pages a head: the pool is full
  const int toks[] = {7, 8};
  std::vector<DecodeStep> both = {{a.get(), std::span<const int>(&toks[0], 1), lg.data()},
                                  {&b, std::span<const int>(&toks[1], 1), lg.data() + V}};
  EXPECT_THROW(decode_step(ctx, both), Error);
  for (int l = 0; l < c.n_layers; ++l)
    for (int g = 0; g < c.n_kv_heads; ++g) {
      ASSERT_EQ(a->kv().len(l, g), 32);
      ASSERT_EQ(b.kv().len(l, g), 48);
    }
  EXPECT_EQ(a->n_past(), 32);
  EXPECT_EQ(b.n_past(), 48);
  EXPECT_EQ(ctx.pool().in_use(), ctx.pool().capacity());
  EXPECT_THROW(b.read(prompt_ids(20, V, 3), lg.data()), Error);  // a later read that does not fit
  EXPECT_FALSE(b.reading());
  EXPECT_EQ(b.kv().len(0, 0), 48);
  a.reset();  // its pages back to the pool
  DecodeStep one{&b, std::span<const int>(&toks[1], 1), lg.data()};
  decode_step(ctx, std::span<DecodeStep>(&one, 1));
  EXPECT_EQ(b.n_past(), 49);
  EXPECT_EQ(b.kv().len(c.n_layers - 1, c.n_kv_heads - 1), 49);
}

// A step that sends back only a sequence's top logits (DecodeStep::top)
// gives the first entries of its whole row in sampling order, in a batch
// mixing both kinds (the CPU kernel is util/top_logits.h; CUDA's is compared
// with it in test_cuda_backend); greedy decoding on the candidates follows the same
// tokens; and the step is refused, changing nothing, for a bad count.
TEST(Engine, TopLogitsStepsEqualTheWholeRow) {
  auto m = stories();
  const int V = m->config.vocab_size;
  ContextOptions co;
  co.max_seqs = 3;
  Context ctx(*m, make_cpu_backend(), co);
  const SequenceOptions so = seq_opts("full", 0, nullptr);
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::vector<float>> lg(3, std::vector<float>(V));
  for (int i = 0; i < 3; ++i) {
    seqs.push_back(std::make_unique<Sequence>(ctx, so));
    seqs[i]->read(prompt_ids(50, V, i == 1 ? 1 : 0), lg[i].data());  // 0 and 2 read the same prompt
  }
  const int k = 40;
  std::vector<float> vals(k);
  std::vector<int32_t> ids(k);
  std::vector<int> tok(3);
  for (int step = 0; step < 10; ++step) {
    for (int i = 0; i < 2; ++i) tok[i] = Sampler::argmax(lg[i].data(), V);
    tok[2] = step == 0 ? Sampler::argmax(lg[2].data(), V) : ids[0];
    ASSERT_EQ(tok[2], tok[0]) << "step " << step << ": greedy on the candidates";
    std::vector<DecodeStep> batch = {{seqs[0].get(), std::span<const int>(&tok[0], 1), lg[0].data()},
                                     {seqs[1].get(), std::span<const int>(&tok[1], 1), lg[1].data()},
                                     {seqs[2].get(), std::span<const int>(&tok[2], 1), vals.data()}};
    batch[2].top = k;
    batch[2].top_ids = ids.data();
    decode_step(ctx, batch);
    std::vector<int32_t> order(V);
    for (int i = 0; i < V; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return lg[0][a] > lg[0][b]; });
    // Sequence 2 is sequence 0 at another row of the batch: the same values
    // to rounding, so ids are compared where the neighbours' gaps exceed it.
    for (int i = 0; i < k; ++i) {
      ASSERT_NEAR(vals[i], lg[0][order[i]], 1e-4) << "step " << step << " rank " << i;
      if (i > 0) {
        ASSERT_GE(vals[i - 1], vals[i]) << "sampling order";
      }
      const float up = i > 0 ? lg[0][order[i - 1]] - lg[0][order[i]] : 1.0f;
      const float down = lg[0][order[i]] - lg[0][order[i + 1]];
      if (up > 1e-3f && down > 1e-3f) {
        ASSERT_EQ(ids[i], order[i]) << "step " << step << " rank " << i;
      }
    }
  }
  const int64_t before = seqs[2]->n_past();
  std::vector<DecodeStep> bad = {{seqs[2].get(), std::span<const int>(&tok[2], 1), vals.data()}};
  bad[0].top = Backend::kMaxTopLogits + 1;
  bad[0].top_ids = ids.data();
  EXPECT_THROW(decode_step(ctx, bad), Error);
  EXPECT_EQ(seqs[2]->n_past(), before);
}
