// The KV store in pages (DESIGN.md 4). A page holds a fixed number of token
// rows (chosen per backend) of one (sequence, layer, KV head): its keys
// [rows][hd] followed by its values [rows][hd], in the cache's row type. All
// pages of a device come from one pool; each sequence's KvCache keeps a page
// table per (layer, KV head) and that head's length, so heads hold different
// lengths (Ada-KV), grow while decoding without copying, and give their pages
// back when the sequence ends.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"

namespace ckv {

class KvPool {
 public:
  // Room for max_pages pages of page_rows rows of head_dim elements, in the
  // backend's memory (one allocation; untouched pages cost nothing on the CPU).
  KvPool(Backend& b, int head_dim, KvType type, int page_rows, int64_t max_pages);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  // n page ids into out, all or none: false (nothing taken) when fewer are free.
  bool take(int64_t n, int32_t* out);
  void give_back(std::span<const int32_t> ids);

  // Device address of page id's keys; its values follow at +rows*hd elements.
  uint8_t* page(int32_t id) const { return base_ + static_cast<size_t>(id) * page_bytes_; }
  uint8_t* base() const { return base_; }
  int page_rows() const { return page_rows_; }
  int head_dim() const { return hd_; }
  KvType type() const { return type_; }
  size_t row_bytes() const { return static_cast<size_t>(hd_) * kv_type_bytes(type_); }
  size_t page_bytes() const { return page_bytes_; }
  // Bytes of one page: keys then values of `page_rows` rows.
  static size_t page_bytes_for(int page_rows, int head_dim, KvType type) {
    return 2 * static_cast<size_t>(page_rows) * head_dim * kv_type_bytes(type);
  }
  int64_t capacity() const { return max_pages_; }
  int64_t in_use() const { return max_pages_ - static_cast<int64_t>(free_.size()); }
  size_t bytes_in_use() const { return static_cast<size_t>(in_use()) * page_bytes_; }
  Backend& backend() const { return b_; }

 private:
  Backend& b_;
  int hd_, page_rows_;
  KvType type_;
  size_t page_bytes_;
  int64_t max_pages_;
  uint8_t* base_ = nullptr;
  std::vector<int32_t> free_;  // a stack: the most recently freed page is reused first
};

// Most pages one layer of a cache holds when its n_kv_heads heads keep, of a
// prompt of `prompt` rows, at most `kept` rows each on average (heads may split
// them unevenly, Ada-KV, but none keeps more than the prompt) and each head
// then grows by `generated` rows. Admission (the server) reserves this much.
int64_t layer_pages_bound(int n_kv_heads, int64_t kept, int64_t prompt, int64_t generated, int page_rows);

// One sequence's cache: per layer and KV head, a page table and a length.
class KvCache {
 public:
  KvCache(KvPool& pool, int n_layers, int n_kv_heads, int64_t max_ctx);
  ~KvCache();  // the pages go back to the pool
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // n more rows in every head of every layer: pages reserved and lengths
  // advanced, all or nothing (throws ckv::Error and changes nothing when the
  // pool or max_ctx cannot hold them). The caller then writes the rows.
  void grow(int n);
  // The same for one head (the kept rows of a compressing prefill).
  void grow_head(int layer, int g, int n);
  // Undoes grow(n): every head n rows shorter, emptied pages back to the pool.
  void shrink(int n);
  // Every head back to length 0 (pages to the pool).
  void clear();

  int len(int layer, int g) const { return len_[idx(layer, g)]; }
  int max_len() const;  // the longest head of any layer
  int capacity(int layer, int g) const { return n_pages_[idx(layer, g)] * pool_.page_rows(); }
  // Page ids of head (layer, g), in row order.
  std::span<const int32_t> pages(int layer, int g) const {
    return {&table_[idx(layer, g) * max_pages_], static_cast<size_t>(n_pages_[idx(layer, g)])};
  }
  // Key row `row` of head (layer, g) as f32 (hd floats, host; CPU pools only).
  void key(int layer, int g, int row, float* out) const;
  void value(int layer, int g, int row, float* out) const;

  // Device copies of the page tables ([layers][kv heads][max_pages()] int32)
  // and lengths ([layers][kv heads] int32), current after every grow; on the
  // CPU they are the host arrays.
  const int32_t* device_table() const { return dev_table_; }
  const int32_t* device_len() const { return dev_len_; }
  int max_pages() const { return max_pages_; }

  KvPool& pool() const { return pool_; }
  int n_layers() const { return L_; }
  int n_kv_heads() const { return G_; }
  int head_dim() const { return pool_.head_dim(); }
  KvType type() const { return pool_.type(); }

  // Bytes of the pages this cache holds (its real footprint).
  size_t bytes() const { return static_cast<size_t>(pages_held_) * pool_.page_bytes(); }
  // Bytes a full cache of `tokens` positions takes in the same pages (every
  // head ceil(tokens / page_rows) pages): the one definition of "what FullKV
  // would hold" for run, bench and the server.
  size_t full_bytes(int64_t tokens) const;
  // Bytes of the page tables and lengths (host and device).
  size_t table_bytes() const;
  // The same for any cache of this shape, before it exists (host_tables: the
  // backend's memory is the host's, so there are no device copies).
  static size_t table_bytes_for(int n_layers, int n_kv_heads, int64_t max_ctx, int page_rows, bool host_tables);

 private:
  size_t idx(int layer, int g) const { return static_cast<size_t>(layer) * G_ + g; }
  const uint8_t* row_ptr(int layer, int g, int row) const;
  void sync_device(size_t first_head, size_t n_heads);
  void sync_pages(size_t head, int32_t from, int32_t to);
  void sync_lengths();
  KvPool& pool_;
  int L_, G_, max_pages_;
  int64_t max_ctx_;
  std::vector<int32_t> table_;    // [L][G][max_pages]
  std::vector<int32_t> n_pages_;  // [L][G]
  std::vector<int32_t> len_;      // [L][G]
  int64_t pages_held_ = 0;
  int32_t* dev_table_ = nullptr;
  int32_t* dev_len_ = nullptr;
  bool host_tables_ = false;  // device arrays are the host ones (CPU)
  std::vector<int32_t> scratch_;  // pages taken by grow, before they are placed
};

}  // namespace ckv
