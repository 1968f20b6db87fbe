// The CUDA backend against the CPU backend, op by op (llama.cpp's
// test-backend-ops): every kernel of kernels/backend.h on fresh random
// inputs, normalised error ||cuda - cpu|| / ||cpu|| within the bound of its
// arithmetic (bf16 products 1e-2; f16 tensor-core attention 1e-2; f32 paths
// 1e-4 or far less); outputs poisoned with NaN before each run, so an
// unwritten element fails; odd sizes, lengths that are not multiples of a
// tile or a page, batches of sequences with different lengths per (sequence,
// KV head). Then end to end: the tiny checkpoints' logits against
// ../shared/golden with the bf16 tolerance of golden/README.md, and the kept
// positions of every method on both backends.
//
// Without CUDA in the build, or without a GPU, every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "engine/context.h"
#include "engine/forward.h"
#include "engine/kv_pages.h"
#include "engine/sequence.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "model/quant.h"
#include "model/quant_blocks.h"
#include "press/press.h"
#include "profile/profile.h"
#include "test_util.h"

namespace ckv {
namespace {

// CKV_TEST_CUDA_IS_CPU=1 runs the tests with the CPU backend in the GPU's
// place (a check of the tests themselves on a machine without a GPU).
bool cpu_as_gpu() { return std::getenv("CKV_TEST_CUDA_IS_CPU") != nullptr; }

#define REQUIRE_GPU()                                              \
  do {                                                             \
    std::string why_;                                              \
    if (!cpu_as_gpu() && !cuda_available(&why_)) GTEST_SKIP() << why_; \
  } while (0)
#define REQUIRE_REAL_GPU()                                   \
  do {                                                       \
    REQUIRE_GPU();                                           \
    if (cpu_as_gpu()) GTEST_SKIP() << "needs the CUDA backend"; \
  } while (0)

std::unique_ptr<Backend> gpu_backend(const CudaOptions& o = {}) {
  return cpu_as_gpu() ? make_cpu_backend() : make_cuda_backend(o);
}

std::vector<float> randn(size_t n, std::mt19937& g, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// ||a - b|| / ||b||; NaN (an unwritten element) makes it infinite.
double nerr(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// A device buffer on one backend, freed with it.
struct Buf {
  Backend* b = nullptr;
  float* p = nullptr;
  size_t n = 0;
  Buf(Backend& be, size_t count) : b(&be), n(count) {
    p = static_cast<float*>(be.alloc(std::max<size_t>(n, 1) * 4, "test buffer"));
  }
  Buf(Backend& be, const std::vector<float>& v) : Buf(be, v.size()) { be.upload(p, v.data(), v.size() * 4); }
  ~Buf() { b->free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void poison() { b->fill(p, static_cast<int64_t>(n), NAN); }
  std::vector<float> get() const {
    std::vector<float> v(n);
    b->download(v.data(), p, n * 4);
    return v;
  }
};

// The same input on both backends.
struct Pair {
  Buf cpu, cuda;
  Pair(Backend& c, Backend& g, const std::vector<float>& v) : cpu(c, v), cuda(g, v) {}
  Pair(Backend& c, Backend& g, size_t n) : cpu(c, n), cuda(g, n) {
    cpu.poison();
    cuda.poison();
  }
};

// A random model of a given shape, its tensors owned by the Model.
struct ModelShape {
  int dim = 96, hidden = 160, heads = 4, kv = 2, hd = 24, vocab = 77, layers = 1;
  DType wtype = DType::F32;
  bool bias = false;
  RopeConfig rope;
};

// Random matrix bytes of any supported type (quantised blocks with sane scales).
std::vector<uint8_t> random_matrix(DType t, int64_t rows, int64_t cols, std::mt19937& g) {
  const int64_t rb = dtype_row_bytes(t, cols);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * rb));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> sc(0.002f, 0.02f);
  auto f16 = [&](float x) { return f32_to_f16(x); };
  if (t == DType::F32) {
    auto v = randn(static_cast<size_t>(rows * cols), g, 0.1f);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    return bytes;
  }
  if (t == DType::F16 || t == DType::BF16) {
    auto v = randn(static_cast<size_t>(rows * cols), g, 0.1f);
    auto* h = reinterpret_cast<uint16_t*>(bytes.data());
    for (size_t i = 0; i < v.size(); ++i) h[i] = t == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
    return bytes;
  }
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(g));
  const int64_t nb = static_cast<int64_t>(bytes.size()) / dtype_block_bytes(t);
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* blk = bytes.data() + i * dtype_block_bytes(t);
    switch (t) {
      case DType::Q8_0: reinterpret_cast<block_q8_0*>(blk)->d = f16(sc(g)); break;
      case DType::Q4_0: reinterpret_cast<block_q4_0*>(blk)->d = f16(sc(g)); break;
      case DType::Q4_1: {
        auto* b = reinterpret_cast<block_q4_1*>(blk);
        b->d = f16(sc(g));
        b->m = f16(-sc(g) * 8);
        break;
      }
      case DType::Q4_K: {
        auto* b = reinterpret_cast<block_q4_K*>(blk);
        b->d = f16(sc(g) * 0.1f);
        b->dmin = f16(sc(g) * 0.1f);
        break;
      }
      case DType::Q5_K: {
        auto* b = reinterpret_cast<block_q5_K*>(blk);
        b->d = f16(sc(g) * 0.1f);
        b->dmin = f16(sc(g) * 0.1f);
        break;
      }
      case DType::Q6_K: reinterpret_cast<block_q6_K*>(blk)->d = f16(sc(g) * 0.1f); break;
      default: break;
    }
  }
  return bytes;
}

std::unique_ptr<Model> random_model(const ModelShape& s, uint32_t seed) {
  std::mt19937 g(seed);
  auto m = std::make_unique<Model>();
  m->path = "random test model";
  m->format = "test";
  ModelConfig& c = m->config;
  c.arch = "llama";
  c.n_layers = s.layers;
  c.dim = s.dim;
  c.hidden_dim = s.hidden;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv;
  c.head_dim = s.hd;
  c.vocab_size = s.vocab;
  c.context = 4096;
  c.norm_eps = 1e-5f;
  c.rope = s.rope;
  c.qkv_bias = s.bias;
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols, DType t) {
    auto bytes = random_matrix(t, rows, cols, g);
    Tensor x;
    x.name = name;
    x.type = t;
    x.shape = {rows, cols};
    x.nbytes = bytes.size();
    x.data = m->own(bytes.data(), bytes.size());
    return x;
  };
  auto vec = [&](const std::string& name, int64_t n, float mean, float sd) {
    auto v = randn(static_cast<size_t>(n), g, sd);
    for (float& x : v) x += mean;
    Tensor x;
    x.name = name;
    x.type = DType::F32;
    x.shape = {n};
    x.nbytes = v.size() * 4;
    x.data = m->own(v.data(), x.nbytes);
    return x;
  };
  const int64_t q = int64_t(s.heads) * s.hd, kv = int64_t(s.kv) * s.hd;
  m->tok_embd = mat("token_embd", s.vocab, s.dim, s.wtype == DType::BF16 ? DType::BF16 : DType::F32);
  m->output = mat("output", s.vocab, s.dim, s.wtype);
  m->output_norm = vec("output_norm", s.dim, 1.0f, 0.1f);
  for (int l = 0; l < s.layers; ++l) {
    LayerWeights w;
    const std::string p = "blk." + std::to_string(l) + ".";
    w.attn_norm = vec(p + "attn_norm", s.dim, 1.0f, 0.1f);
    w.ffn_norm = vec(p + "ffn_norm", s.dim, 1.0f, 0.1f);
    w.wq = mat(p + "wq", q, s.dim, s.wtype);
    w.wk = mat(p + "wk", kv, s.dim, s.wtype);
    w.wv = mat(p + "wv", kv, s.dim, s.wtype);
    w.wo = mat(p + "wo", s.dim, q, s.wtype);
    w.w_gate = mat(p + "w_gate", s.hidden, s.dim, s.wtype);
    w.w_up = mat(p + "w_up", s.hidden, s.dim, s.wtype);
    w.w_down = mat(p + "w_down", s.dim, s.hidden, s.wtype);
    if (s.bias) {
      w.bq = vec(p + "bq", q, 0.0f, 0.5f);
      w.bk = vec(p + "bk", kv, 0.0f, 0.5f);
      w.bv = vec(p + "bv", kv, 0.0f, 0.5f);
    }
    w.q_norm = vec(p + "q_norm", s.hd, 1.0f, 0.1f);  // for rmsnorm over head rows
    m->layers.push_back(std::move(w));
  }
  return m;
}

