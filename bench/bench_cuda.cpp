// GPU benchmarks of issue 10 item 7: the engine end to end on random bf16
// weights of a real shape (--random-weights), and the attention and product
// kernels alone, each figure also as a fraction of its roofline:
//   decode  = (weight bytes less the embedding table + KV bytes read per
//             step) / the measured copy bandwidth  -> tokens/s ceiling
//   prefill = FLOPs (products + causal attention) / the measured bf16 GEMM rate
//
//   bench_cuda CONFIG.json --copy-gbs 4230 --gemm-tflops 781 [--heads H.json --scores S.json]
//              [--scenarios NAME,...] [--kernels] [--json FILE]
//
// A scenario: B sequences each read a P-token prompt (timed: prefill
// tokens/s summed over the batch), then decode N tokens together (timed:
// aggregate tokens/s), greedy on the host logits as `compresskv bench` does.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/context.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/sequence.h"
#include "kernels/cuda/cuda_backend.h"
#include "profile/profile.h"
#include "util/error.h"

using namespace ckv;
using clk = std::chrono::steady_clock;

namespace {

struct Scenario {
  std::string id, name;
  std::string method;  // "full" or "compresskv"
  int budget = 0;
  int batch = 1, prompt = 0, gen = 0;
};

struct Ceil {
  double copy_gbs = 0, gemm_tflops = 0;
};

double secs_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

size_t device_used() {
  size_t f = 0, t = 0;
  cudaMemGetInfo(&f, &t);
  return t - f;
}

// Non-embedding product parameters (the output head counted separately).
struct Shape {
  double layer_params, head_params, embed_bytes;
};
Shape shape_of(const ModelConfig& c) {
  const double q = double(c.n_heads) * c.head_dim, kv = double(c.n_kv_heads) * c.head_dim;
  const double layer = c.dim * (q + 2 * kv) + q * c.dim + 3.0 * c.dim * c.hidden_dim;
  return {layer * c.n_layers, double(c.vocab_size) * c.dim, double(c.vocab_size) * c.dim * 2};
}

// Prefill FLOPs of P tokens: products + causal attention (QK^T and PV) + one
// row of the output head.
double prefill_flops(const ModelConfig& c, double P) {
  const Shape s = shape_of(c);
  const double attn = 2.0 * 2.0 * (P * P / 2) * c.head_dim * c.n_heads * c.n_layers;
  return 2.0 * s.layer_params * P + attn + 2.0 * s.head_params;
}

// Bytes one decode step reads: every weight but the embedding table, plus
// each sequence's KV rows (f16).
double decode_bytes(const ModelConfig& c, const std::vector<std::unique_ptr<Sequence>>& seqs) {
  const Shape s = shape_of(c);
  double kv = 0;
  for (const auto& q : seqs)
    for (int l = 0; l < c.n_layers; ++l)
      for (int g = 0; g < c.n_kv_heads; ++g) kv += 2.0 * q->kv().len(l, g) * c.head_dim * 2;
  return (s.layer_params + s.head_params) * 2 + kv;
}

nlohmann::json run_scenario(const Model& m, const Scenario& sc, const Profile* prof, const Ceil& ce, uint64_t seed) {
  const ModelConfig& c = m.config;
  const size_t base = device_used();
  ContextOptions co;
  co.n_ctx = sc.prompt + sc.gen + 32;  // + the phase steps below
  co.max_seqs = sc.batch;
  co.chunk = 4096;
  co.kv_type = KvType::F16;
  const int P = 64;  // CUDA page rows
  if (sc.method == "full")
    co.kv_pages = int64_t(sc.batch) * c.n_layers * c.n_kv_heads * ((co.n_ctx + P - 1) / P);
  else
    co.kv_pages = int64_t(sc.batch) * c.n_kv_heads * c.n_layers * ((sc.budget + sc.gen + P - 1) / P + 2);
  CudaOptions o;
  o.random_seed = seed;
  auto t_prep = clk::now();
  Context ctx(m, make_cuda_backend(o), co);
  const double prep_s = secs_since(t_prep);
  SequenceOptions so;
  so.method = sc.method;
  so.press.budget = sc.budget;
  so.profile = prof;
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
  const int V = c.vocab_size;
  std::vector<float> logits(size_t(sc.batch) * V);

  // Warm-up: a short read and a few decode steps on one sequence.
  {
    std::vector<int> w(std::min(sc.prompt, 2048));
    for (int& t : w) t = tok(rng);
    Sequence s2(ctx, so);
    s2.read(w, logits.data());
    int t = Sampler::argmax(logits.data(), V);
    for (int i = 0; i < 3; ++i) {
      DecodeStep st{&s2, std::span<const int>(&t, 1), logits.data()};
      decode_step(ctx, std::span<DecodeStep>(&st, 1));
    }
  }
  ctx.backend().sync();

  std::vector<std::unique_ptr<Sequence>> seqs;
  for (int i = 0; i < sc.batch; ++i) seqs.push_back(std::make_unique<Sequence>(ctx, so));
  double pp_s = 0;
  for (int i = 0; i < sc.batch; ++i) {
    std::vector<int> prompt(sc.prompt);
    for (int& t : prompt) t = tok(rng);
    auto t0 = clk::now();
    seqs[i]->read(prompt, &logits[size_t(i) * V]);
    ctx.backend().sync();
    pp_s += secs_since(t0);
  }
  std::vector<int> next(sc.batch);
  for (int i = 0; i < sc.batch; ++i) next[i] = Sampler::argmax(&logits[size_t(i) * V], V);
  // Greedy: each step sends back every sequence's top logit (DecodeStep::top).
  std::vector<DecodeStep> steps(sc.batch);
  std::vector<int32_t> top(sc.batch);
  for (int i = 0; i < sc.batch; ++i) {
    steps[i] = {seqs[i].get(), std::span<const int>(&next[i], 1), &logits[size_t(i) * V]};
    steps[i].top = 1;
    steps[i].top_ids = &top[i];
  }
  const double bytes0 = decode_bytes(c, seqs);
  auto t0 = clk::now();
  for (int s = 0; s < sc.gen; ++s) {
    decode_step(ctx, steps);
    for (int i = 0; i < sc.batch; ++i) next[i] = top[i];
  }
  ctx.backend().sync();
  const double tg_s = secs_since(t0);
  const double bytes1 = decode_bytes(c, seqs);
  // Where a step's time goes: the same steps without logits (no output head,
  // no downloads), timed on the host per call (what enqueueing costs) and to
  // the end of the device's work; and what a host argmax over B whole rows
  // would cost (the path before DecodeStep::top).
  const int ph = std::min(sc.gen, 16);
  std::vector<DecodeStep> bare = steps;
  for (auto& st : bare) st.logits = nullptr;
  double host_s = 0;
  auto t1 = clk::now();
  for (int s = 0; s < ph; ++s) {
    auto th = clk::now();
    decode_step(ctx, bare);
    host_s += secs_since(th);
  }
  ctx.backend().sync();
  const double bare_s = secs_since(t1) / std::max(ph, 1);
  host_s /= std::max(ph, 1);
  auto t2 = clk::now();
  for (int s = 0; s < ph; ++s)
    for (int i = 0; i < sc.batch; ++i) next[i] = Sampler::argmax(&logits[size_t(i) * V], V);
  const double argmax_s = secs_since(t2) / std::max(ph, 1);
  std::printf("  step %.2f ms; without logits %.2f ms (host enqueue %.2f ms); host argmax of %d rows %.2f ms\n",
              1e3 * tg_s / std::max(sc.gen, 1), 1e3 * bare_s, 1e3 * host_s, sc.batch, 1e3 * argmax_s);
  size_t kv = 0, kv_full = 0;
  for (auto& s : seqs) kv += s->kv().bytes(), kv_full += s->kv().full_bytes(s->n_past());

  const double pp_tps = sc.prompt ? double(sc.prompt) * sc.batch / pp_s : 0;
  const double tg_tps = sc.gen ? double(sc.gen) * sc.batch / tg_s : 0;
  const double pp_roof = ce.gemm_tflops * 1e12 / prefill_flops(c, sc.prompt) * sc.prompt;
  const double tg_roof = sc.batch / ((bytes0 + bytes1) / 2 / (ce.copy_gbs * 1e9));
  nlohmann::json j = {{"scenario", sc.name},      {"method", sc.method},     {"budget", sc.budget},
                      {"batch", sc.batch},        {"prompt", sc.prompt},     {"gen", sc.gen},
                      {"pp_tokens_per_s", pp_tps}, {"pp_roofline", pp_roof},  {"tg_tokens_per_s", tg_tps},
                      {"tg_roofline", tg_roof},   {"kv_bytes", kv},          {"kv_bytes_full", kv_full},
                      {"device_bytes", device_used() - base}, {"prepare_s", prep_s},
                      {"step_ms", 1e3 * tg_s / std::max(sc.gen, 1)}, {"step_no_logits_ms", 1e3 * bare_s},
                      {"step_host_enqueue_ms", 1e3 * host_s}, {"host_argmax_ms", 1e3 * argmax_s}};
  std::printf("%-28s pp %9.1f tok/s (%4.1f%% of %8.0f)  tg %8.1f tok/s (%4.1f%% of %7.0f)  kv %.2f GiB  device %.2f GiB\n",
              sc.name.c_str(), pp_tps, 100 * pp_tps / pp_roof, pp_roof, tg_tps, 100 * tg_tps / tg_roof, tg_roof,
              kv / 1073741824.0, (device_used() - base) / 1073741824.0);
  std::fflush(stdout);
  return j;
}

// The kernels alone at Llama-3.1-8B sizes, through the Backend interface.
nlohmann::json run_kernels(const Model& m, const Ceil& ce) {
  const ModelConfig& c = m.config;
  nlohmann::json out = nlohmann::json::array();
  auto be = make_cuda_backend();
  const int T = 32768, H = c.n_heads, G = c.n_kv_heads, hd = c.head_dim;
  be->prepare(m, BackendLimits{4096, 32, T});
  auto time = [&](int reps, auto&& f) {
    f();
    be->sync();
    auto t0 = clk::now();
    for (int i = 0; i < reps; ++i) f();
    be->sync();
    return secs_since(t0) / reps;
  };
  auto buf = [&](size_t n) {
    auto* p = static_cast<float*>(be->alloc(n * 4, "bench buffer"));
    be->fill(p, static_cast<int64_t>(n), 0.01f);
    return p;
  };
  {  // products of a 4096-row chunk (the prefill's shape) and of a decode batch; n = 1 also through cuBLASLt
    float* x = buf(size_t(4096) * c.hidden_dim);
    float* y = buf(size_t(4096) * c.hidden_dim);
    float* u = buf(size_t(4096) * c.hidden_dim);
    const LayerWeights& w = m.layers[0];
    for (int n : {4096, 1, 32}) {
      const MatmulOut o[] = {{&w.w_gate, y}};
      if (n == 1) {  // the GEMV (alone, gate+up in one launch, the FFN's fused form) against cuBLASLt
        const double one = time(200, [&] { be->matmul(o, x, 1); });
        const MatmulOut g2[] = {{&w.w_gate, y}, {&w.w_up, u}};
        const double two = time(200, [&] { be->matmul(g2, x, 1); });
        const double ffn = time(200, [&] { be->ffn_hidden(x, w.ffn_norm, u, w.w_gate, w.w_up, y, u, 1); });
        const double by1 = 2.0 * c.dim * c.hidden_dim;
        std::printf("gemv 1 x %d x %d: %8.3f ms  %6.0f GB/s (%4.1f%% of copy); gate+up: %6.0f GB/s; "
                    "rmsnorm+gate+up+silu (ffn_hidden): %6.0f GB/s\n",
                    c.dim, c.hidden_dim, one * 1e3, by1 / one / 1e9, 100 * by1 / one / 1e9 / ce.copy_gbs,
                    2 * by1 / two / 1e9, 2 * by1 / ffn / 1e9);
        out.push_back({{"kernel", "gemv"}, {"ms", one * 1e3}, {"gbs", by1 / one / 1e9}, {"gate_up_gbs", 2 * by1 / two / 1e9},
                       {"ffn_hidden_gbs", 2 * by1 / ffn / 1e9}});
        setenv("CKV_CUDA_NO_GEMV", "1", 1);
      }
      const double s = time(n == 4096 ? 20 : 200, [&] { be->matmul(o, x, n); });
      const double fl = 2.0 * n * c.dim * c.hidden_dim, by = 2.0 * c.dim * c.hidden_dim;
      std::printf("matmul %5d x %d x %d: %8.3f ms  %6.1f TFLOP/s (%4.1f%% of GEMM)  %6.0f GB/s (%4.1f%% of copy)\n", n,
                  c.dim, c.hidden_dim, s * 1e3, fl / s / 1e12, 100 * fl / s / 1e12 / ce.gemm_tflops, by / s / 1e9,
                  100 * by / s / 1e9 / ce.copy_gbs);
      out.push_back({{"kernel", "matmul"}, {"n", n}, {"ms", s * 1e3}, {"tflops", fl / s / 1e12}, {"gbs", by / s / 1e9}});
    }
    unsetenv("CKV_CUDA_NO_GEMV");
    be->free(x);
    be->free(y);
    be->free(u);
  }
  {  // causal prefill attention over T rows, in 4096-row chunks as the engine calls it
    float* q = buf(size_t(4096) * H * hd);
    float* o = buf(size_t(4096) * H * hd);
    float* k = buf(size_t(T) * G * hd);
    float* v = buf(size_t(T) * G * hd);
    std::mt19937 g(1);
    std::vector<float> r(size_t(T) * G * hd);
    std::normal_distribution<float> nd;
    for (float& x : r) x = nd(g);
    be->upload(k, r.data(), r.size() * 4);
    be->upload(v, r.data(), r.size() * 4);
    be->upload(q, r.data(), size_t(4096) * H * hd * 4);
    const DenseKV kv{k, v, 0, {}};
    for (const char* rows : {"128", "64"}) {  // the block shape variants; 64 (the default) last
      setenv("CKV_CUDA_PREFILL_ROWS", rows, 1);
      const double s = time(2, [&] {
        for (int i0 = 0; i0 < T; i0 += 4096) be->attention_prefill(q, i0, 4096, kv, H, G, hd, o);
      });
      const double fl = 4.0 * (double(T) * T / 2) * hd * H;
      std::printf("attention_prefill T=%d (one layer, %s-row blocks): %8.3f ms  %6.1f TFLOP/s (%4.1f%% of GEMM)\n", T,
                  rows, s * 1e3, fl / s / 1e12, 100 * fl / s / 1e12 / ce.gemm_tflops);
      out.push_back({{"kernel", "attention_prefill"}, {"T", T}, {"block_rows", std::atoi(rows)}, {"ms", s * 1e3},
                     {"tflops", fl / s / 1e12}});
    }
    unsetenv("CKV_CUDA_PREFILL_ROWS");
    be->free(q), be->free(o), be->free(k), be->free(v);
  }
  for (int B : {1, 8, 32}) {  // decode over f16 pages of 32768 rows per head, one layer
    const int len = B == 32 ? 1024 : T;
    KvPool pool(*be, hd, KvType::F16, be->kv_page_rows(), int64_t(B) * G * (len / 64 + 2));
    std::vector<std::unique_ptr<KvCache>> caches;
    std::vector<DecodeItem> items;
    for (int i = 0; i < B; ++i) {
      caches.push_back(std::make_unique<KvCache>(pool, 1, G, len + 8));
      caches.back()->grow(len);
      items.push_back({i, 1, caches.back().get()});
    }
    float* q = buf(size_t(B) * H * hd);
    float* o = buf(size_t(B) * H * hd);
    const double s = time(50, [&] { be->attention_decode(q, items, 0, o, nullptr); });
    const double by = 2.0 * B * G * len * hd * 2;
    std::printf("attention_decode B=%d len=%d (one layer): %8.3f ms  %6.0f GB/s (%4.1f%% of copy)\n", B, len, s * 1e3,
                by / s / 1e9, 100 * by / s / 1e9 / ce.copy_gbs);
    out.push_back({{"kernel", "attention_decode"}, {"B", B}, {"len", len}, {"ms", s * 1e3}, {"gbs", by / s / 1e9}});
    be->free(q), be->free(o);
  }
  {  // window scores of the whole prompt: 4 SRH heads (compresskv) and every head (snapkv)
    float* qw = buf(size_t(8) * H * hd);
    float* k = buf(size_t(T) * G * hd);
    float* sc = buf(size_t(G) * T);
    std::vector<std::vector<int>> srh = {{0, 5, 9, 30}}, snap(G);
    for (int h = 0; h < H; ++h) snap[h / (H / G)].push_back(h);
    for (auto* gr : {&srh, &snap}) {
      const double s = time(10, [&] { be->window_scores(qw, k, T, 8, H, G, hd, *gr, 5, Pool::Avg, sc); });
      std::printf("window_scores T=%d, %zu groups: %8.3f ms\n", T, gr->size(), s * 1e3);
      out.push_back({{"kernel", "window_scores"}, {"groups", gr->size()}, {"ms", s * 1e3}});
    }
    std::vector<int> kk(G, 1016);
    const double s = time(10, [&] { be->top_k(sc, G, T - 8, kk); });
    std::printf("top_k %d rows of %d: %8.3f ms\n", G, T - 8, s * 1e3);
    out.push_back({{"kernel", "top_k"}, {"rows", G}, {"ms", s * 1e3}});
    be->free(qw), be->free(k), be->free(sc);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw Error("usage: bench_cuda CONFIG.json [--copy-gbs X] [--gemm-tflops Y] [--heads H --scores S] "
                              "[--scenarios a,b] [--kernels] [--json FILE] [--seed S]");
    std::string config = argv[1], heads, scores, json_path, only;
    Ceil ce{4230, 781};
    bool kernels = false;
    uint64_t seed = 1;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      auto val = [&] {
        if (i + 1 >= argc) throw Error(a + " needs a value");
        return std::string(argv[++i]);
      };
      if (a == "--copy-gbs") ce.copy_gbs = std::stod(val());
      else if (a == "--gemm-tflops") ce.gemm_tflops = std::stod(val());
      else if (a == "--heads") heads = val();
      else if (a == "--scores") scores = val();
      else if (a == "--json") json_path = val();
      else if (a == "--scenarios") only = "," + val() + ",";
      else if (a == "--kernels") kernels = true;
      else if (a == "--seed") seed = std::stoull(val());
      else throw Error("unknown argument " + a);
    }
    auto m = make_random_model(config);
    const ModelConfig& c = m->config;
    std::printf("model: %s random bf16 weights (%d layers, dim %d, %d/%d heads, hd %d, vocab %d); ceilings: copy %.0f "
                "GB/s, bf16 GEMM %.0f TFLOP/s\n",
                config.c_str(), c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, ce.copy_gbs,
                ce.gemm_tflops);
    Profile prof;
    if (!heads.empty()) {
      prof = import_published_profile(heads, scores, c.arch, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, "");
    } else {
      prof.arch = c.arch;
      prof.n_layers = c.n_layers, prof.n_heads = c.n_heads, prof.n_kv_heads = c.n_kv_heads, prof.head_dim = c.head_dim;
      for (int l = 0; l < c.n_layers; ++l) {
        std::vector<int> r(c.n_heads);
        for (int h = 0; h < c.n_heads; ++h) r[h] = (h * 7 + l) % c.n_heads;
        prof.srh_ranking.push_back(r);
      }
    }
    nlohmann::json res = {{"config", config}, {"copy_gbs", ce.copy_gbs}, {"gemm_tflops", ce.gemm_tflops}};
    if (kernels) res["kernels"] = run_kernels(*m, ce);
    const std::vector<Scenario> all = {
        {"d0", "tg128@0 full", "full", 0, 1, 1, 128},
        {"full32k", "pp32768+tg128 full", "full", 0, 1, 32768, 128},
        {"ckv32k", "pp32768+tg128 ckv@1024", "compresskv", 1024, 1, 32768, 128},
        {"b8full", "8x32768 tg64 full", "full", 0, 8, 32768, 64},
        {"b32ckv", "32x32768 tg64 ckv@1024", "compresskv", 1024, 32, 32768, 64},
        {"ckv131k", "pp131072+tg32 ckv@1024", "compresskv", 1024, 1, 131072, 32},
    };
    res["scenarios"] = nlohmann::json::array();
    for (const Scenario& sc : all)
      if (only.empty() || only.find("," + sc.id + ",") != std::string::npos) {
        res["scenarios"].push_back(run_scenario(*m, sc, &prof, ce, seed));
        if (!json_path.empty()) std::ofstream(json_path) << res.dump(1) << "\n";  // after each: a timeout keeps the rest
      }
    if (!json_path.empty()) std::ofstream(json_path) << res.dump(1) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda: %s\n", e.what());
    return 1;
  }
}
