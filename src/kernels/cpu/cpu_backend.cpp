// The CPU backend: the kernel interface (kernels/backend.h) on the CPU
// kernels of this folder. Device memory is host memory; weights are read in
// place from the Model (mapped files or the loader's buffers).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>

#include "engine/kv_pages.h"
#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/window_score.h"
#include "model/quant.h"
#include "press/press.h"
#include "util/error.h"

namespace ckv {

namespace {

// MemAvailable of /proc/meminfo in bytes (0 when unreadable).
size_t mem_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (f >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    f.ignore(256, '\n');
  }
  return 0;
}

// One row of hd floats into a cache row of type t.
void put_row(uint8_t* dst, const float* src, int hd, KvType t) {
  if (t == KvType::F32) {
    std::memcpy(dst, src, sizeof(float) * hd);
    return;
  }
  // Round to nearest even, as a cast to half does.
  uint16_t* d = reinterpret_cast<uint16_t*>(dst);
  int c = 0;
  for (; c + 8 <= hd; c += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + c),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + c), _MM_FROUND_TO_NEAREST_INT));
  for (; c < hd; ++c) d[c] = _cvtss_sh(src[c], _MM_FROUND_TO_NEAREST_INT);
}

void get_row(float* dst, const uint8_t* src, int hd, KvType t) {
  if (t == KvType::F32) {
    std::memcpy(dst, src, sizeof(float) * hd);
    return;
  }
  const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
  int c = 0;
  for (; c + 8 <= hd; c += 8)
    _mm256_storeu_ps(dst + c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + c))));
  for (; c < hd; ++c) dst[c] = _cvtsh_ss(h[c]);
}