// Both backends prepared on one model.
struct Both {
  std::unique_ptr<Model> m;
  std::unique_ptr<Backend> cpu, cuda;
  Both(const ModelShape& s, uint32_t seed, BackendLimits lim = {512, 8, 4096}) : m(random_model(s, seed)) {
    cpu = make_cpu_backend();
    cuda = gpu_backend();
    cpu->prepare(*m, lim);
    cuda->prepare(*m, lim);
  }
};

// ---- element-wise ops -------------------------------------------------------

TEST(CudaOps, EmbedRmsnormBiasAddSwiglu) {
  REQUIRE_GPU();
  ModelShape s;
  s.dim = 200;  // not a multiple of the block's threads
  s.bias = true;
  Both b(s, 1);
  std::mt19937 g(11);
  for (DType et : {DType::F32, DType::BF16}) {
    ModelShape s2 = s;
    s2.wtype = et;
    Both e(s2, 2);
    std::vector<int32_t> tok = {0, 5, 76, 3, 3, 40, 17};
    Pair x(*e.cpu, *e.cuda, tok.size() * s.dim);
    e.cpu->embed(tok, x.cpu.p);
    e.cuda->embed(tok, x.cuda.p);
    // bf16 tables are exact; f32 ones are rounded to bf16 on the GPU.
    EXPECT_LE(nerr(x.cuda.get(), x.cpu.get()), et == DType::BF16 ? 1e-7 : 4e-3) << "embed " << dtype_name(et);
  }
  const int64_t n = 37;
  auto xv = randn(n * s.dim, g, 3.0f);
  {  // rmsnorm, separate output and in place
    Pair x(*b.cpu, *b.cuda, xv), y(*b.cpu, *b.cuda, n * s.dim);
    b.cpu->rmsnorm(x.cpu.p, b.m->layers[0].attn_norm, y.cpu.p, n);
    b.cuda->rmsnorm(x.cuda.p, b.m->layers[0].attn_norm, y.cuda.p, n);
    EXPECT_LE(nerr(y.cuda.get(), y.cpu.get()), 1e-6) << "rmsnorm";
    b.cpu->rmsnorm(x.cpu.p, b.m->layers[0].attn_norm, x.cpu.p, n);
    b.cuda->rmsnorm(x.cuda.p, b.m->layers[0].attn_norm, x.cuda.p, n);
    EXPECT_LE(nerr(x.cuda.get(), x.cpu.get()), 1e-6) << "rmsnorm in place";
    // Head rows (qwen3's q/k norm): n * heads rows of hd.
    Pair h(*b.cpu, *b.cuda, randn(n * s.heads * s.hd, g)), hy(*b.cpu, *b.cuda, n * s.heads * s.hd);
    b.cpu->rmsnorm(h.cpu.p, b.m->layers[0].q_norm, hy.cpu.p, n * s.heads);
    b.cuda->rmsnorm(h.cuda.p, b.m->layers[0].q_norm, hy.cuda.p, n * s.heads);
    EXPECT_LE(nerr(hy.cuda.get(), hy.cpu.get()), 1e-6) << "rmsnorm of head rows";
  }
  {  // bias
    const int64_t d = s.heads * s.hd;
    Pair y(*b.cpu, *b.cuda, randn(n * d, g));
    b.cpu->add_bias(y.cpu.p, b.m->layers[0].bq, n);
    b.cuda->add_bias(y.cuda.p, b.m->layers[0].bq, n);
    EXPECT_LE(nerr(y.cuda.get(), y.cpu.get()), 1e-7) << "add_bias";
  }
  {  // add, swiglu (in place and not), odd lengths
    const int64_t len = 100003;
    auto av = randn(len, g), bv = randn(len, g, 4.0f);
    Pair a(*b.cpu, *b.cuda, av), c(*b.cpu, *b.cuda, bv), o(*b.cpu, *b.cuda, len);
    b.cpu->add(a.cpu.p, c.cpu.p, len);
    b.cuda->add(a.cuda.p, c.cuda.p, len);
    EXPECT_LE(nerr(a.cuda.get(), a.cpu.get()), 1e-7) << "add";
    b.cpu->swiglu(a.cpu.p, c.cpu.p, o.cpu.p, len);
    b.cuda->swiglu(a.cuda.p, c.cuda.p, o.cuda.p, len);
    EXPECT_LE(nerr(o.cuda.get(), o.cpu.get()), 1e-6) << "swiglu";
    b.cpu->swiglu(a.cpu.p, c.cpu.p, a.cpu.p, len);
    b.cuda->swiglu(a.cuda.p, c.cuda.p, a.cuda.p, len);
    EXPECT_LE(nerr(a.cuda.get(), a.cpu.get()), 1e-6) << "swiglu in place";
  }
}

TEST(CudaOps, RopeLayoutsAndScalings) {
  REQUIRE_GPU();
  std::mt19937 g(3);
  struct C {
    const char* what;
    int hd;
    RopeConfig r;
  };
  std::vector<C> cases;
  RopeConfig base;
  base.theta = 500000.0f;
  cases.push_back({"half-split", 64, base});
  RopeConfig il = base;
  il.interleaved = true;
  cases.push_back({"interleaved", 48, il});
  RopeConfig l3 = base;
  l3.scaling = "llama3";
  l3.factor = 8.0f;
  cases.push_back({"llama3", 128, l3});
  RopeConfig lin;
  lin.scaling = "linear";
  lin.factor = 4.0f;
  cases.push_back({"linear", 32, lin});
  RopeConfig ff = base;
  ff.freq_factors.resize(16);
  for (int i = 0; i < 16; ++i) ff.freq_factors[i] = 1.0f + i * 0.5f;
  cases.push_back({"rope_freqs", 32, ff});
  for (const C& c : cases) {
    ModelShape s;
    s.hd = c.hd;
    s.rope = c.r;
    Both b(s, 4);
    const int nh = 5;
    std::vector<int32_t> pos = {0, 1, 7, 4095, 8191, 8192, 32767, 100000, 131071};
    Pair x(*b.cpu, *b.cuda, randn(pos.size() * nh * c.hd, g));
    b.cpu->rope(x.cpu.p, pos, nh);
    b.cuda->rope(x.cuda.p, pos, nh);
    EXPECT_LE(nerr(x.cuda.get(), x.cpu.get()), 2e-6) << "rope " << c.what;
  }
}

