// One sequence on one model: the forward pass (layer-major, shared by prefill
// and decode), its KV store and its compression policy.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_store.h"
#include "kernels/cpu/matmul.h"
#include "model/model.h"
#include "press/press.h"

namespace ckv {

struct SessionOptions {
  std::string method = "full";  // press name (press/press.h registry)
  PressParams press;
  const Profile* profile = nullptr;
  int n_ctx = 0;          // maximum positions; 0 = the model's context
  int gen_reserve = 256;  // room per head kept for generated tokens
  int chunk = 256;        // rows per matrix product during prefill
  cpu::MatmulMode matmul = cpu::MatmulMode::Exact;
  KvType kv_type = KvType::F32;  // cache rows: f32 (exact) or f16
  // Observer called for each layer of a compressing prefill, after attention
  // and before compression (tests, calibration).
  std::function<void(const LayerView&)> on_layer;
  // Called after each layer of a prefill (progress display).
  std::function<void(int layer, int n_layers)> on_progress;
};

class Session {
 public:
  Session(const Model& m, const SessionOptions& opt);
  ~Session();

  // Reads tokens after what the session holds. The first read of a session is
  // the prompt: each layer is compressed by the press right after its
  // attention (DESIGN.md 2.1, 4). logits_last (vocab floats) gets the last
  // position's logits when non-null; `each` (when set) gets every position's.
  void prefill(const std::vector<int>& tokens, float* logits_last,
               const std::function<void(int64_t pos, const float* logits)>& each = {});
  // One generated token; logits (vocab floats) of the next position.
  void decode(int token, float* logits);

  int64_t n_past() const { return n_past_; }  // logical position of the next token
  int n_ctx() const { return n_ctx_; }
  const KVStore& kv() const { return kv_; }
  const Press& press() const { return *press_; }
  // Kept prompt positions per layer from the compressing prefill ([L][G][n]).
  const std::vector<KeptPositions>& kept() const { return kept_; }
  // Engine's own accounting: KV bytes plus prefill scratch, at its peak.
  size_t peak_bytes() const { return peak_bytes_; }
  const Model& model() const { return m_; }

 private:
  void forward(const int* tokens, int64_t n, float* logits_last,
               const std::function<void(int64_t, const float*)>& each);
  const Model& m_;
  SessionOptions opt_;
  int n_ctx_;
  std::unique_ptr<Press> press_;
  KVStore kv_;
  int64_t n_past_ = 0;
  std::vector<KeptPositions> kept_;
  size_t peak_bytes_ = 0;
};

}  // namespace ckv
