// Per-sequence KV cache: for each layer and KV head, the keys (after RoPE) and
// values of the kept prompt positions plus room for generated tokens, each
// head with its own length (Ada-KV heads differ; CompressKV heads agree).
// Rows are stored as f32 (exact, the default) or f16 (half the memory and
// memory traffic, as llama.cpp's default cache; rounds K and V to 11 bits).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ckv {

enum class KvType { F32, F16 };
// "f32" / "f16"; anything else is an error naming --kv-type.
KvType parse_kv_type(const std::string& s);

class KVStore {
 public:
  KVStore(int n_layers, int n_kv_heads, int head_dim, KvType type = KvType::F32);

  // Replaces head (l, g) with the rows `rows` of src_k/src_v ([*][stride]
  // floats, the head's hd values at offset 0 of each row), reserving room for
  // `extra` more tokens. Allocates exactly (rows + extra) * hd * 2 elements.
  void assign(int l, int g, const float* src_k, const float* src_v, int64_t stride,
              const std::vector<int32_t>& rows, int extra);
  // Appends one token's key and value (hd floats each) to head (l, g),
  // growing the allocation by `grow` tokens when full.
  void append(int l, int g, const float* k, const float* v, int grow = 256);

  // Raw rows of head (l, g): [len][hd] elements of type().
  const void* k(int l, int g) const { return head(l, g).k.get(); }
  const void* v(int l, int g) const { return head(l, g).v.get(); }
  // Row `row` of head (l, g)'s keys as f32 (hd floats).
  void key(int l, int g, int row, float* out) const;
  int len(int l, int g) const { return head(l, g).len; }
  int capacity(int l, int g) const { return head(l, g).cap; }
  KvType type() const { return type_; }

  // Bytes allocated for keys and values (the cache's real footprint).
  size_t bytes() const { return bytes_; }
  // Bytes a full cache of `tokens` positions per head takes (same row type).
  size_t full_bytes(int64_t tokens) const { return static_cast<size_t>(tokens) * n_layers_ * n_kv_ * row_bytes() * 2; }
  int n_layers() const { return n_layers_; }
  int n_kv_heads() const { return n_kv_; }
  int head_dim() const { return hd_; }
  void clear();

 private:
  struct Head {
    std::unique_ptr<uint8_t[]> k, v;  // [cap][hd] elements
    int len = 0, cap = 0;
  };
  Head& head(int l, int g) { return heads_[static_cast<size_t>(l) * n_kv_ + g]; }
  const Head& head(int l, int g) const { return heads_[static_cast<size_t>(l) * n_kv_ + g]; }
  size_t row_bytes() const { return static_cast<size_t>(hd_) * (type_ == KvType::F16 ? 2 : 4); }
  void put(uint8_t* dst, const float* src) const;  // one row, converted
  void reallocate(Head& h, int cap);
  int n_layers_, n_kv_, hd_;
  KvType type_;
  std::vector<Head> heads_;  // [n_layers][n_kv]
  size_t bytes_ = 0;
};

}  // namespace ckv