// ---- products -----------------------------------------------------------------

TEST(CudaOps, MatmulEveryWeightType) {
  REQUIRE_GPU();
  std::mt19937 g(5);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K,
                  DType::Q5_K, DType::Q6_K}) {
    const bool blocks = t != DType::F32 && t != DType::F16 && t != DType::BF16;
    ModelShape s;
    s.wtype = t;
    s.dim = 256;                        // a K-quant block
    s.hidden = blocks ? 512 : 333;      // odd rows (and columns of w_down) where the type allows
    s.heads = blocks ? 8 : 5;
    s.hd = blocks ? 32 : 24;            // wo's columns: heads * hd, a multiple of 256 for K-quants
    Both b(s, 6);
    const LayerWeights& w = b.m->layers[0];
    for (int64_t n : {1, 7, 130}) {
      Pair x(*b.cpu, *b.cuda, randn(n * s.dim, g));
      Pair gate(*b.cpu, *b.cuda, n * s.hidden), up(*b.cpu, *b.cuda, n * s.hidden), q(*b.cpu, *b.cuda, n * s.heads * s.hd);
      const MatmulOut oc[] = {{&w.w_gate, gate.cpu.p}, {&w.w_up, up.cpu.p}, {&w.wq, q.cpu.p}};
      const MatmulOut og[] = {{&w.w_gate, gate.cuda.p}, {&w.w_up, up.cuda.p}, {&w.wq, q.cuda.p}};
      b.cpu->matmul(oc, x.cpu.p, n);
      b.cuda->matmul(og, x.cuda.p, n);
      const std::string what = dtype_name(t) + " n=" + std::to_string(n);
      EXPECT_LE(nerr(gate.cuda.get(), gate.cpu.get()), 1e-2) << what;
      EXPECT_LE(nerr(up.cuda.get(), up.cpu.get()), 1e-2) << what;
      EXPECT_LE(nerr(q.cuda.get(), q.cpu.get()), 1e-2) << what;
      // A product whose input is the hidden size (w_down: 333 columns, not a multiple of 8).
      if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
        Pair h(*b.cpu, *b.cuda, randn(n * s.hidden, g)), y(*b.cpu, *b.cuda, n * s.dim);
        const MatmulOut dc[] = {{&w.w_down, y.cpu.p}};
        const MatmulOut dg[] = {{&w.w_down, y.cuda.p}};
        b.cpu->matmul(dc, h.cpu.p, n);
        b.cuda->matmul(dg, h.cuda.p, n);
        EXPECT_LE(nerr(y.cuda.get(), y.cpu.get()), 1e-2) << what << " w_down";
      }
    }
  }
}

// The fused forms against the CPU's, which are the plain calls in sequence:
// CUDA's plain kernels (CKV_CUDA_FUSED=0), and by default its own (one row: the GEMV with
// the norm, the residual add or SwiGLU in it; more rows: cuBLASLt behind a
// bf16 rmsnorm, beta = 1).
TEST(CudaOps, FusedProductsEqualTheirParts) {
  REQUIRE_GPU();
  std::mt19937 g(9);
  for (const bool fused : {false, true})
  for (DType t : {DType::BF16, DType::Q4_K}) {
    setenv("CKV_CUDA_FUSED", fused ? "1" : "0", 1);  // read when the backend is made
    ModelShape s;
    s.wtype = t;
    s.dim = 256;
    s.hidden = t == DType::BF16 ? 333 : 512;  // odd rows: a row pair's second past the end
    s.heads = 8;
    s.hd = 32;
    Both b(s, 10);
    unsetenv("CKV_CUDA_FUSED");
    const LayerWeights& w = b.m->layers[0];
    for (int64_t n : {1, 3, 130}) {
      const std::string what = dtype_name(t) + " n=" + std::to_string(n) + (fused ? " fused" : "");
      Pair x(*b.cpu, *b.cuda, randn(n * s.dim, g)), xn(*b.cpu, *b.cuda, n * s.dim);
      {  // rmsnorm_matmul: q/k/v of the normalised rows
        Pair q(*b.cpu, *b.cuda, n * s.heads * s.hd), k(*b.cpu, *b.cuda, n * s.kv * s.hd),
            v(*b.cpu, *b.cuda, n * s.kv * s.hd);
        const MatmulOut oc[] = {{&w.wq, q.cpu.p}, {&w.wk, k.cpu.p}, {&w.wv, v.cpu.p}};
        const MatmulOut og[] = {{&w.wq, q.cuda.p}, {&w.wk, k.cuda.p}, {&w.wv, v.cuda.p}};
        b.cpu->rmsnorm_matmul(x.cpu.p, w.attn_norm, xn.cpu.p, oc, n);
        b.cuda->rmsnorm_matmul(x.cuda.p, w.attn_norm, xn.cuda.p, og, n);
        EXPECT_LE(nerr(q.cuda.get(), q.cpu.get()), 1e-2) << what << " rmsnorm_matmul q";
        EXPECT_LE(nerr(k.cuda.get(), k.cpu.get()), 1e-2) << what << " rmsnorm_matmul k";
        EXPECT_LE(nerr(v.cuda.get(), v.cpu.get()), 1e-2) << what << " rmsnorm_matmul v";
      }
      Pair h(*b.cpu, *b.cuda, n * s.hidden), up(*b.cpu, *b.cuda, n * s.hidden);
      b.cpu->ffn_hidden(x.cpu.p, w.ffn_norm, xn.cpu.p, w.w_gate, w.w_up, h.cpu.p, up.cpu.p, n);
      b.cuda->ffn_hidden(x.cuda.p, w.ffn_norm, xn.cuda.p, w.w_gate, w.w_up, h.cuda.p, up.cuda.p, n);
      EXPECT_LE(nerr(h.cuda.get(), h.cpu.get()), 1e-2) << what << " ffn_hidden";
      // matmul_add: the residual x += h W_down^T (x is not zero: the add is seen)
      Pair tmp(*b.cpu, *b.cuda, n * s.dim);
      b.cpu->matmul_add(w.w_down, h.cpu.p, n, x.cpu.p, tmp.cpu.p);
      b.cuda->matmul_add(w.w_down, h.cuda.p, n, x.cuda.p, tmp.cuda.p);
      EXPECT_LE(nerr(x.cuda.get(), x.cpu.get()), 1e-2) << what << " matmul_add";
    }
  }
}

// ---- attention ----------------------------------------------------------------

struct AttnShape {
  int H, G, hd;
};

