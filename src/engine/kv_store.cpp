#include "engine/kv_store.h"

#include <immintrin.h>

#include <cstring>

#include "util/error.h"

namespace ckv {

KvType parse_kv_type(const std::string& s) {
  if (s == "f32") return KvType::F32;
  if (s == "f16") return KvType::F16;
  throw Error("--kv-type must be f32 or f16, got '" + s + "'");
}

KVStore::KVStore(int n_layers, int n_kv_heads, int head_dim, KvType type)
    : n_layers_(n_layers),
      n_kv_(n_kv_heads),
      hd_(head_dim),
      type_(type),
      heads_(static_cast<size_t>(n_layers) * n_kv_heads) {}

void KVStore::put(uint8_t* dst, const float* src) const {
  if (type_ == KvType::F32) {
    std::memcpy(dst, src, row_bytes());
    return;
  }
  // Round to nearest even, as a cast to half does.
  uint16_t* d = reinterpret_cast<uint16_t*>(dst);
  int c = 0;
  for (; c + 8 <= hd_; c += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + c), _mm256_cvtps_ph(_mm256_loadu_ps(src + c), _MM_FROUND_TO_NEAREST_INT));
  for (; c < hd_; ++c) d[c] = _cvtss_sh(src[c], _MM_FROUND_TO_NEAREST_INT);
}

void KVStore::key(int l, int g, int row, float* out) const {
  const uint8_t* p = head(l, g).k.get() + static_cast<size_t>(row) * row_bytes();
  if (type_ == KvType::F32) {
    std::memcpy(out, p, row_bytes());
    return;
  }
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  for (int c = 0; c < hd_; ++c) out[c] = _cvtsh_ss(h[c]);
}

void KVStore::reallocate(Head& h, int cap) {
  const size_t rb = row_bytes();
  std::unique_ptr<uint8_t[]> k(new uint8_t[static_cast<size_t>(cap) * rb]);
  std::unique_ptr<uint8_t[]> v(new uint8_t[static_cast<size_t>(cap) * rb]);
  if (h.len) {
    std::memcpy(k.get(), h.k.get(), rb * h.len);
    std::memcpy(v.get(), h.v.get(), rb * h.len);
  }
  bytes_ -= static_cast<size_t>(h.cap) * rb * 2;
  bytes_ += static_cast<size_t>(cap) * rb * 2;
  h.k = std::move(k);
  h.v = std::move(v);
  h.cap = cap;
}

void KVStore::assign(int l, int g, const float* src_k, const float* src_v, int64_t stride,
                     const std::vector<int32_t>& rows, int extra) {
  Head& h = head(l, g);
  h.len = 0;
  reallocate(h, static_cast<int>(rows.size()) + extra);
  const size_t rb = row_bytes();
  for (int32_t r : rows) {
    put(h.k.get() + rb * h.len, src_k + r * stride);
    put(h.v.get() + rb * h.len, src_v + r * stride);
    ++h.len;
  }
}

void KVStore::append(int l, int g, const float* k, const float* v, int grow) {
  Head& h = head(l, g);
  if (h.len == h.cap) reallocate(h, h.cap + grow);
  const size_t rb = row_bytes();
  put(h.k.get() + rb * h.len, k);
  put(h.v.get() + rb * h.len, v);
  ++h.len;
}

void KVStore::clear() {
  for (auto& h : heads_) h = Head{};
  bytes_ = 0;
}

}  // namespace ckv
