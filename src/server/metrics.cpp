#include "server/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ckv::server {

namespace {

// The shortest text that reads back as v (0.025, not 0.025000000000000001).
std::string num(double v) {
  char b[48];
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) {  // counters and byte gauges: plain integers
    std::snprintf(b, sizeof b, "%.0f", v);
    return b;
  }
  for (int p = 6; p <= 17; ++p) {
    std::snprintf(b, sizeof b, "%.*g", p, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> l(mu_);
  ++counts_[i];
  sum_ += v;
  ++n_;
}

std::string Histogram::render(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  std::string out;
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(n_) + "\n";
  return out;
}

Metrics::Metrics()
    : ttft({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}),
      itl({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}) {
  // Every status of the contract shows from the start (rate() needs the series).
  for (int s : {200, 400, 401, 404, 405, 413, 429, 499, 500}) by_status_[s] = 0;
}

void Metrics::count_request(int status) {
  std::lock_guard<std::mutex> l(mu_);
  ++by_status_[status];
}

std::string Metrics::render() const {
  std::string out;
  header(out, "ckv_requests_total", "counter", "HTTP requests by status (499: the client went away)");
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto [s, n] : by_status_) out += "ckv_requests_total{status=\"" + std::to_string(s) + "\"} " + std::to_string(n) + "\n";
  }
  auto line = [&](const char* name, const char* type, const char* help, double v) {
    header(out, name, type, help);
    out += std::string(name) + " " + num(v) + "\n";
  };
  line("ckv_prompt_tokens_total", "counter", "prompt tokens read", static_cast<double>(prompt_tokens.load()));
  line("ckv_generated_tokens_total", "counter", "tokens generated", static_cast<double>(generated_tokens.load()));
  line("ckv_queue_depth", "gauge", "requests waiting for admission", static_cast<double>(queue_depth.load()));
  line("ckv_running_sequences", "gauge", "sequences admitted (reading their prompt or decoding)",
       static_cast<double>(running.load()));
  line("ckv_kv_bytes", "gauge", "KV cache bytes held by all sequences now", static_cast<double>(kv_bytes.load()));
  line("ckv_kv_full_bytes", "gauge", "what FullKV would hold for the same sequences",
       static_cast<double>(kv_full_bytes.load()));
  line("ckv_kv_pool_bytes", "gauge", "the KV page pool's capacity", static_cast<double>(kv_pool_bytes));
  line("ckv_kv_memory_limit_bytes", "gauge", "--kv-memory", static_cast<double>(kv_memory_limit));
  header(out, "ckv_time_to_first_token_seconds", "histogram", "from a request's arrival to its first token");
  out += ttft.render("ckv_time_to_first_token_seconds");
  header(out, "ckv_inter_token_latency_seconds", "histogram", "between consecutive tokens of a sequence");
  out += itl.render("ckv_inter_token_latency_seconds");
  return out;
}

}  // namespace ckv::server