// A dense K/V of `rows` rows with per-head prefixes, then `n` new rows
// queried in chunks (i0 > 0 too).
TEST(CudaOps, AttentionPrefill) {
  REQUIRE_GPU();
  std::mt19937 g(7);
  for (AttnShape a : {AttnShape{8, 2, 64}, AttnShape{12, 4, 128}, AttnShape{6, 3, 48}, AttnShape{4, 4, 32},
                      AttnShape{7, 1, 128}}) {
    ModelShape s;
    s.heads = a.H, s.kv = a.G, s.hd = a.hd;
    Both b(s, 8, BackendLimits{512, 1, 2048});
    const bool fast = a.hd == 64 || a.hd == 128;
    for (int64_t first_new : {int64_t(0), int64_t(137)}) {
      const int64_t n = 301, rows = first_new + n;
      std::vector<int64_t> start(a.G);
      for (int gi = 0; gi < a.G; ++gi) start[gi] = first_new == 0 ? 0 : (gi * 53) % (first_new + 1);
      const std::vector<int64_t> st = first_new == 0 ? std::vector<int64_t>{} : start;
      Pair k(*b.cpu, *b.cuda, randn(rows * a.G * a.hd, g)), v(*b.cpu, *b.cuda, randn(rows * a.G * a.hd, g));
      for (auto [i0, nq] : {std::pair<int64_t, int64_t>{0, n}, {0, 1}, {77, 65}, {250, 51}}) {
        Pair q(*b.cpu, *b.cuda, randn(nq * a.H * a.hd, g, 1.5f)), o(*b.cpu, *b.cuda, nq * a.H * a.hd);
        const DenseKV dc{k.cpu.p, v.cpu.p, first_new, st}, dg{k.cuda.p, v.cuda.p, first_new, st};
        b.cpu->attention_prefill(q.cpu.p, i0, nq, dc, a.H, a.G, a.hd, o.cpu.p);
        b.cuda->attention_prefill(q.cuda.p, i0, nq, dg, a.H, a.G, a.hd, o.cuda.p);
        const double e = nerr(o.cuda.get(), o.cpu.get());
        EXPECT_LE(e, fast ? 1e-2 : 1e-5) << "H " << a.H << " G " << a.G << " hd " << a.hd << " first_new " << first_new
                                         << " i0 " << i0 << " nq " << nq;
        if (fast) {
          EXPECT_LE(e, 4e-3) << "f16 tensor cores should land near 1e-3";
        }
      }
    }
  }
}

// A batch of caches on each backend with the same rows: heads of different
// lengths (kv_gather of random rows), then a decode step of n tokens each
// (grow, kv_append, attention_decode). Also kv_to_dense.
struct CacheSet {
  std::unique_ptr<KvPool> pool;
  std::vector<std::unique_ptr<KvCache>> caches;
};

void check_decode(AttnShape a, KvType kt, std::vector<std::vector<int>> lens, std::vector<int> ntok, uint32_t seed,
                  bool probe = false) {
  ModelShape s;
  s.heads = a.H, s.kv = a.G, s.hd = a.hd, s.layers = 2;
  Both b(s, seed, BackendLimits{64, 8, 4096});
  std::mt19937 g(seed);
  const int L = 2, layer = 1, B = static_cast<int>(lens.size());
  const int64_t max_ctx = 4096;
  auto make = [&](Backend& be) {
    CacheSet cs;
    cs.pool = std::make_unique<KvPool>(be, a.hd, kt, be.kv_page_rows(), 4096);
    for (int i = 0; i < B; ++i) cs.caches.push_back(std::make_unique<KvCache>(*cs.pool, L, a.G, max_ctx));
    return cs;
  };
  CacheSet cc = make(*b.cpu), cg = make(*b.cuda);
  // The prompt part: per head, a random subset of a dense K/V gathered in.
  for (int i = 0; i < B; ++i) {
    const int rows = *std::max_element(lens[i].begin(), lens[i].end()) + 5;
    Pair k(*b.cpu, *b.cuda, randn(int64_t(rows) * a.G * a.hd, g)), v(*b.cpu, *b.cuda, randn(int64_t(rows) * a.G * a.hd, g));
    std::vector<std::vector<int32_t>> keep(a.G);
    for (int gi = 0; gi < a.G; ++gi) {
      std::vector<int32_t> all(rows);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), g);
      keep[gi].assign(all.begin(), all.begin() + lens[i][gi]);
      std::sort(keep[gi].begin(), keep[gi].end());
    }
    for (CacheSet* cs : {&cc, &cg})
      for (int gi = 0; gi < a.G; ++gi) cs->caches[i]->grow_head(layer, gi, lens[i][gi]);
    b.cpu->kv_gather(*cc.caches[i], layer, DenseKV{k.cpu.p, v.cpu.p, 0, {}}, keep);
    b.cuda->kv_gather(*cg.caches[i], layer, DenseKV{k.cuda.p, v.cuda.p, 0, {}}, keep);
  }
  // The decode step's rows.
  int R = 0;
  std::vector<DecodeItem> ic, ig;
  std::vector<AppendItem> ac, ag;
  for (int i = 0; i < B; ++i) {
    cc.caches[i]->grow(ntok[i]);
    cg.caches[i]->grow(ntok[i]);
    ic.push_back({R, ntok[i], cc.caches[i].get()});
    ig.push_back({R, ntok[i], cg.caches[i].get()});
    ac.push_back({R, ntok[i], cc.caches[i].get()});
    ag.push_back({R, ntok[i], cg.caches[i].get()});
    R += ntok[i];
  }
  Pair k(*b.cpu, *b.cuda, randn(int64_t(R) * a.G * a.hd, g)), v(*b.cpu, *b.cuda, randn(int64_t(R) * a.G * a.hd, g));
  b.cpu->kv_append(ac, layer, k.cpu.p, v.cpu.p);
  b.cuda->kv_append(ag, layer, k.cuda.p, v.cuda.p);
  Pair q(*b.cpu, *b.cuda, randn(int64_t(R) * a.H * a.hd, g, 1.5f)), o(*b.cpu, *b.cuda, int64_t(R) * a.H * a.hd);
  std::vector<float> mc(a.H), mg(a.H);
  std::vector<int32_t> xc(a.H), xg(a.H);
  AttnProbeOut pc{3, 40, mc.data(), xc.data()}, pg{3, 40, mg.data(), xg.data()};
  b.cpu->attention_decode(q.cpu.p, ic, layer, o.cpu.p, probe ? &pc : nullptr);
  b.cuda->attention_decode(q.cuda.p, ig, layer, o.cuda.p, probe ? &pg : nullptr);
  const bool fast = !probe && kt == KvType::F16 && (a.hd == 64 || a.hd == 128);
  std::string what = "H " + std::to_string(a.H) + " G " + std::to_string(a.G) + " hd " + std::to_string(a.hd) +
                     (kt == KvType::F16 ? " f16" : " f32") + " batch " + std::to_string(B);
  const double e = nerr(o.cuda.get(), o.cpu.get());
  EXPECT_LE(e, fast ? 1e-2 : 1e-5) << what;
  if (fast) {
    EXPECT_LE(e, 4e-3) << what << ": f16 tensor cores should land near 1e-3";
  }
  if (probe) {
    for (int h = 0; h < a.H; ++h) {
      EXPECT_NEAR(mg[h], mc[h], 1e-5 + 1e-4 * std::fabs(mc[h])) << what << " probe mass head " << h;
      EXPECT_EQ(xg[h], xc[h]) << what << " probe argmax head " << h;
    }
  }
  // kv_to_dense of every cache (f16 rows convert exactly both ways).
  for (int i = 0; i < B; ++i) {
    const int first_new = 3100;  // above every head's length
    Pair dk(*b.cpu, *b.cuda, int64_t(first_new + 1) * a.G * a.hd), dv(*b.cpu, *b.cuda, int64_t(first_new + 1) * a.G * a.hd);
    for (int excl : {0, ntok[i]}) {
      b.cpu->fill(dk.cpu.p, static_cast<int64_t>(dk.cpu.n), 0.0f);
      b.cpu->fill(dv.cpu.p, static_cast<int64_t>(dv.cpu.n), 0.0f);
      b.cuda->fill(dk.cuda.p, static_cast<int64_t>(dk.cuda.n), 0.0f);
      b.cuda->fill(dv.cuda.p, static_cast<int64_t>(dv.cuda.n), 0.0f);
      b.cpu->kv_to_dense(*cc.caches[i], layer, DenseKV{dk.cpu.p, dv.cpu.p, first_new, {}}, excl);
      b.cuda->kv_to_dense(*cg.caches[i], layer, DenseKV{dk.cuda.p, dv.cuda.p, first_new, {}}, excl);
      EXPECT_EQ(nerr(dk.cuda.get(), dk.cpu.get()), 0.0) << what << " kv_to_dense K, exclude " << excl;
      EXPECT_EQ(nerr(dv.cuda.get(), dv.cpu.get()), 0.0) << what << " kv_to_dense V, exclude " << excl;
    }
  }
}

