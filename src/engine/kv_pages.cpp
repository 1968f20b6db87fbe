#include "engine/kv_pages.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "util/error.h"

namespace ckv {

KvType parse_kv_type(const std::string& s) {
  if (s == "f32") return KvType::F32;
  if (s == "f16") return KvType::F16;
  throw Error("--kv-type must be f32 or f16, got '" + s + "'");
}

// ---- the pool ---------------------------------------------------------------

KvPool::KvPool(Backend& b, int head_dim, KvType type, int page_rows, int64_t max_pages)
    : b_(b),
      hd_(head_dim),
      page_rows_(page_rows),
      type_(type),
      page_bytes_(page_bytes_for(page_rows, head_dim, type)),
      max_pages_(max_pages) {
  if (page_rows < 1 || max_pages < 1 || max_pages > INT32_MAX)
    throw Error("KV pool: bad size (" + std::to_string(max_pages) + " pages of " + std::to_string(page_rows) +
                " rows)");
  base_ = static_cast<uint8_t*>(b.alloc(page_bytes_ * max_pages, "the KV cache pool"));
  free_.resize(max_pages);
  // Lowest ids on top of the stack: a fresh pool hands out pages in order.
  for (int64_t i = 0; i < max_pages; ++i) free_[i] = static_cast<int32_t>(max_pages - 1 - i);
}

KvPool::~KvPool() { b_.free(base_); }

bool KvPool::take(int64_t n, int32_t* out) {
  if (n > static_cast<int64_t>(free_.size())) return false;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = free_.back();
    free_.pop_back();
  }
  return true;
}

void KvPool::give_back(std::span<const int32_t> ids) { free_.insert(free_.end(), ids.begin(), ids.end()); }

// ---- one sequence's cache ---------------------------------------------------

int64_t layer_pages_bound(int n_kv_heads, int64_t kept, int64_t prompt, int64_t generated, int page_rows) {
  const int64_t G = n_kv_heads, P = page_rows;
  // Every head at its longest: the whole prompt and the generated rows.
  const int64_t all = G * ((prompt + generated + P - 1) / P);
  // sum_g ceil((n_g + gen) / P) <= (sum_g n_g + G gen + G (P - 1)) / P, sum_g n_g <= G kept.
  const int64_t split = (G * (std::min(kept, prompt) + generated) + G * (P - 1)) / P;
  return std::min(all, split);
}

KvCache::KvCache(KvPool& pool, int n_layers, int n_kv_heads, int64_t max_ctx)
    : pool_(pool),
      L_(n_layers),
      G_(n_kv_heads),
      max_pages_(static_cast<int>((max_ctx + pool.page_rows() - 1) / pool.page_rows())),
      max_ctx_(max_ctx),
      table_(static_cast<size_t>(n_layers) * n_kv_heads * max_pages_, -1),
      n_pages_(static_cast<size_t>(n_layers) * n_kv_heads, 0),
      len_(static_cast<size_t>(n_layers) * n_kv_heads, 0),
      host_tables_(pool.backend().host_memory()) {
  // Room for one step's new pages in every head (grow never allocates).
  scratch_.reserve(static_cast<size_t>(n_layers) * n_kv_heads * max_pages_);
  if (host_tables_) {
    dev_table_ = table_.data();
    dev_len_ = len_.data();
  } else {
    Backend& b = pool.backend();
    dev_table_ = static_cast<int32_t*>(b.alloc(table_.size() * sizeof(int32_t), "KV page tables"));
    try {
      dev_len_ = static_cast<int32_t*>(b.alloc(len_.size() * sizeof(int32_t), "KV head lengths"));
    } catch (...) {
      b.free(dev_table_);
      throw;
    }
    sync_device(0, len_.size());
  }
}

KvCache::~KvCache() {
  clear();
  if (!host_tables_) {
    pool_.backend().free(dev_table_);
    pool_.backend().free(dev_len_);
  }
}

// Only what changed goes to the device: the new page ids of a head, and the
// lengths (one small array).
void KvCache::sync_pages(size_t h, int32_t from, int32_t to) {
  if (host_tables_) return;
  const size_t off = h * max_pages_ + from;
  pool_.backend().upload(dev_table_ + off, table_.data() + off, (to - from) * sizeof(int32_t));
}

void KvCache::sync_lengths() {
  if (!host_tables_) pool_.backend().upload(dev_len_, len_.data(), len_.size() * sizeof(int32_t));
}

void KvCache::sync_device(size_t first_head, size_t n_heads) {
  if (host_tables_ || n_heads == 0) return;
  Backend& b = pool_.backend();
  b.upload(dev_table_ + first_head * max_pages_, table_.data() + first_head * max_pages_,
           n_heads * max_pages_ * sizeof(int32_t));
  b.upload(dev_len_ + first_head, len_.data() + first_head, n_heads * sizeof(int32_t));
}

int KvCache::max_len() const { return len_.empty() ? 0 : *std::max_element(len_.begin(), len_.end()); }

