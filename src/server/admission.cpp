#include "server/admission.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "util/error.h"

namespace ckv::server {

MemoryPlan plan_memory(size_t limit, size_t max_transient, size_t table_bytes, int max_seqs, size_t page_bytes) {
  MemoryPlan p;
  p.limit = limit;
  p.reserved = max_transient + static_cast<size_t>(max_seqs) * table_bytes;
  p.page_bytes = page_bytes;
  if (limit < p.reserved + page_bytes)
    throw Error("--kv-memory " + std::to_string(limit) + " bytes leaves no room for KV pages: " +
                std::to_string(p.reserved) + " bytes go to one prompt read of the whole context and " +
                std::to_string(max_seqs) + " page tables (--max-seqs); give more, or a smaller -c or --max-seqs");
  p.pool_pages = static_cast<int64_t>((limit - p.reserved) / page_bytes);
  return p;
}

size_t default_kv_memory(bool gpu, size_t free_bytes) {
  if (!gpu) return free_bytes / 2;
  const size_t margin = (size_t(1) << 30) + free_bytes / 20;
  return free_bytes > margin ? free_bytes - margin : 0;
}

size_t parse_bytes(const std::string& s, const std::string& flag) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  const std::string unit = end ? std::string(end) : "";
  double mul = 0;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "K" || unit == "KB") mul = 1e3;
  else if (unit == "M" || unit == "MB") mul = 1e6;
  else if (unit == "G" || unit == "GB") mul = 1e9;
  else if (unit == "KiB") mul = 1024.0;
  else if (unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "GiB") mul = 1024.0 * 1024 * 1024;
  if (s.empty() || end == s.c_str() || mul == 0 || !std::isfinite(v) || v < 0 || v * mul > 1e18)
    throw Error(flag + " must be a size in bytes, e.g. 4096, 512M, 2GiB (K/M/G: powers of 1000; KiB/MiB/GiB: of "
                       "1024), found '" + s.substr(0, 24) + "'");
  return static_cast<size_t>(v * mul);
}

bool Admission::try_admit(int64_t pages) {
  if (seqs_ >= max_seqs_ || reserved_ + pages > pool_) return false;
  reserved_ += pages;
  ++seqs_;
  return true;
}

void Admission::release(int64_t pages) {
  reserved_ = std::max<int64_t>(0, reserved_ - pages);
  seqs_ = std::max(0, seqs_ - 1);
}

}  // namespace ckv::server
