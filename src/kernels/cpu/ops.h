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
  // x: [n][n_heads][head_dim], rotated in place at positions pos[n]. The
  // cos/sin tables of n positions go to `table` ([n][head_dim] floats) when
  // given (no allocation), else to a temporary.
  void apply(float* x, const int32_t* pos, int64_t n, int n_heads, float* table = nullptr) const;
};

// out[i] = silu(gate[i]) * up[i], n elements; out may alias gate.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

}  // namespace ckv::cpu