TEST(CudaOps, AttentionDecodeBatchesOfPagedCaches) {
  REQUIRE_GPU();
  // Lengths per (sequence, KV head): around pages (64 on CUDA, 16 on the
  // CPU), tiles (16 keys) and splits; one token or several per sequence.
  const std::vector<std::vector<int>> lens4 = {{1, 64, 65, 1000}, {3000, 17, 129, 2047}, {5, 5, 5, 5}};
  for (KvType kt : {KvType::F16, KvType::F32}) {
    check_decode({16, 4, 128}, kt, lens4, {1, 1, 1}, 21);
    check_decode({16, 4, 128}, kt, lens4, {3, 1, 8}, 22);
    check_decode({8, 4, 64}, kt, lens4, {1, 2, 1}, 23);
    check_decode({28, 4, 128}, kt, lens4, {1, 3, 2}, 24);  // Qwen2.5's group of 7
    check_decode({12, 4, 48}, kt, lens4, {1, 2, 1}, 25);   // generic kernel
    check_decode({4, 1, 128}, kt, {{2500}, {1}}, {1, 1}, 26);
  }
}

TEST(CudaOps, AttentionDecodeProbe) {
  REQUIRE_GPU();
  for (KvType kt : {KvType::F16, KvType::F32}) {
    check_decode({8, 2, 64}, kt, {{700, 300}}, {1}, 31, true);
    check_decode({6, 3, 48}, kt, {{129, 1000, 64}}, {1}, 32, true);
  }
}

// ---- scoring --------------------------------------------------------------------

TEST(CudaOps, WindowScores) {
  REQUIRE_GPU();
  std::mt19937 g(9);
  for (AttnShape a : {AttnShape{8, 2, 64}, AttnShape{12, 4, 128}, AttnShape{6, 3, 48}}) {
    ModelShape s;
    s.heads = a.H, s.kv = a.G, s.hd = a.hd;
    Both b(s, 10, BackendLimits{64, 1, 4096});
    for (int T : {40, 1037, 3001}) {
      for (int w : {8, 31}) {
        if (w >= T) continue;
        const int n = T - w;
        Pair qw(*b.cpu, *b.cuda, randn(int64_t(w) * a.H * a.hd, g, 2.0f));
        Pair k(*b.cpu, *b.cuda, randn(int64_t(T) * a.G * a.hd, g, 1.0f));
        // SRH-style (one group of 4 heads in any order) and SnapKV-style (every KV head's group).
        std::vector<std::vector<int>> srh = {{a.H - 1, 0, 2, 1}}, snap(a.G);
        for (int h = 0; h < a.H; ++h) snap[h / (a.H / a.G)].push_back(h);
        for (const auto* groups : {&srh, &snap}) {
          for (Pool pool : {Pool::Avg, Pool::Max}) {
            for (int kernel : {5, 1, 7}) {
              const size_t cnt = groups->size() * n;
              Pair out(*b.cpu, *b.cuda, cnt);
              b.cpu->window_scores(qw.cpu.p, k.cpu.p, T, w, a.H, a.G, a.hd, *groups, kernel, pool, out.cpu.p);
              b.cuda->window_scores(qw.cuda.p, k.cuda.p, T, w, a.H, a.G, a.hd, *groups, kernel, pool, out.cuda.p);
              EXPECT_LE(nerr(out.cuda.get(), out.cpu.get()), 1e-5)
                  << "H " << a.H << " hd " << a.hd << " T " << T << " w " << w << " kernel " << kernel
                  << (pool == Pool::Max ? " max" : " avg") << " groups " << groups->size();
            }
          }
        }
      }
    }
  }
}

TEST(CudaOps, TopKTiesLowerPositionFirst) {
  REQUIRE_GPU();
  ModelShape s;
  Both b(s, 12);
  std::mt19937 g(13);
  std::uniform_int_distribution<int> level(0, 40);
  for (int n : {1, 5, 1000, 40000}) {
    const int rows = 5;
    std::vector<float> sc(static_cast<size_t>(rows) * n);
    for (float& x : sc) x = level(g) * 0.25f - 5.0f;  // many exact ties
    sc[0] = -0.0f;
    if (sc.size() > 1) sc[1] = 0.0f;
    Pair d(*b.cpu, *b.cuda, sc);
    std::vector<int> k = {0, 1, n / 2, n, n + 3};
    auto rc = b.cpu->top_k(d.cpu.p, rows, n, k);
    auto rg = b.cuda->top_k(d.cuda.p, rows, n, k);
    ASSERT_EQ(rc.size(), rg.size());
    for (int r = 0; r < rows; ++r) EXPECT_EQ(rg[r], rc[r]) << "n " << n << " row " << r;
  }
}

TEST(CudaOps, TopLogitsEqualTheCpuWithTiesAndNaN) {
  REQUIRE_GPU();
  ModelShape s;
  Both b(s, 14);
  std::mt19937 g(15);
  std::uniform_int_distribution<int> level(0, 60);
  for (int V : {1, 7, 1000, 128256}) {
    const int rows = 6;
    std::vector<float> lg(static_cast<size_t>(rows) * V);
    for (float& x : lg) x = level(g) * 0.125f - 3.0f;  // many exact ties
    lg[size_t(V) * 2 + V / 2] = NAN;                 // row 2 must report NaN first
    for (int k : {1, 3, 40, 64}) {
      const int kk = k;  // rows of k entries, past V: id -1 and -infinity
      Pair d(*b.cpu, *b.cuda, lg);
      std::vector<float> vc(size_t(rows) * kk), vg(vc.size());
      std::vector<int32_t> ic(vc.size()), ig(vc.size(), -7);
      b.cpu->top_logits(d.cpu.p, rows, V, k, vc.data(), ic.data());
      b.cuda->top_logits(d.cuda.p, rows, V, k, vg.data(), ig.data());
      for (size_t i = 0; i < vc.size(); ++i) {
        if (i / kk == 2) continue;  // the NaN row: only its flag is defined
        if (std::isnan(vc[i])) {
          EXPECT_TRUE(std::isnan(vg[i])) << "V " << V << " k " << k << " at " << i;
          continue;
        }
        EXPECT_EQ(vg[i], vc[i]) << "V " << V << " k " << k << " at " << i;
        EXPECT_EQ(ig[i], ic[i]) << "V " << V << " k " << k << " at " << i;
      }
      EXPECT_TRUE(std::isnan(vg[size_t(2) * kk])) << "the row with a NaN, V " << V;
    }
  }
}