// Address of row `row` of head (layer, g): keys, or values when v is set.
uint8_t* row_at(const KvCache& c, int layer, int g, int row, bool v) {
  const KvPool& p = c.pool();
  const int P = p.page_rows();
  uint8_t* page = p.page(c.pages(layer, g)[row / P]);
  return page + (v ? static_cast<size_t>(P) * p.row_bytes() : 0) + static_cast<size_t>(row % P) * p.row_bytes();
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(bool q8) : mode_(q8 ? cpu::MatmulMode::Q8 : cpu::MatmulMode::Exact) { cpu::init_blas(); }

  std::string name() const override { return "CPU"; }
  int kv_page_rows() const override { return 16; }
  bool host_memory() const override { return true; }

  void* alloc(size_t bytes, const std::string& what) override {
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    if (!p) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes for " + what);
    return p;
  }
  void free(void* p) override { std::free(p); }
  void upload(void* dst, const void* src, size_t n) override {
    if (dst != src) std::memcpy(dst, src, n);
  }
  void download(void* dst, const void* src, size_t n) override {
    if (dst != src) std::memcpy(dst, src, n);
  }
  void copy(void* dst, const void* src, size_t n) override { std::memmove(dst, src, n); }
  void sync() override {}
  void fill(float* x, int64_t n, float value) override { std::fill(x, x + n, value); }

  void prepare(const Model& m, const BackendLimits& lim) override {
    m_ = &m;
    const ModelConfig& c = m.config;
    rope_ = std::make_unique<cpu::Rope>(c);
    rope_table_.assign(static_cast<size_t>(lim.max_rows) * c.head_dim, 0.0f);
    const int threads = omp_get_max_threads();
    const int max_tokens = std::min(lim.max_rows, 8);
    decode_.reserve(lim.max_seqs, lim.max_ctx, c.n_kv_heads, c.n_heads / c.n_kv_heads, max_tokens, c.head_dim,
                    threads);
    prefill_.reserve(lim.max_ctx, threads);
    max_ctx_ = lim.max_ctx;
  }
  size_t weight_bytes() const override { return 0; }  // read in place from the Model
  size_t free_memory() const override { return mem_available(); }
  size_t scratch_bytes() const override {
    return rope_table_.size() * sizeof(float) + decode_.bytes() + prefill_.bytes() +
           window_.capacity() * sizeof(float);
  }

  void embed(std::span<const int32_t> tokens, float* x) override {
    const Tensor& t = m_->tok_embd;
    const int dim = m_->config.dim;
    for (size_t i = 0; i < tokens.size(); ++i) dequantize_row(t.type, t.row(tokens[i]), x + i * dim, dim);
  }
  void rmsnorm(const float* x, const Tensor& w, float* y, int64_t n) override {
    cpu::rmsnorm(x, static_cast<const float*>(w.data), y, n, static_cast<int>(w.numel()), m_->config.norm_eps);
  }
  void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n) override {
    cpu::matmul(outs, x, n, mode_);
  }
  void add_bias(float* y, const Tensor& b, int64_t n) override {
    const float* bp = static_cast<const float*>(b.data);
    const int64_t d = b.numel();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) y[i * d + j] += bp[j];
  }
  void add(float* x, const float* y, int64_t n) override {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
  }
  void rope(float* x, std::span<const int32_t> pos, int n_heads) override {
    const int64_t n = static_cast<int64_t>(pos.size());
    float* table = n * m_->config.head_dim <= static_cast<int64_t>(rope_table_.size()) ? rope_table_.data() : nullptr;
    rope_->apply(x, pos.data(), n, n_heads, table);
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override { cpu::swiglu(gate, up, out, n); }
  void attention_prefill(const float* q, int64_t i0, int64_t nq, const DenseKV& kv, int n_heads, int n_kv, int hd,
                         float* out) override {
    cpu::attention_prefill(q, i0, nq, kv, n_heads, n_kv, hd, prefill_, out);
  }
  void attention_decode(const float* q, std::span<const DecodeItem> items, int layer, float* out,
                        const AttnProbeOut* probe) override {
    const ModelConfig& c = m_->config;
    cpu::attention_decode(q, items, layer, c.n_heads, c.n_kv_heads, c.head_dim, decode_, out, probe);
  }

  void kv_append(std::span<const AppendItem> items, int layer, const float* k, const float* v) override {
    for (const AppendItem& it : items) {
      const KvCache& c = *it.cache;
      const int G = c.n_kv_heads(), hd = c.head_dim();
      for (int g = 0; g < G; ++g) {
        const int first = c.len(layer, g) - it.n;
        for (int i = 0; i < it.n; ++i) {
          const size_t src = (static_cast<size_t>(it.row0 + i) * G + g) * hd;
          put_row(row_at(c, layer, g, first + i, false), k + src, hd, c.type());
          put_row(row_at(c, layer, g, first + i, true), v + src, hd, c.type());
        }
      }
    }
  }
  void kv_gather(KvCache& c, int layer, const DenseKV& src, std::span<const std::vector<int32_t>> rows) override {
    const int G = c.n_kv_heads(), hd = c.head_dim();
    for (int g = 0; g < G; ++g) {
      const int first = c.len(layer, g) - static_cast<int>(rows[g].size());
      for (size_t j = 0; j < rows[g].size(); ++j) {
        const size_t s = (static_cast<size_t>(rows[g][j]) * G + g) * hd;
        put_row(row_at(c, layer, g, first + static_cast<int>(j), false), src.k + s, hd, c.type());
        put_row(row_at(c, layer, g, first + static_cast<int>(j), true), src.v + s, hd, c.type());
      }
    }
  }
  void kv_to_dense(const KvCache& c, int layer, const DenseKV& dst, int exclude_last) override {
    const int G = c.n_kv_heads(), hd = c.head_dim();
    for (int g = 0; g < G; ++g) {
      const int len = c.len(layer, g) - exclude_last;
      const int64_t first = dst.first_new - len;
      for (int j = 0; j < len; ++j) {
        const size_t d = (static_cast<size_t>(first + j) * G + g) * hd;
        get_row(dst.k + d, row_at(c, layer, g, j, false), hd, c.type());
        get_row(dst.v + d, row_at(c, layer, g, j, true), hd, c.type());
      }
    }
  }

  void window_scores(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd,
                     std::span<const std::vector<int>> groups, int kernel, Pool pool, float* out) override {
    // Prefill-time scratch, grown outside any parallel region.
    const size_t need = static_cast<size_t>(omp_get_max_threads()) * (w + 2) * T;
    if (window_.size() < need) window_.resize(need);
    cpu::window_scores(qw, k, T, w, n_heads, n_kv, hd, groups, kernel, pool, window_.data(), out);
  }
  std::vector<std::vector<int32_t>> top_k(const float* score, int rows, int n, std::span<const int> k) override {
    std::vector<std::vector<int32_t>> res(rows);
    for (int r = 0; r < rows; ++r) res[r] = cpu::top_k_positions(score + static_cast<size_t>(r) * n, n, k[r]);
    return res;
  }

 private:
  cpu::MatmulMode mode_;
  const Model* m_ = nullptr;
  std::unique_ptr<cpu::Rope> rope_;
  std::vector<float> rope_table_;
  cpu::DecodeScratch decode_;
  cpu::PrefillScratch prefill_;
  std::vector<float> window_;
  int64_t max_ctx_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(bool q8) { return std::make_unique<CpuBackend>(q8); }

}  // namespace ckv
