#include "engine/kv_store.h"

#include <cstring>

namespace ckv {

KVStore::KVStore(int n_layers, int n_kv_heads, int head_dim)
    : n_layers_(n_layers), n_kv_(n_kv_heads), hd_(head_dim), heads_(static_cast<size_t>(n_layers) * n_kv_heads) {}

void KVStore::reallocate(Head& h, int cap) {
  std::unique_ptr<float[]> k(new float[static_cast<size_t>(cap) * hd_]);
  std::unique_ptr<float[]> v(new float[static_cast<size_t>(cap) * hd_]);
  if (h.len) {
    std::memcpy(k.get(), h.k.get(), sizeof(float) * h.len * hd_);
    std::memcpy(v.get(), h.v.get(), sizeof(float) * h.len * hd_);
  }
  bytes_ -= static_cast<size_t>(h.cap) * hd_ * 2 * sizeof(float);
  bytes_ += static_cast<size_t>(cap) * hd_ * 2 * sizeof(float);
  h.k = std::move(k);
  h.v = std::move(v);
  h.cap = cap;
}

void KVStore::assign(int l, int g, const float* src_k, const float* src_v, int64_t stride,
                     const std::vector<int32_t>& rows, int extra) {
  Head& h = head(l, g);
  h.len = 0;
  reallocate(h, static_cast<int>(rows.size()) + extra);
  for (int32_t r : rows) {
    std::memcpy(h.k.get() + static_cast<size_t>(h.len) * hd_, src_k + r * stride, sizeof(float) * hd_);
    std::memcpy(h.v.get() + static_cast<size_t>(h.len) * hd_, src_v + r * stride, sizeof(float) * hd_);
    ++h.len;
  }
}

void KVStore::append(int l, int g, const float* k, const float* v, int grow) {
  Head& h = head(l, g);
  if (h.len == h.cap) reallocate(h, h.cap + grow);
  std::memcpy(h.k.get() + static_cast<size_t>(h.len) * hd_, k, sizeof(float) * hd_);
  std::memcpy(h.v.get() + static_cast<size_t>(h.len) * hd_, v, sizeof(float) * hd_);
  ++h.len;
}

void KVStore::clear() {
  for (auto& h : heads_) h = Head{};
  bytes_ = 0;
}

}  // namespace ckv