void KvCache::grow(int n) {
  if (n <= 0) return;
  const int P = pool_.page_rows();
  int64_t need = 0;
  for (size_t h = 0; h < len_.size(); ++h) {
    const int64_t rows = int64_t(len_[h]) + n;
    if (rows > max_ctx_)
      throw Error("KV cache: " + std::to_string(rows) + " rows exceed the context of " + std::to_string(max_ctx_) +
                  " positions");
    need += std::max<int64_t>(0, (rows + P - 1) / P - n_pages_[h]);
  }
  scratch_.resize(need);
  if (!pool_.take(need, scratch_.data()))
    throw Error("KV cache pool is full: " + std::to_string(need) + " more pages of " +
                std::to_string(pool_.page_bytes()) + " bytes needed, " +
                std::to_string(pool_.capacity() - pool_.in_use()) + " free");
  size_t next = 0;
  for (size_t h = 0; h < len_.size(); ++h) {
    const int64_t pages = (int64_t(len_[h]) + n + P - 1) / P;
    const int32_t before = n_pages_[h];
    while (n_pages_[h] < pages) table_[h * max_pages_ + n_pages_[h]++] = scratch_[next++];
    if (n_pages_[h] > before) sync_pages(h, before, n_pages_[h]);
    len_[h] += n;
  }
  pages_held_ += need;
  sync_lengths();
}

void KvCache::grow_head(int layer, int g, int n) {
  if (n <= 0) return;
  const int P = pool_.page_rows();
  const size_t h = idx(layer, g);
  const int64_t rows = int64_t(len_[h]) + n;
  if (rows > max_ctx_)
    throw Error("KV cache: " + std::to_string(rows) + " rows exceed the context of " + std::to_string(max_ctx_) +
                " positions");
  const int64_t need = std::max<int64_t>(0, (rows + P - 1) / P - n_pages_[h]);
  int32_t* dst = &table_[h * max_pages_ + n_pages_[h]];
  if (!pool_.take(need, dst))
    throw Error("KV cache pool is full: " + std::to_string(need) + " more pages of " +
                std::to_string(pool_.page_bytes()) + " bytes needed, " +
                std::to_string(pool_.capacity() - pool_.in_use()) + " free");
  sync_pages(h, n_pages_[h], n_pages_[h] + static_cast<int32_t>(need));
  n_pages_[h] += static_cast<int32_t>(need);
  len_[h] += n;
  pages_held_ += need;
  sync_lengths();
}

void KvCache::shrink(int n) {
  const int P = pool_.page_rows();
  for (size_t h = 0; h < len_.size(); ++h) {
    len_[h] = std::max(0, len_[h] - n);
    const int32_t pages = (len_[h] + P - 1) / P;
    pool_.give_back({&table_[h * max_pages_ + pages], static_cast<size_t>(n_pages_[h] - pages)});
    pages_held_ -= n_pages_[h] - pages;
    n_pages_[h] = pages;
  }
  sync_lengths();  // the device reads a head's pages up to its length only
}

void KvCache::clear() {
  for (size_t h = 0; h < len_.size(); ++h) {
    pool_.give_back({&table_[h * max_pages_], static_cast<size_t>(n_pages_[h])});
    n_pages_[h] = 0;
    len_[h] = 0;
  }
  pages_held_ = 0;
  sync_lengths();  // the device reads a head's pages up to its length only
}

const uint8_t* KvCache::row_ptr(int layer, int g, int row) const {
  if (!host_tables_) throw Error("KvCache::key/value: rows of a device cache are not host-readable");
  const int P = pool_.page_rows();
  return pool_.page(pages(layer, g)[row / P]) + static_cast<size_t>(row % P) * pool_.row_bytes();
}

static void row_to_f32(const uint8_t* p, KvType t, int hd, float* out) {
  if (t == KvType::F32) {
    std::memcpy(out, p, sizeof(float) * hd);
    return;
  }
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  for (int c = 0; c < hd; ++c) out[c] = _cvtsh_ss(h[c]);
}

void KvCache::key(int layer, int g, int row, float* out) const {
  row_to_f32(row_ptr(layer, g, row), type(), head_dim(), out);
}

void KvCache::value(int layer, int g, int row, float* out) const {
  const size_t voff = static_cast<size_t>(pool_.page_rows()) * pool_.row_bytes();
  row_to_f32(row_ptr(layer, g, row) + voff, type(), head_dim(), out);
}

size_t KvCache::full_bytes(int64_t tokens) const {
  const int64_t P = pool_.page_rows();
  return static_cast<size_t>((tokens + P - 1) / P) * L_ * G_ * pool_.page_bytes();
}

size_t KvCache::table_bytes() const { return table_bytes_for(L_, G_, max_ctx_, pool_.page_rows(), host_tables_); }

size_t KvCache::table_bytes_for(int n_layers, int n_kv_heads, int64_t max_ctx, int page_rows, bool host_tables) {
  const size_t heads = static_cast<size_t>(n_layers) * n_kv_heads;
  const size_t table = heads * static_cast<size_t>((max_ctx + page_rows - 1) / page_rows);
  // Host: table, page counts, lengths; the device: copies of the table and lengths.
  const size_t host = (table + 2 * heads) * sizeof(int32_t);
  return host_tables ? host : host + (table + heads) * sizeof(int32_t);
}

}  // namespace ckv
