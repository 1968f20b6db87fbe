// Admission by memory (serve_contract.md): plain arithmetic over pages, no
// engine, so it is tested on its own.
//
// --kv-memory L bounds everything the server's sequences take: their KV
// pages, their page tables and the read transient (a prompt's residual
// stream). Reads run one at a time and at most max_seqs sequences exist, so
// the largest transient (a read of n_ctx tokens) and max_seqs page tables
// are set aside once; the KV pool gets the rest. A request reserves, before
// its prompt is read, the most pages its compressed cache can hold after the
// prompt and max_tokens generated rows (Sequence::pages_bound): it never
// allocates past the pool, so no allocation fails.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ckv::server {

struct MemoryPlan {
  size_t limit = 0;          // --kv-memory, bytes
  size_t reserved = 0;       // set aside: the largest read transient + max_seqs page tables
  size_t page_bytes = 0;
  int64_t pool_pages = 0;    // what the pool holds: (limit - reserved) / page_bytes
};

// The plan for a limit; throws ckv::Error naming --kv-memory when the limit
// leaves no page for the pool.
MemoryPlan plan_memory(size_t limit, size_t max_transient, size_t table_bytes, int max_seqs, size_t page_bytes);

// Default --kv-memory from what the device has free once the weights and
// workspace are in place: on a GPU that minus a margin (1 GiB + 5%); on the
// CPU half of it (the kernel's MemAvailable, shared with everything else).
size_t default_kv_memory(bool gpu, size_t free_bytes);

// "4096", "512M", "1.5G", "2GiB": K/M/G (and KB/MB/GB) are powers of 1000,
// KiB/MiB/GiB powers of 1024. Throws ckv::Error naming `flag`.
size_t parse_bytes(const std::string& s, const std::string& flag);

// Pages reserved by the sequences admitted so far, against the pool.
class Admission {
 public:
  Admission(int64_t pool_pages, int max_seqs) : pool_(pool_pages), max_seqs_(max_seqs) {}
  // Whether a request of `pages` could ever be admitted (alone).
  bool ever_fits(int64_t pages) const { return pages <= pool_; }
  // Reserves pages and a sequence slot when both are free now.
  bool try_admit(int64_t pages);
  void release(int64_t pages);
  int64_t reserved_pages() const { return reserved_; }
  int64_t pool_pages() const { return pool_; }
  int sequences() const { return seqs_; }

 private:
  int64_t pool_, reserved_ = 0;
  int max_seqs_, seqs_ = 0;
};

}  // namespace ckv::server