TEST(CudaOps, OutOfMemoryIsAClearError) {
  REQUIRE_REAL_GPU();
  auto b = make_cuda_backend();
  EXPECT_ERROR(b->alloc(size_t(1) << 50, "the KV cache pool"), "out of device memory", "the KV cache pool",
               "1125899906842624 bytes");
  // The backend still works after it.
  void* p = b->alloc(1024, "a small buffer");
  b->free(p);
}

TEST(CudaOps, RandomWeightsAreSeededAndFinite) {
  REQUIRE_REAL_GPU();
  test::TmpDir dir("ckv_cuda_random");
  test::write_file(dir / "config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "vocab_size": 300, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": false})");
  auto m = make_random_model(dir / "config.json");
  auto logits_of = [&](uint64_t seed) {
    SessionOptions so;
    so.make_backend = [seed] {
      CudaOptions o;
      o.random_seed = seed;
      return make_cuda_backend(o);
    };
    Session s(*m, so);
    std::vector<float> lg(300);
    s.prefill({1, 2, 3, 4, 5}, lg.data());
    return lg;
  };
  auto a = logits_of(1), b = logits_of(1), c = logits_of(2);
  EXPECT_EQ(a, b) << "same seed, same weights";
  EXPECT_NE(a, c) << "another seed, other weights";
  for (float x : a) ASSERT_TRUE(std::isfinite(x));
}

// ---- end to end ---------------------------------------------------------------

std::unique_ptr<Backend> cuda_backend() { return gpu_backend(); }

class CudaTinyHF : public ::testing::TestWithParam<std::string> {};

// The golden logits (fp32 transformers) with the bf16 GPU tolerance:
// within 0.5 everywhere, the top-1 equal wherever the golden gap exceeds 0.5.
TEST_P(CudaTinyHF, LogitsWithinTheBf16Tolerance) {
  REQUIRE_GPU();
  CKV_REQUIRE_SHARED();
  auto g = test::read_json(test::shared_dir() + "/golden/tiny-hf/tiny_hf.json");
  auto m = load_model(test::shared_dir() + "/models/tiny-hf/" + GetParam());
  std::vector<int> ids = g["input_ids"].get<std::vector<int>>();
  auto want = test::read_f32(test::shared_dir() + "/golden/tiny-hf/" + GetParam() + ".logits.f32");
  const int V = m->config.vocab_size;
  for (KvType kt : {KvType::F32, KvType::F16}) {
    SessionOptions so;
    so.make_backend = cuda_backend;
    so.kv_type = kt;
    so.chunk = 16;  // several chunks: attention over earlier chunks' rows
    Session s(*m, so);
    std::vector<float> lg(ids.size() * V), last(V);
    s.prefill(std::vector<int>(ids.begin(), ids.begin() + 40), last.data(),
              [&](int64_t pos, const float* l) { std::copy(l, l + V, &lg[pos * V]); });
    double worst = 0;
    int top_checked = 0;
    for (size_t i = 0; i < 40; ++i) {
      const float* w = &want[i * V];
      const float* l = &lg[i * V];
      for (int v = 0; v < V; ++v) worst = std::max(worst, std::fabs(double(l[v]) - w[v]));
      std::vector<int> order(V);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + 2, order.end(), [&](int x, int y) { return w[x] > w[y]; });
      if (w[order[0]] - w[order[1]] > 0.5f) {
        ++top_checked;
        EXPECT_EQ(std::max_element(l, l + V) - l, order[0]) << GetParam() << " position " << i;
      }
    }
    EXPECT_LE(worst, 0.5) << GetParam();
    std::printf("%s (%s KV): max abs logit error %.3g on the GPU; top-1 checked at %d positions\n",
                GetParam().c_str(), kt == KvType::F16 ? "f16" : "f32", worst, top_checked);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaTinyHF,
                         ::testing::Values("tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"));

// Prefill then decode on the GPU equals prefill of the whole sequence (the
// decode path reads the pages the prefill wrote), within bf16 noise.
TEST(CudaEndToEnd, DecodeMatchesPrefill) {
  REQUIRE_GPU();
  CKV_REQUIRE_SHARED();
  auto m = load_model(test::shared_dir() + "/models/tiny-hf/tiny-llama3");
  auto g = test::read_json(test::shared_dir() + "/golden/tiny-hf/tiny_hf.json");
  std::vector<int> ids = g["input_ids"].get<std::vector<int>>();
  const int V = m->config.vocab_size;
  SessionOptions so;
  so.make_backend = cuda_backend;
  so.kv_type = KvType::F16;
  std::vector<float> ref(ids.size() * V);
  {
    Session s(*m, so);
    std::vector<float> last(V);
    s.prefill(ids, last.data(), [&](int64_t pos, const float* l) { std::copy(l, l + V, &ref[pos * V]); });
  }
  Session s(*m, so);
  std::vector<float> lg(V);
  s.prefill({ids.begin(), ids.begin() + 5}, lg.data());
  for (size_t i = 5; i < ids.size(); ++i) {
    s.decode(ids[i], lg.data());
    std::vector<float> want(&ref[i * V], &ref[(i + 1) * V]);
    EXPECT_LE(nerr(lg, want), 1e-2) << "position " << i;
  }
}

// The random bf16 model of the end-to-end decode tests: head dim 64 (the
// split tensor-core decode kernel), 3 layers, GQA 4:1.
ModelShape decode_shape() {
  ModelShape sh;
  sh.dim = 256, sh.hidden = 512, sh.heads = 8, sh.kv = 2, sh.hd = 64, sh.vocab = 300, sh.layers = 3;
  sh.wtype = DType::BF16;
  return sh;
}

