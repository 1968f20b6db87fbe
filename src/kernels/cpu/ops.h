// The element-wise and attention kernels of the forward pass (CPU). Every
// buffer is row-major f32; shapes are given beside each parameter.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace ckv::cpu {

// BLAS runs single-threaded inside our own OpenMP loops (its pthreads would
// fight OpenMP's for the same cores). Idempotent.
void init_blas();

// y[i] = x[i] / sqrt(mean(x[i]^2) + eps) * w, for n rows of dim. y may alias x.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, int dim, float eps);

// Rotary embedding tables: inv_freq[head_dim/2] with the model's scaling applied.
struct Rope {
  std::vector<float> inv_freq;  // [head_dim/2]
  float pos_scale = 1.0f;       // linear scaling divides positions
  bool interleaved = false;
  int head_dim = 0;
  explicit Rope(const ModelConfig& c);
  // x: [n][n_heads][head_dim], rotated in place at positions pos[n].
  void apply(float* x, const int32_t* pos, int64_t n, int n_heads) const;
};

// out[i] = silu(gate[i]) * up[i], n elements; out may alias gate.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// Causal attention of n new queries over a per-head prefix (the cache) plus
// the new keys. q: [n][n_heads][hd]; k_new/v_new: [n][n_kv][hd];
// cache_k[g]/cache_v[g]: [cache_len[g]][hd]; out: [n][n_heads][hd].
// Query i sees the whole prefix and new keys 0..i.
struct AttnPrefix {
  std::vector<const void*> k, v;  // per KV head: [len][hd] f32, or f16 when f16 is set
  std::vector<int> len;           // per KV head
  bool f16 = false;
};
void attention(const float* q, const float* k_new, const float* v_new, int64_t n, const AttnPrefix& prefix,
               int n_heads, int n_kv, int hd, float* out);

}  // namespace ckv::cpu
