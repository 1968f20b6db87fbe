// Tensor parallelism on the CPU (engine/tp.h, model/shard.h, kernels/comm.h):
// the sharding arithmetic for every architecture against the unsplit model,
// the in-process communicator, and --tp 2/4 against one device: logits
// within fp32 reordering, kept positions of every method exactly equal.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <thread>

#include "engine/forward.h"
#include "engine/session.h"
#include "engine/tp.h"
#include "kernels/comm.h"
#include "model/quant.h"
#include "model/shard.h"
#include "profile/profile.h"
#include "test_util.h"
#include "tp_test_util.h"

namespace ckv {
namespace {

using test::shared_dir;
using test::source_dir;

std::string stories_path() { return source_dir() + "/models/stories260k/stories260K.bin"; }

// ---- the communicator -------------------------------------------------------

TEST(ThreadComm, SumsInRankOrderAndGathers) {
  const int N = 3, n = 1001;
  auto comms = make_thread_comms(N);
  std::vector<std::vector<float>> buf(N, std::vector<float>(n));
  for (int r = 0; r < N; ++r)
    for (int i = 0; i < n; ++i) buf[r][i] = std::sin(0.37f * i + r) * (r + 1) * 1e3f + 1e-3f * r;
  std::vector<float> want(n);
  for (int i = 0; i < n; ++i) want[i] = (buf[0][i] + buf[1][i]) + buf[2][i];
  std::vector<std::vector<int32_t>> gathered(N, std::vector<int32_t>(2 * N));
  std::vector<std::thread> th;
  for (int r = 0; r < N; ++r)
    th.emplace_back([&, r] {
      comms[r]->all_reduce_sum(buf[r].data(), n);
      const int32_t mine[] = {r, 10 * r};
      comms[r]->all_gather(mine, gathered[r].data(), 2);
      comms[r]->barrier();
    });
  for (auto& t : th) t.join();
  for (int r = 0; r < N; ++r) {
    EXPECT_EQ(0, std::memcmp(buf[r].data(), want.data(), n * sizeof(float))) << "rank " << r;
    EXPECT_EQ(gathered[r], (std::vector<int32_t>{0, 0, 1, 10, 2, 20}));
  }
}

TEST(ThreadComm, AbortReleasesAWaitingRankAndResetReuses) {
  auto comms = make_thread_comms(2);
  std::string err;
  std::thread waiter([&] {
    float x = 1;
    try {
      comms[0]->all_reduce_sum(&x, 1);  // rank 1 never comes
    } catch (const Error& e) {
      err = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(comms[1]->abort());
  waiter.join();
  EXPECT_NE(err.find("another rank failed"), std::string::npos) << err;
  comms[0]->reset();
  float a = 2, b = 3;
  std::thread t0([&] { comms[0]->all_reduce_sum(&a, 1); });
  comms[1]->all_reduce_sum(&b, 1);
  t0.join();
  EXPECT_EQ(a, 5.0f);
  EXPECT_EQ(b, 5.0f);
}

// ---- the sharding arithmetic --------------------------------------------------

ModelConfig shape(int H, int G, int ff) {
  ModelConfig c;
  c.n_heads = H, c.n_kv_heads = G, c.hidden_dim = ff, c.head_dim = 8, c.dim = 16, c.n_layers = 1;
  return c;
}

TEST(ShardPlan, PartitionsHeadsAlongGqaGroupsAndTheFfn) {
  struct Case {
    int H, G, ff, tp, align;
  };
  const Case cases[] = {{32, 8, 14336, 1, 1}, {32, 8, 14336, 2, 1}, {32, 8, 14336, 8, 1}, {64, 8, 28672, 4, 256},
                        {9, 3, 1536, 3, 32},  {8, 4, 768, 4, 1},    {8, 8, 10, 8, 1},     {4, 2, 10, 2, 1},
                        {12, 4, 10, 4, 1},    {28, 4, 18944, 2, 1}};
  for (const Case& k : cases) {
    const ModelConfig c = shape(k.H, k.G, k.ff);
    int next_head = 0, next_kv = 0, next_ff = 0, min_ff = INT32_MAX, max_ff = 0;
    for (int r = 0; r < k.tp; ++r) {
      const ShardPlan p = shard_plan(c, r, k.tp, k.align);
      SCOPED_TRACE(std::to_string(k.H) + "/" + std::to_string(k.G) + " heads, tp " + std::to_string(k.tp) + ", rank " +
                   std::to_string(r));
      EXPECT_EQ(p.head0, next_head);
      EXPECT_EQ(p.kv_head0, next_kv);
      EXPECT_EQ(p.ff0, next_ff);
      EXPECT_EQ(p.n_kv_heads, k.G / k.tp);
      // Every query head the rank holds reads one of its KV heads, and no other rank's.
      const int group = k.H / k.G;
      for (int h = p.head0; h < p.head0 + p.n_heads; ++h) {
        EXPECT_GE(h / group, p.kv_head0);
        EXPECT_LT(h / group, p.kv_head0 + p.n_kv_heads);
      }
      EXPECT_EQ(p.ff0 % k.align, 0);
      EXPECT_EQ(p.n_ff % k.align, 0);
      next_head += p.n_heads, next_kv += p.n_kv_heads, next_ff += p.n_ff;
      min_ff = std::min(min_ff, p.n_ff), max_ff = std::max(max_ff, p.n_ff);
    }
    EXPECT_EQ(next_head, k.H);
    EXPECT_EQ(next_kv, k.G);
    EXPECT_EQ(next_ff, k.ff);
    EXPECT_LE(max_ff - min_ff, k.align);  // even, up to one unit
  }
}

TEST(ShardPlan, TpThatDoesNotDivideTheKvHeadsIsAClearError) {
  EXPECT_ERROR(shard_plan(shape(32, 8, 64), 0, 3), "--tp 3", "8 KV heads");
  EXPECT_ERROR(shard_plan(shape(9, 3, 64), 0, 2), "--tp 2", "3 KV heads");
  EXPECT_ERROR(shard_plan(shape(8, 4, 64), 0, 0), "--tp 0");
  EXPECT_ERROR(shard_plan(shape(8, 8, 4), 0, 8), "--tp 8", "FFN");
}

// Dequantised rows [r0, r0 + n) of a matrix, each of its cols.
std::vector<float> rows_of(const Tensor& t) { return dequantize(t); }

// Concatenation of the ranks' row slices, and of their column slices per row.
std::vector<float> concat_rows(const std::vector<const Tensor*>& parts) {
  std::vector<float> v;
  for (const Tensor* t : parts) {
    auto d = rows_of(*t);
    v.insert(v.end(), d.begin(), d.end());
  }
  return v;
}
std::vector<float> concat_cols(const std::vector<const Tensor*>& parts) {
  const int64_t rows = parts[0]->rows();
  std::vector<std::vector<float>> d;
  for (const Tensor* t : parts) d.push_back(rows_of(*t));
  std::vector<float> v;
  for (int64_t r = 0; r < rows; ++r)
    for (size_t p = 0; p < parts.size(); ++p) {
      const int64_t c = parts[p]->cols();
      v.insert(v.end(), d[p].begin() + r * c, d[p].begin() + (r + 1) * c);
    }
  return v;
}

struct ShardCase {
  std::string name, path;
  std::vector<int> tps;
};

class Sharding : public ::testing::TestWithParam<ShardCase> {};

TEST_P(Sharding, RanksSlicesRebuildTheWholeModel) {
  CKV_REQUIRE_SHARED();
  const ShardCase& k = GetParam();
  auto full = load_model(k.path);
  const ModelConfig& c = full->config;
  for (int tp : k.tps) {
    SCOPED_TRACE(k.name + " tp " + std::to_string(tp));
    std::vector<std::unique_ptr<Model>> ranks;
    for (int r = 0; r < tp; ++r) ranks.push_back(shard_model(*full, r, tp));
    int heads = 0, kv = 0, ff = 0;
    for (auto& m : ranks) heads += m->config.n_heads, kv += m->config.n_kv_heads, ff += m->config.hidden_dim;
    EXPECT_EQ(heads, c.n_heads);
    EXPECT_EQ(kv, c.n_kv_heads);
    EXPECT_EQ(ff, c.hidden_dim);
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& f = full->layers[l];
      auto part = [&](auto member) {
        std::vector<const Tensor*> v;
        for (auto& m : ranks) v.push_back(&(m->layers[l].*member));
        return v;
      };
      EXPECT_EQ(concat_rows(part(&LayerWeights::wq)), rows_of(f.wq)) << "wq layer " << l;
      EXPECT_EQ(concat_rows(part(&LayerWeights::wk)), rows_of(f.wk)) << "wk layer " << l;
      EXPECT_EQ(concat_rows(part(&LayerWeights::wv)), rows_of(f.wv)) << "wv layer " << l;
      EXPECT_EQ(concat_rows(part(&LayerWeights::w_gate)), rows_of(f.w_gate)) << "w_gate layer " << l;
      EXPECT_EQ(concat_rows(part(&LayerWeights::w_up)), rows_of(f.w_up)) << "w_up layer " << l;
      EXPECT_EQ(concat_cols(part(&LayerWeights::wo)), rows_of(f.wo)) << "wo layer " << l;
      EXPECT_EQ(concat_cols(part(&LayerWeights::w_down)), rows_of(f.w_down)) << "w_down layer " << l;
      if (c.qkv_bias) {
        EXPECT_EQ(concat_rows(part(&LayerWeights::bq)), rows_of(f.bq)) << "bq layer " << l;
        EXPECT_EQ(concat_rows(part(&LayerWeights::bk)), rows_of(f.bk)) << "bk layer " << l;
        EXPECT_EQ(concat_rows(part(&LayerWeights::bv)), rows_of(f.bv)) << "bv layer " << l;
      }
      for (auto& m : ranks) {  // replicated
        EXPECT_EQ(m->layers[l].attn_norm.data, f.attn_norm.data);
        EXPECT_EQ(m->layers[l].ffn_norm.data, f.ffn_norm.data);
        EXPECT_EQ(m->layers[l].q_norm.data, f.q_norm.data);
        EXPECT_EQ(m->layers[l].k_norm.data, f.k_norm.data);
      }
    }
    for (auto& m : ranks) EXPECT_EQ(m->output.data, full->output.data);
    // The ranks' partial W_o products of their heads' attention output sum to the whole product.
    const LayerWeights& f = full->layers[0];
    const int64_t qd = int64_t(c.n_heads) * c.head_dim, dim = c.dim;
    std::vector<float> att(qd);
    for (int64_t i = 0; i < qd; ++i) att[i] = std::cos(0.1f * i);
    const auto wo = rows_of(f.wo);
    std::vector<double> whole(dim, 0.0), sum(dim, 0.0);
    for (int64_t o = 0; o < dim; ++o)
      for (int64_t i = 0; i < qd; ++i) whole[o] += double(wo[o * qd + i]) * att[i];
    for (auto& m : ranks) {
      const Tensor& w = m->layers[0].wo;
      const auto d = rows_of(w);
      const int64_t c0 = int64_t(m->shard.head0) * c.head_dim;
      for (int64_t o = 0; o < dim; ++o)
        for (int64_t i = 0; i < w.cols(); ++i) sum[o] += double(d[o * w.cols() + i]) * att[c0 + i];
    }
    for (int64_t o = 0; o < dim; ++o) EXPECT_NEAR(sum[o], whole[o], 1e-9 * (1 + std::fabs(whole[o])));
  }
}

std::vector<ShardCase> shard_cases() {
  const std::string hf = shared_dir() + "/models/tiny-hf/";
  return {{"stories260K", stories_path(), {2, 4}},
          {"tiny_llama3", hf + "tiny-llama3", {2}},
          {"tiny_mistral", hf + "tiny-mistral", {2}},
          {"tiny_qwen2", hf + "tiny-qwen2", {2}},
          {"tiny_qwen3", hf + "tiny-qwen3", {2}},
          {"smollm2_q4_1", shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", {3}}};
}

INSTANTIATE_TEST_SUITE_P(EveryArchitecture, Sharding, ::testing::ValuesIn(shard_cases()),
                         [](const auto& i) { return i.param.name; });

TEST(Sharding, ColumnsInsideQuantisationBlocksBecomeExactF32) {
  // A Q8_0 matrix (32-column blocks) cut at column 16.
  Model owner;
  const int64_t rows = 3, cols = 64;
  std::vector<float> src(rows * cols);
  for (size_t i = 0; i < src.size(); ++i) src[i] = std::sin(0.3f * i);
  std::vector<uint8_t> q(rows * dtype_row_bytes(DType::Q8_0, cols));
  // Q8_0 block: f16 scale + 32 int8.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 32; ++b) {
      uint8_t* blk = &q[(r * (cols / 32) + b) * 34];
      const uint16_t one = 0x3C00;  // f16 1.0
      std::memcpy(blk, &one, 2);
      for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>((r * cols + b * 32 + j) % 100 - 50));
    }
  Tensor t;
  t.name = "m";
  t.type = DType::Q8_0;
  t.shape = {rows, cols};
  t.data = q.data();
  t.nbytes = q.size();
  const auto whole = dequantize(t);
  Tensor s = slice_cols(owner, t, 16, 32);
  EXPECT_EQ(s.type, DType::F32);
  const auto got = dequantize(s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < 32; ++c) EXPECT_EQ(got[r * 32 + c], whole[r * cols + 16 + c]);
  Tensor a = slice_cols(owner, t, 32, 32);  // whole blocks stay Q8_0
  EXPECT_EQ(a.type, DType::Q8_0);
  const auto ga = dequantize(a);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < 32; ++c) EXPECT_EQ(ga[r * 32 + c], whole[r * cols + 32 + c]);
}

// ---- end to end: --tp N against one device ------------------------------------

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double w = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) w = std::max(w, std::fabs(double(a[i]) - b[i]));
  return w;
}

TEST(TensorParallel, TinyHfLogitsWithTp2MatchTransformers) {
  CKV_REQUIRE_SHARED();
  auto g = test::read_json(shared_dir() + "/golden/tiny-hf/tiny_hf.json");
  const std::vector<int> ids = g["input_ids"].get<std::vector<int>>();
  for (const char* name : {"tiny-llama3", "tiny-mistral", "tiny-qwen2", "tiny-qwen3"}) {
    auto m = load_model(shared_dir() + "/models/tiny-hf/" + name);
    const auto want = test::read_f32(shared_dir() + "/golden/tiny-hf/" + std::string(name) + ".logits.f32");
    SessionOptions one, two;
    two.tp = 2;
    const auto a = test::session_logits(*m, one, ids, 0), b = test::session_logits(*m, two, ids, 0);
    EXPECT_LE(max_abs_diff(b, want), 1e-4) << name;
    EXPECT_LE(max_abs_diff(a, b), 2e-5) << name << ": tp 2 against tp 1";
  }
}

TEST(TensorParallel, Stories260KLogitsWithTp2And4MatchOneDevice) {
  auto m = load_model(stories_path());
  const auto prompt = test::pseudo_tokens(96, m->config.vocab_size, 7);
  SessionOptions one;
  const auto ref = test::session_logits(*m, one, prompt, 6);
  for (int tp : {2, 4}) {
    SessionOptions so;
    so.tp = tp;
    EXPECT_LE(max_abs_diff(test::session_logits(*m, so, prompt, 6), ref), 2e-5) << "tp " << tp;
  }
}

class KeptPositionsWithTp : public ::testing::TestWithParam<std::string> {};

TEST_P(KeptPositionsWithTp, EqualOneDeviceExactly) {
  auto m = load_model(stories_path());
  const Profile prof = test::spread_profile(m->config, {0.1, 0.3, 0.2, 0.25, 0.15});
  ASSERT_EQ(prof.layer_scores.size(), size_t(m->config.n_layers));
  const auto prompt = test::pseudo_tokens(240, m->config.vocab_size, 11);
  SessionOptions one;
  one.method = GetParam();
  one.press.budget = 48;
  one.press.window = 8;
  one.profile = &prof;
  std::vector<KeptPositions> want;
  const auto ref = test::session_logits(*m, one, prompt, 4, &want);
  ASSERT_EQ(want.size(), size_t(m->config.n_layers));
  size_t kept_rows = 0;
  for (const auto& l : want)
    for (const auto& h : l) kept_rows += h.size();
  EXPECT_LT(kept_rows, size_t(m->config.n_layers) * m->config.n_kv_heads * prompt.size());  // it compressed
  for (int tp : {2, 4}) {
    SessionOptions so = one;
    so.tp = tp;
    std::vector<KeptPositions> got;
    const auto lg = test::session_logits(*m, so, prompt, 4, &got);
    EXPECT_EQ(got, want) << GetParam() << " tp " << tp;
    EXPECT_LE(max_abs_diff(lg, ref), 2e-5) << GetParam() << " tp " << tp;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryMethod, KeptPositionsWithTp,
                         ::testing::Values("streamingllm", "snapkv", "pyramidkv", "adakv", "compresskv",
                                           "adacompresskv"));

TEST(TensorParallel, BatchedDecodeOfTwoSequencesMatchesOneDevice) {
  auto m = load_model(stories_path());
  const int V = m->config.vocab_size;
  ContextOptions co;
  co.n_ctx = 256;
  co.max_seqs = 2;
  SequenceOptions so;
  so.method = "snapkv";
  so.press.budget = 24;
  const auto p0 = test::pseudo_tokens(80, V, 1), p1 = test::pseudo_tokens(50, V, 2);
  // One device.
  Context ctx(*m, make_cpu_backend(), co);
  Sequence a(ctx, so), b(ctx, so);
  std::vector<float> la(V), lb(V);
  a.read(p0, la.data());
  b.read(p1, lb.data());
  // Two ranks.
  TpGroup g(*m, 2, [](int) { return make_cpu_backend(); }, co);
  TpSequence ta(g, so), tb(g, so);
  std::vector<float> ta_l(V), tb_l(V);
  ta.read(p0, ta_l.data());
  tb.read(p1, tb_l.data());
  EXPECT_LE(max_abs_diff(la, ta_l), 2e-5);
  EXPECT_LE(max_abs_diff(lb, tb_l), 2e-5);
  for (int step = 0; step < 5; ++step) {
    const int t0[] = {step * 3 % V}, t1[] = {step * 7 % V, (step * 11 + 1) % V};
    DecodeStep one[] = {{&a, t0, la.data()}, {&b, t1, lb.data()}};
    decode_step(ctx, one);
    TpDecodeStep two[] = {{&ta, t0, ta_l.data()}, {&tb, t1, tb_l.data()}};
    decode_step(g, two);
    EXPECT_LE(max_abs_diff(la, ta_l), 2e-5) << "step " << step;
    EXPECT_LE(max_abs_diff(lb, tb_l), 2e-5) << "step " << step;
  }
  EXPECT_EQ(ta.n_past(), a.n_past());
  EXPECT_EQ(ta.kept(), a.kept());
  EXPECT_EQ(ta.kv_bytes(), a.kv().bytes());  // the same pages, split by head
}

TEST(TensorParallel, CompressCopyKeepsWhatOneDeviceKeeps) {
  auto m = load_model(stories_path());
  const int V = m->config.vocab_size;
  const Profile prof = test::spread_profile(m->config, {0.1, 0.3, 0.2, 0.25, 0.15});
  const auto prompt = test::pseudo_tokens(200, V, 21);
  std::vector<KeptPositions> kept[2];
  std::vector<float> next[2];
  for (int i = 0; i < 2; ++i) {
    SessionOptions full;
    full.tp = i + 1;
    full.keep_queries = 8;
    Session s(*m, full);
    std::vector<float> lg(V);
    s.prefill(prompt, lg.data());
    SessionOptions ck;
    ck.method = "adacompresskv";
    ck.press.budget = 40;
    ck.profile = &prof;
    auto c = s.compress_copy(ck);
    kept[i] = c->kept();
    next[i].resize(V);
    c->decode(5, next[i].data());
  }
  EXPECT_EQ(kept[1], kept[0]);
  EXPECT_LE(max_abs_diff(next[1], next[0]), 2e-5);
}

TEST(TensorParallel, TpNotDividingTheKvHeadsIsAClearError) {
  auto m = load_model(stories_path());  // 4 KV heads
  for (int tp : {3, 8}) {
    SessionOptions so;
    so.tp = tp;
    EXPECT_ERROR(Session(*m, so), "--tp " + std::to_string(tp), "4 KV heads");
  }
}

TEST(TensorParallel, AFullPoolFailsTheStepOnEveryRankAndTheGroupGoesOn) {
  auto m = load_model(stories_path());
  const int V = m->config.vocab_size;
  ContextOptions co;
  co.n_ctx = 512;
  co.kv_pages = int64_t(m->config.n_layers) * (m->config.n_kv_heads / 2) * 2;  // per rank: 2 pages a head
  TpGroup g(*m, 2, [](int) { return make_cpu_backend(); }, co);
  SequenceOptions so;
  std::vector<float> lg(V);
  {
    TpSequence s(g, so);
    const int P = g.context(0).backend().kv_page_rows();
    EXPECT_ERROR(s.read(test::pseudo_tokens(3 * P, V, 3), lg.data()), "KV");
    EXPECT_FALSE(s.reading());
    EXPECT_EQ(s.kv_bytes(), 0u);
  }
  // The group still works: a prompt that fits gives one device's logits.
  TpSequence s(g, so);
  const auto p = test::pseudo_tokens(20, V, 4);
  s.read(p, lg.data());
  Session one(*m, SessionOptions{});
  std::vector<float> ref(V);
  one.prefill(p, ref.data());
  EXPECT_LE(max_abs_diff(lg, ref), 2e-5);
}

TEST(TensorParallelCli, RunAndBenchTakeTp) {
  auto one = test::run_cli({"run", "-m", stories_path(), "--device", "cpu", "-p", "Once upon a time", "-n", "40",
                            "--temp", "0", "--kv-method", "snapkv", "--kv-budget", "16"});
  auto two = test::run_cli({"run", "-m", stories_path(), "--device", "cpu", "-p", "Once upon a time", "-n", "40",
                            "--temp", "0", "--kv-method", "snapkv", "--kv-budget", "16", "--tp", "2"});
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(two.status, 0) << two.err;
  EXPECT_EQ(two.out, one.out);
  auto bad = test::run_cli({"run", "-m", stories_path(), "--device", "cpu", "-p", "x", "-n", "2", "--tp", "3"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("--tp 3"), std::string::npos) << bad.err;
  auto b = test::run_cli({"bench", "-m", stories_path(), "--device", "cpu", "-p", "32", "-n", "8", "-r", "1", "--tp",
                          "2", "--json"});
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_NE(b.out.find("\"tp\":2"), std::string::npos) << b.out;
}

}  // namespace
}  // namespace ckv