// Decode steps replayed from recordings (CUDA graphs) give the logits of the
// same steps run directly: the recording reads each step's tokens,
// positions, page tables and lengths from the device, so it stays right as
// lengths grow past split boundaries, when another sequence takes a slot of
// the same shape, and on both kinds of pages (the split tensor-core kernel
// on f16, the generic one on f32). Several tokens a sequence is a shape of
// its own.
TEST(CudaEndToEnd, RecordedStepsEqualDirectSteps) {
  REQUIRE_GPU();
  const ModelShape sh = decode_shape();
  auto m = random_model(sh, 91);
  const int V = sh.vocab;
  std::mt19937 g(5);
  std::uniform_int_distribution<int> tok(0, V - 1);
  auto prompt = [&](int n) {
    std::vector<int> p(n);
    for (int& t : p) t = tok(g);
    return p;
  };
  for (KvType kt : {KvType::F16, KvType::F32}) {
    const char* kn = kt == KvType::F16 ? "f16" : "f32";
    ContextOptions co;
    co.max_seqs = 4;
    co.kv_type = kt;
    co.n_ctx = 2048;
    ContextOptions cd = co;
    cd.record_steps = false;
    Context rec(*m, gpu_backend(), co), dir(*m, gpu_backend(), cd);
    // Prompts: short, past a split of 256 keys, compressed (SnapKV keeps 128 of 1500).
    const std::vector<std::vector<int>> prompts = {prompt(50), prompt(700), prompt(1500), prompt(300)};
    std::vector<SequenceOptions> opts(4);
    opts[2].method = "snapkv";
    opts[2].press.budget = 128;
    std::vector<std::unique_ptr<Sequence>> sr, sd;
    std::vector<std::vector<float>> lr(4, std::vector<float>(V)), ld(4, std::vector<float>(V));
    auto start = [&](int i) {
      sr.push_back(std::make_unique<Sequence>(rec, opts[i]));
      sd.push_back(std::make_unique<Sequence>(dir, opts[i]));
      sr.back()->read(prompts[i], lr[i].data());
      sd.back()->read(prompts[i], ld[i].data());
    };
    for (int i = 0; i < 3; ++i) start(i);
    std::vector<int> live = {0, 1, 2};  // prompt index of each running sequence
    std::vector<int> next(4);
    double worst = 0;
    auto step = [&](int n_tokens_first, const char* what, int s) {
      std::vector<std::vector<int>> toks(live.size());
      std::vector<DecodeStep> br, bd;
      for (size_t j = 0; j < live.size(); ++j) {
        const int i = live[j];
        toks[j].assign(j == 0 ? n_tokens_first : 1, Sampler::argmax(ld[i].data(), V));
        br.push_back({sr[j].get(), toks[j], lr[i].data()});
        bd.push_back({sd[j].get(), toks[j], ld[i].data()});
      }
      decode_step(rec, br);
      decode_step(dir, bd);
      for (int i : live) {
        double d = 0;
        for (int v = 0; v < V; ++v) d = std::max(d, double(std::fabs(lr[i][v] - ld[i][v])));
        worst = std::max(worst, d);
        EXPECT_LE(d, 1e-5) << kn << ": " << what << " step " << s << ", sequence of prompt " << i;
      }
    };
    for (int s = 0; s < 40; ++s) step(1, "three sequences", s);
    // The short one ends; a fourth takes its slot (the same shape, other pages).
    sr.erase(sr.begin()), sd.erase(sd.begin());
    live.erase(live.begin());
    start(3);
    live.push_back(3);
    for (int s = 0; s < 20; ++s) step(1, "a sequence replaced", s);
    for (int s = 0; s < 4; ++s) step(3, "three tokens for the first", s);
    for (int s = 0; s < 4; ++s) step(1, "back to one token each", s);
    std::printf("%s pages: recorded vs direct steps differ by %.3g at most; %zu recordings kept\n", kn, worst,
                rec.recordings().kept());
    if (!cpu_as_gpu()) {
      EXPECT_GE(rec.recordings().kept(), 2u) << kn << ": the steps were not recorded";
    }
    EXPECT_EQ(dir.recordings().kept(), 0u);
  }
}

// Decode steps of two contexts on the same model, greedy from b's logits: a
// batch of one sequence (the GEMV paths) and of three of different lengths,
// one compressed (cuBLASLt, split-K over unequal lengths); every step's logits
// of a within tol (normalised) of b's.
void expect_same_steps(Context& a, Context& b, int V, double tol, const std::string& what) {
  std::mt19937 g(7);
  std::uniform_int_distribution<int> tok(0, V - 1);
  for (int batch : {1, 3}) {
    std::vector<std::unique_ptr<Sequence>> sa, sb;
    std::vector<std::vector<float>> la(batch, std::vector<float>(V)), lb = la;
    for (int i = 0; i < batch; ++i) {
      SequenceOptions o;
      if (i == 2) o.method = "snapkv", o.press.budget = 128;
      std::vector<int> p(i == 0 ? 600 : 150 * i + 40);
      for (int& t : p) t = tok(g);
      sa.push_back(std::make_unique<Sequence>(a, o));
      sb.push_back(std::make_unique<Sequence>(b, o));
      sa.back()->read(p, la[i].data());
      sb.back()->read(p, lb[i].data());
    }
    for (int s = 0; s < 24; ++s) {
      std::vector<std::vector<int>> toks(batch);
      std::vector<DecodeStep> da, db;
      for (int i = 0; i < batch; ++i) {
        toks[i] = {Sampler::argmax(lb[i].data(), V)};
        da.push_back({sa[i].get(), toks[i], la[i].data()});
        db.push_back({sb[i].get(), toks[i], lb[i].data()});
      }
      decode_step(a, da);
      decode_step(b, db);
      for (int i = 0; i < batch; ++i)
        EXPECT_LE(nerr(la[i], lb[i]), tol) << what << ": batch " << batch << ", step " << s << ", sequence " << i;
    }
  }
}

// A context made with the environment variable `var` set to `value` (read
// when the backend is made), and one made without it.
std::pair<std::unique_ptr<Context>, std::unique_ptr<Context>> with_and_without(const Model& m, const char* var,
                                                                               const char* value) {
  ContextOptions co;
  co.max_seqs = 4;
  co.kv_type = KvType::F16;
  co.n_ctx = 2048;
  setenv(var, value, 1);
  auto with = std::make_unique<Context>(m, gpu_backend(), co);
  unsetenv(var);
  return {std::move(with), std::make_unique<Context>(m, gpu_backend(), co)};
}

// The fused decode forms (the default: the GEMV with the norm, the residual
// add or SwiGLU in it, RoPE with the append, one-wave split-K; more rows:
// cuBLASLt behind the bf16 rmsnorm, beta = 1) give the plain kernels'
// (CKV_CUDA_FUSED=0) logits within the bf16 tolerance.
TEST(CudaEndToEnd, FusedStepsMatchPlainSteps) {
  REQUIRE_GPU();
  const ModelShape sh = decode_shape();
  auto m = random_model(sh, 93);
  auto [plain, fused] = with_and_without(*m, "CKV_CUDA_FUSED", "0");
  expect_same_steps(*fused, *plain, sh.vocab, 1e-2, "fused against plain");
}

// Programmatic dependent launch changes when a kernel may start, never what
// it computes: the step's logits are bit for bit those of plain launches
// (CKV_CUDA_PDL=0). A kernel that touched its inputs before pdl_wait() would
// race with the kernel before it and differ here.
TEST(CudaEndToEnd, DependentLaunchesGiveTheSameLogits) {
  REQUIRE_GPU();
  const ModelShape sh = decode_shape();
  auto m = random_model(sh, 94);
  auto [plain, pdl] = with_and_without(*m, "CKV_CUDA_PDL", "0");
  expect_same_steps(*pdl, *plain, sh.vocab, 0.0, "dependent launches against plain launches");
}

