#include "kernels/backend.h"

namespace ckv {

void Backend::set_step(const StepBatch& s) {
  step_tokens_.assign(s.tokens.begin(), s.tokens.end());
  step_pos_.assign(s.pos.begin(), s.pos.end());
  step_seqs_.assign(s.seqs.begin(), s.seqs.end());
  step_items_.clear();
  for (const AppendItem& it : s.seqs) step_items_.push_back({it.row0, it.n, it.cache});
}

}  // namespace ckv
