// Per-sequence KV cache: for each layer and KV head, the keys (after RoPE) and
// values of the kept prompt positions plus room for generated tokens, each
// head with its own length (Ada-KV heads differ; CompressKV heads agree).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ckv {

class KVStore {
 public:
  KVStore(int n_layers, int n_kv_heads, int head_dim);

  // Replaces head (l, g) with the rows `rows` of src_k/src_v ([*][stride]
  // floats, the head's hd values at offset 0 of each row), reserving room for
  // `extra` more tokens. Allocates exactly (rows + extra) * hd * 2 floats.
  void assign(int l, int g, const float* src_k, const float* src_v, int64_t stride,
              const std::vector<int32_t>& rows, int extra);
  // Appends one token's key and value (hd floats each) to head (l, g),
  // growing the allocation by `grow` tokens when full.
  void append(int l, int g, const float* k, const float* v, int grow = 256);

  const float* k(int l, int g) const { return head(l, g).k.get(); }
  const float* v(int l, int g) const { return head(l, g).v.get(); }
  int len(int l, int g) const { return head(l, g).len; }
  int capacity(int l, int g) const { return head(l, g).cap; }

  // Bytes allocated for keys and values (the cache's real footprint).
  size_t bytes() const { return bytes_; }
  // Bytes a full cache of `tokens` positions per head takes (f32 K and V).
  size_t full_bytes(int64_t tokens) const {
    return static_cast<size_t>(tokens) * n_layers_ * n_kv_ * hd_ * 2 * sizeof(float);
  }
  int n_layers() const { return n_layers_; }
  int n_kv_heads() const { return n_kv_; }
  int head_dim() const { return hd_; }
  void clear();

 private:
  struct Head {
    std::unique_ptr<float[]> k, v;  // [cap][hd]
    int len = 0, cap = 0;
  };
  Head& head(int l, int g) { return heads_[static_cast<size_t>(l) * n_kv_ + g]; }
  const Head& head(int l, int g) const { return heads_[static_cast<size_t>(l) * n_kv_ + g]; }
  void reallocate(Head& h, int cap);
  int n_layers_, n_kv_, hd_;
  std::vector<Head> heads_;  // [n_layers][n_kv]
  size_t bytes_ = 0;
};

}  // namespace ckv