// Held uploads (CKV_CUDA_BATCH_UPLOADS=1: a step's page-table and length
// updates sent as one copy and one kernel) leave the device's tables as the
// uploads one by one do: the logits are bit for bit the same, over steps in
// which heads cross into new pages (lengths 600, 190, 340 and a compressed
// 128, pages of 64 rows, 24 steps).
TEST(CudaEndToEnd, HeldUploadsGiveTheSameLogits) {
  REQUIRE_GPU();
  const ModelShape sh = decode_shape();
  auto m = random_model(sh, 95);
  auto [held, plain] = with_and_without(*m, "CKV_CUDA_BATCH_UPLOADS", "1");
  expect_same_steps(*held, *plain, sh.vocab, 0.0, "held uploads against uploads one by one");
}

// stories260K (llama2.c file, interleaved rotary pairs, head dim 8): the
// golden top-10 logits of the first 64 positions within the bf16 tolerance.
TEST(CudaEndToEnd, Stories260kLogits) {
  REQUIRE_GPU();
  CKV_REQUIRE_SHARED();
  auto g = test::read_json(test::shared_dir() + "/golden/stories260k/greedy.json");
  auto m = load_model(test::source_dir() + "/models/stories260k/stories260K.bin");
  std::vector<int> ids = g["ids"].get<std::vector<int>>();
  ids.resize(64);
  const int V = m->config.vocab_size;
  SessionOptions so;
  so.make_backend = cuda_backend;
  Session s(*m, so);
  std::vector<float> lg(ids.size() * V), last(V);
  s.prefill(ids, last.data(), [&](int64_t pos, const float* l) { std::copy(l, l + V, &lg[pos * V]); });
  auto tid = g["first64_topk_ids"], tl = g["first64_topk_logits"];
  double worst = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t j = 0; j < tid[i].size(); ++j)
      worst = std::max(worst, std::fabs(double(lg[i * V + tid[i][j].get<int>()]) - tl[i][j].get<double>()));
  EXPECT_LE(worst, 0.5);
  std::printf("stories260K: max abs error of the golden top-10 logits %.3g on the GPU\n", worst);
}

// SmolLM2-135M-Instruct (GGUF Q4_1 dequantised exactly, rounded to bf16):
// the golden top-10 logits at every position and the last position's logits
// within the bf16 tolerance, and top-1 equal wherever the golden gap exceeds
// it (../shared/golden/README.md), for the short, chat and long prompts.
TEST(CudaEndToEnd, SmolLM2Logits) {
  REQUIRE_GPU();
  CKV_REQUIRE_SHARED();
  const std::string path = test::shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path << " on this machine";
  auto m = load_model(path);
  const int V = m->config.vocab_size;
  for (const char* name : {"short", "chat", "long"}) {
    auto g = test::read_json(test::shared_dir() + "/golden/smollm2/" + name + ".json");
    std::vector<int> ids = g["ids"].get<std::vector<int>>();
    SessionOptions so;
    so.make_backend = cuda_backend;
    Session s(*m, so);
    std::vector<float> lg(ids.size() * V), last(V);
    s.prefill(ids, last.data(), [&](int64_t pos, const float* l) { std::copy(l, l + V, &lg[pos * V]); });
    auto tid = g["topk_ids"], tl = g["topk_logits"];
    double worst = 0;
    int top1 = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      for (size_t j = 0; j < tid[i].size(); ++j)
        worst = std::max(worst, std::fabs(double(lg[i * V + tid[i][j].get<int>()]) - tl[i][j].get<double>()));
      if (tl[i][0].get<double>() - tl[i][1].get<double>() > 0.5) {
        EXPECT_EQ(Sampler::argmax(&lg[i * V], V), tid[i][0].get<int>()) << name << " position " << i;
        ++top1;
      }
    }
    auto want = test::read_f32(test::shared_dir() + "/golden/smollm2/" + name + ".last_logits.f32");
    double worst_last = 0;
    for (int i = 0; i < V; ++i) worst_last = std::max(worst_last, std::fabs(double(want[i]) - last[i]));
    EXPECT_LE(worst, 0.5) << name;
    EXPECT_LE(worst_last, 0.5) << name;
    std::printf("smollm2 %s (%zu tokens): max abs error top-10 %.3g, last position %.3g; top-1 checked at %d\n", name,
                ids.size(), worst, worst_last, top1);
  }
}

// Every method keeps the same positions on both backends, up to exchanges
// near the boundary: the GPU's bf16 products move the scores by ~1e-3, so a
// position whose score is within that of the last kept one may swap. The
// test counts positions kept on one backend only and bounds them.
TEST(CudaEndToEnd, KeptPositionsMatchTheCpu) {
  REQUIRE_GPU();
  CKV_REQUIRE_SHARED();
  auto m = load_model(test::shared_dir() + "/models/tiny-hf/tiny-llama3");
  const ModelConfig& c = m->config;
  std::mt19937 g(17);
  std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
  std::vector<int> prompt(300);
  for (int& t : prompt) t = tok(g);
  Profile prof;
  prof.arch = c.arch;
  prof.n_layers = c.n_layers, prof.n_heads = c.n_heads, prof.n_kv_heads = c.n_kv_heads, prof.head_dim = c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<int> r(c.n_heads);
    std::iota(r.begin(), r.end(), 0);
    std::shuffle(r.begin(), r.end(), g);
    prof.srh_ranking.push_back(r);
  }
  prof.layer_scores.assign(c.n_layers, 1.0 / c.n_layers);
  for (const std::string method :
       {"streamingllm", "snapkv", "pyramidkv", "adakv", "compresskv", "adacompresskv"}) {
    std::vector<std::vector<KeptPositions>> kept;
    for (int dev = 0; dev < 2; ++dev) {
      SessionOptions so;
      so.method = method;
      so.press.budget = 64;
      so.profile = &prof;
      if (dev) so.make_backend = cuda_backend;
      Session s(*m, so);
      std::vector<float> lg(c.vocab_size);
      s.prefill(prompt, lg.data());
      kept.push_back(s.kept());
    }
    // Ada-KV's head shares come from the scores too, so a head may keep one
    // position more or less; every layer's total is the same.
    const bool ada = method.find("ada") != std::string::npos;
    size_t total = 0, differ = 0;
    for (int l = 0; l < c.n_layers; ++l) {
      size_t na = 0, nb = 0;
      for (int gi = 0; gi < c.n_kv_heads; ++gi) na += kept[0][l][gi].size(), nb += kept[1][l][gi].size();
      EXPECT_EQ(na, nb) << method << " layer " << l << ": positions kept in all";
      for (int gi = 0; gi < c.n_kv_heads; ++gi) {
        const auto& a = kept[0][l][gi];
        const auto& b = kept[1][l][gi];
        if (ada) {
          EXPECT_LE(std::abs(int(a.size()) - int(b.size())), 2) << method << " layer " << l << " head " << gi;
        } else {
          EXPECT_EQ(a.size(), b.size()) << method << " layer " << l << " head " << gi;
        }
        std::set<int32_t> sa(a.begin(), a.end());
        for (int32_t p : b) differ += sa.count(p) == 0;
        total += a.size();
      }
    }
    std::printf("%s: %zu of %zu kept positions differ between CPU and CUDA\n", method.c_str(), differ, total);
    EXPECT_LE(differ, total / 20) << method << ": more than 5% of the kept positions differ";
  }
}

}  // namespace
}  // namespace ckv
