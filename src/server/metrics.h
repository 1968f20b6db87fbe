// The server's counters, gauges and histograms, rendered in Prometheus text
// format 0.0.4 (GET /metrics). Safe to update from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ckv::server {

// Cumulative buckets over upper bounds (seconds), with sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // "<name>_bucket{le=...} n" lines, then _sum and _count.
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

struct Metrics {
  Metrics();
  void count_request(int status);
  std::string render() const;

  std::atomic<uint64_t> prompt_tokens{0}, generated_tokens{0};
  std::atomic<int64_t> queue_depth{0}, running{0};
  std::atomic<int64_t> kv_bytes{0}, kv_full_bytes{0};
  int64_t kv_pool_bytes = 0, kv_memory_limit = 0;  // set once at start
  Histogram ttft, itl;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> by_status_;
};

}  // namespace ckv::server
