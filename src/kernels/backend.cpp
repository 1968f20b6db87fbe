#include "kernels/backend.h"

namespace ckv {

void Backend::set_step(const StepBatch& s) {
  step_tokens_.assign(s.tokens.begin(), s.tokens.end());
  step_pos_.assign(s.pos.begin(), s.pos.end());
  step_seqs_.assign(s.seqs.begin(), s.seqs.end());
  step_items_.clear();
  for (const AppendItem& it : s.seqs) step_items_.push_back({it.row0, it.n, it.cache});
}

void Backend::rmsnorm_matmul(const float* x, const Tensor& norm, float* xn, std::span<const MatmulOut> outs,
                             int64_t n) {
  rmsnorm(x, norm, xn, n);
  matmul(outs, xn, n);
}

void Backend::matmul_add(const Tensor& W, const float* x, int64_t n, float* y, float* tmp) {
  const MatmulOut o[] = {{&W, tmp}};
  matmul(o, x, n);
  add(y, tmp, n * W.rows());
}

void Backend::ffn_hidden(const float* x, const Tensor& norm, float* xn, const Tensor& gate, const Tensor& up, float* h,
                         float* up_out, int64_t n) {
  const MatmulOut o[] = {{&gate, h}, {&up, up_out}};
  rmsnorm_matmul(x, norm, xn, o, n);
  swiglu(h, up_out, h, n * gate.rows());
}

}  // namespace ckv
