// loadgen: a load generator for `compresskv serve` (issue 11 item 7).
//
// N clients each stream one /v1/completions request whose prompt is P random
// token ids (the random-weights model has no tokenizer), max_tokens M,
// ignore_eos, greedy, with an optional "kv" extension; all at once or one
// every --interval seconds. Per request: time to first token and the gaps
// between SSE chunks (inter-token latency; the server sends one chunk per
// token). /metrics is sampled for KV bytes and the running sequences.
//
// Aggregate decode tokens/s is measured where N sequences decode at once:
// the window from the last request's first token to the first request's end
// (with --stop-after K every client is cut when the last one to start has K
// tokens, so that window is K steps long whatever the prefill took). Output:
// a markdown table, and with --json FILE one JSON line appended per run;
// `loadgen --table FILE` prints the table of every line of FILE.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string url = "http://127.0.0.1:8080", api_key, label, json_path, table, kv_method;
  int clients = 1, prompt_tokens = 512, max_tokens = 128, vocab = 32000, kv_budget = 0, kv_window = 0;
  int stop_after = 0;
  double interval = 0, timeout = 900, metrics_every = 0.25, wait_ready = 300, settle = 5;
  uint64_t seed = 1;
};

struct Result {
  int status = 0;
  std::string error;
  double start = 0;           // seconds since the run's start
  std::vector<double> chunks;  // arrival time of each token chunk
  int64_t completion_tokens = -1;  // from the usage chunk, when read to the end
  bool cut = false;           // cut by --stop-after
};

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Nearest-rank percentile; NaN for no samples.
double pct(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

// "http://host:port" -> client (plain HTTP only; the server binds loopback).
httplib::Client make_client(const Args& a, double timeout) {
  httplib::Client c(a.url);
  const auto sec = static_cast<time_t>(timeout);
  c.set_tcp_nodelay(true);
  c.set_connection_timeout(10, 0);
  c.set_read_timeout(sec, 0);
  c.set_write_timeout(sec, 0);
  if (!a.api_key.empty()) c.set_bearer_token_auth(a.api_key);
  return c;
}

// Prometheus text -> value of an unlabelled sample (NaN when absent).
double metric(const std::string& text, const std::string& name) {
  size_t pos = 0;
  while ((pos = text.find(name, pos)) != std::string::npos) {
    const bool at_line = pos == 0 || text[pos - 1] == '\n';
    const size_t end = pos + name.size();
    if (at_line && end < text.size() && text[end] == ' ') return std::strtod(text.c_str() + end + 1, nullptr);
    pos = end;
  }
  return NAN;
}

struct Peaks {
  double kv = 0, kv_full = 0, running = 0, queue = 0, pool = NAN, limit = NAN, kv_end = NAN, settle_s = NAN;
  int samples = 0;
};

std::string request_body(const Args& a, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> id(1, a.vocab - 1);
  json prompt = json::array();
  for (int i = 0; i < a.prompt_tokens; ++i) prompt.push_back(id(rng));
  json b = {{"model", "loadgen"},  {"prompt", prompt},   {"max_tokens", a.max_tokens},
            {"temperature", 0},    {"ignore_eos", true}, {"stream", true},
            {"stream_options", {{"include_usage", true}}}};
  if (!a.kv_method.empty()) {
    json kv = {{"method", a.kv_method}};
    if (a.kv_budget > 0) kv["budget"] = a.kv_budget;
    if (a.kv_window > 0) kv["window"] = a.kv_window;
    b["kv"] = kv;
  }
  return b.dump();
}

// One streamed request; `stop` cuts it (the client closes the connection).
void run_client(const Args& a, const std::string& body, Clock::time_point t0, Result& r, std::atomic<bool>& stop,
                std::mutex& mu) {
  auto cli = make_client(a, a.timeout);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = {{"Accept", "text/event-stream"}};
  req.body = body;
  req.set_header("Content-Type", "application/json");
  std::string buf, err_body;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    size_t k;
    while ((k = buf.find("\n\n")) != std::string::npos) {
      std::string ev = buf.substr(0, k);
      buf.erase(0, k + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      ev.erase(0, 6);
      if (ev == "[DONE]") continue;
      json j = json::parse(ev, nullptr, false);
      if (j.is_discarded()) continue;
      std::lock_guard<std::mutex> g(mu);
      if (j.contains("error")) r.error = j["error"].value("message", std::string("error event"));
      if (j.contains("usage") && j["usage"].is_object()) r.completion_tokens = j["usage"].value("completion_tokens", -1);
      if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty() &&
          j["choices"][0].value("finish_reason", json()).is_null())
        r.chunks.push_back(since(t0));
    }
    if (stop.load()) {
      std::lock_guard<std::mutex> g(mu);
      r.cut = true;
      return false;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error e = httplib::Error::Success;
  {
    std::lock_guard<std::mutex> g(mu);
    r.start = since(t0);
  }
  const bool ok = cli.send(req, res, e);
  std::lock_guard<std::mutex> g(mu);
  r.status = res.status;
  if (!ok && !r.cut) r.error = "HTTP client: " + httplib::to_string(e);
  if (res.status != 200 && r.error.empty()) r.error = "HTTP " + std::to_string(res.status) + ": " + buf.substr(0, 300);
}

std::string fmt(double v, const char* f = "%.1f") {
  if (std::isnan(v)) return "n/a";
  char s[64];
  std::snprintf(s, sizeof s, f, v);
  return s;
}
std::string gib(double b) {
  if (std::isnan(b)) return "n/a";
  if (b >= 1024.0 * 1024 * 1024) return fmt(b / (1024.0 * 1024 * 1024), "%.2f") + " GiB";
  return fmt(b / (1024.0 * 1024), "%.2f") + " MiB";
}

const char* kHeader =
    "| run | N | prompt | gen | kv | ok | wall s | decode tok/s (N at once) | window s | generated before it | peak decoding | output tok/s "
    "| TTFT p50 s | TTFT p99 s | ITL p50 ms | ITL p99 ms | ITL max ms | peak KV | FullKV of it | KV limit |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

std::string row(const json& j) {
  auto d = [&](const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN; };
  std::string s = "| " + j.value("label", std::string("")) + " | " + std::to_string(j.value("clients", 0)) + " | " +
                  std::to_string(j.value("prompt_tokens", 0)) + " | " + std::to_string(j.value("max_tokens", 0)) +
                  " | " + j.value("kv", std::string("server default")) + " | " + std::to_string(j.value("ok", 0)) +
                  "/" + std::to_string(j.value("clients", 0)) + " | " + fmt(d("wall_s")) + " | " +
                  fmt(d("decode_tok_s")) + " | " + fmt(d("window_s"), "%.2f") + " | " + fmt(d("generated_at_window_mean"), "%.0f") +
                  " | " +
                  std::to_string(j.value("peak_decoding", 0)) + " | " + fmt(d("output_tok_s")) + " | " +
                  fmt(d("ttft_p50_s"), "%.2f") + " | " + fmt(d("ttft_p99_s"), "%.2f") + " | " +
                  fmt(d("itl_p50_ms")) + " | " + fmt(d("itl_p99_ms")) + " | " + fmt(d("itl_max_ms")) + " | " +
                  gib(d("kv_peak_bytes")) + " | " + gib(d("kv_full_at_peak_bytes")) + " | " + gib(d("kv_limit_bytes")) +
                  " |\n";
  return s;
}

int print_table(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("--table " + path + ": cannot open");
  std::string line, out = kHeader;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) throw std::runtime_error("--table " + path + ": a line is not JSON: " + line.substr(0, 80));
    out += row(j);
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

bool wait_ready(const Args& a) {
  auto t0 = Clock::now();
  while (since(t0) < a.wait_ready) {
    auto cli = make_client(a, 5);
    if (auto r = cli.Get("/health"); r && r->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return false;
}

json summarize(const Args& a, const std::vector<Result>& rs, const Peaks& pk, double wall) {
  std::vector<double> ttft, itl, itl_window;
  int ok = 0, cut = 0;
  double first_max = 0, last_min = INFINITY, start_min = INFINITY, end_max = 0;
  int64_t tokens = 0, usage_tokens = 0;  // chunks received; completion_tokens of the usage chunks
  std::vector<std::pair<double, int>> edges;  // decoding intervals, for the concurrency sweep
  std::vector<double> all_chunks;
  json errors = json::array();
  for (const Result& r : rs) {
    const bool good = r.status == 200 && r.error.empty() && !r.chunks.empty();
    if (!good) {
      if (errors.size() < 5) errors.push_back(r.error.empty() ? "status " + std::to_string(r.status) : r.error);
      continue;
    }
    ++ok;
    cut += r.cut;
    ttft.push_back(r.chunks.front() - r.start);
    for (size_t i = 1; i < r.chunks.size(); ++i) itl.push_back(r.chunks[i] - r.chunks[i - 1]);
    first_max = std::max(first_max, r.chunks.front());
    last_min = std::min(last_min, r.chunks.back());
    start_min = std::min(start_min, r.start);
    end_max = std::max(end_max, r.chunks.back());
    tokens += static_cast<int64_t>(r.chunks.size());
    usage_tokens += std::max<int64_t>(0, r.completion_tokens);
    edges.push_back({r.chunks.front(), +1});
    edges.push_back({r.chunks.back(), -1});
    all_chunks.insert(all_chunks.end(), r.chunks.begin(), r.chunks.end());
  }
  // The window where every request decodes at once.
  double window = NAN, decode_tps = NAN, gen_at_window = 0;  // mean tokens each had generated when the window opened
  if (ok == a.clients && first_max < last_min) {
    window = last_min - first_max;
    int64_t n = 0;
    for (double t : all_chunks) n += t > first_max && t <= last_min;
    decode_tps = n / window;
    for (const Result& r : rs)
      gen_at_window += std::count_if(r.chunks.begin(), r.chunks.end(), [&](double t) { return t <= first_max; });
    gen_at_window /= ok;
    for (const Result& r : rs)
      for (size_t i = 1; i < r.chunks.size(); ++i)
        if (r.chunks[i - 1] >= first_max && r.chunks[i] <= last_min) itl_window.push_back(r.chunks[i] - r.chunks[i - 1]);
  }
  std::sort(edges.begin(), edges.end());
  int cur = 0, peak = 0;
  for (auto& e : edges) peak = std::max(peak, cur += e.second);
  std::string kv = a.kv_method.empty() ? "server default" : a.kv_method;
  if (a.kv_budget > 0) kv += "@" + std::to_string(a.kv_budget);
  json j = {{"label", a.label},
            {"clients", a.clients},
            {"prompt_tokens", a.prompt_tokens},
            {"max_tokens", a.max_tokens},
            {"interval_s", a.interval},
            {"stop_after", a.stop_after},
            {"kv", kv},
            {"ok", ok},
            {"cut", cut},
            {"wall_s", wall},
            {"tokens", tokens},
            {"usage_completion_tokens", usage_tokens},
            {"output_tok_s", ok ? tokens / std::max(1e-9, end_max - start_min) : NAN},
            {"decode_tok_s", decode_tps},
            {"window_s", window},
            {"generated_at_window_mean", !std::isnan(window) ? gen_at_window : NAN},
            {"peak_decoding", peak},
            {"ttft_p50_s", pct(ttft, 50)},
            {"ttft_p99_s", pct(ttft, 99)},
            {"ttft_max_s", pct(ttft, 100)},
            {"itl_p50_ms", pct(itl, 50) * 1e3},
            {"itl_p99_ms", pct(itl, 99) * 1e3},
            {"itl_max_ms", pct(itl, 100) * 1e3},
            {"itl_window_p50_ms", pct(itl_window, 50) * 1e3},
            {"itl_window_p99_ms", pct(itl_window, 99) * 1e3},
            {"kv_peak_bytes", pk.kv},
            {"kv_full_at_peak_bytes", pk.kv_full},
            {"kv_end_bytes", pk.kv_end},
            {"kv_settle_s", pk.settle_s},
            {"kv_pool_bytes", pk.pool},
            {"kv_limit_bytes", pk.limit},
            {"peak_running", pk.running},
            {"peak_queue", pk.queue},
            {"metrics_samples", pk.samples},
            {"errors", errors}};
  // NaN is not JSON: absent figures are null.
  for (auto& [k, v] : j.items())
    if (v.is_number_float() && std::isnan(v.get<double>())) v = nullptr;
  return j;
}

// The KV after the run: a cut stream is noticed at the server's next write
// to it, so poll until the server holds no KV or --settle seconds pass.
void settle(const Args& a, Peaks& pk) {
  auto cli = make_client(a, 10);
  const auto t0 = Clock::now();
  for (;;) {
    if (auto r = cli.Get("/metrics"); r && r->status == 200) pk.kv_end = metric(r->body, "ckv_kv_bytes");
    if (pk.kv_end == 0 || since(t0) >= a.settle) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pk.settle_s = since(t0);
}

int run(const Args& a) {
  if (!wait_ready(a)) throw std::runtime_error(a.url + "/health did not answer 200 within --wait-ready");
  std::mt19937_64 rng(a.seed);
  std::vector<std::string> bodies;
  for (int i = 0; i < a.clients; ++i) bodies.push_back(request_body(a, rng));
  std::vector<Result> rs(a.clients);
  std::atomic<bool> stop{false}, done{false};
  std::mutex mu;
  Peaks pk;
  const auto t0 = Clock::now();
  std::thread sampler([&] {
    auto cli = make_client(a, 10);
    while (!done.load()) {
      if (auto r = cli.Get("/metrics"); r && r->status == 200) {
        const std::string& t = r->body;
        double kv = metric(t, "ckv_kv_bytes");
        std::lock_guard<std::mutex> g(mu);
        ++pk.samples;
        if (kv > pk.kv) pk.kv = kv, pk.kv_full = metric(t, "ckv_kv_full_bytes");
        pk.running = std::max(pk.running, metric(t, "ckv_running_sequences"));
        pk.queue = std::max(pk.queue, metric(t, "ckv_queue_depth"));
        pk.pool = metric(t, "ckv_kv_pool_bytes");
        pk.limit = metric(t, "ckv_kv_memory_limit_bytes");
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(a.metrics_every));
    }
  });
  // --stop-after: cut everyone once all have started and the last to start has K tokens.
  std::thread watcher([&] {
    if (a.stop_after <= 0) return;
    while (!done.load()) {
      {
        std::lock_guard<std::mutex> g(mu);
        bool all = true;
        size_t last = 0;
        double latest = -1;
        for (size_t i = 0; i < rs.size(); ++i) {
          if (rs[i].status != 0 && rs[i].chunks.empty()) continue;  // finished without tokens: failed
          if (rs[i].chunks.empty()) { all = false; break; }
          if (rs[i].chunks.front() > latest) latest = rs[i].chunks.front(), last = i;
        }
        if (all && latest >= 0 && rs[last].chunks.size() >= static_cast<size_t>(a.stop_after)) {
          stop = true;
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  std::vector<std::thread> ts;
  for (int i = 0; i < a.clients; ++i) {
    const double at = i * a.interval;
    ts.emplace_back([&, i, at] {
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
      if (stop.load()) return;
      run_client(a, bodies[i], t0, rs[i], stop, mu);
    });
  }
  for (auto& t : ts) t.join();
  const double wall = since(t0);
  done = true;
  watcher.join();
  sampler.join();
  settle(a, pk);
  json j = summarize(a, rs, pk, wall);
  std::fputs((std::string(kHeader) + row(j)).c_str(), stdout);
  if (!j["errors"].empty()) std::fprintf(stderr, "loadgen: errors: %s\n", j["errors"].dump().c_str());
  if (!a.json_path.empty()) {
    std::ofstream out(a.json_path, std::ios::app);
    if (!out) throw std::runtime_error("--json " + a.json_path + ": cannot write");
    out << j.dump() << "\n";
  }
  return j["ok"].get<int>() == a.clients ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"loadgen: concurrent streaming completions against compresskv serve"};
  app.add_option("--url", a.url, "server base URL (plain http)");
  app.add_option("-n,--clients", a.clients, "concurrent clients (one request each)")->check(CLI::Range(1, 4096));
  app.add_option("-p,--prompt-tokens", a.prompt_tokens, "prompt length: random token ids")->check(CLI::Range(1, 1 << 22));
  app.add_option("-m,--max-tokens", a.max_tokens, "max_tokens of each request (ignore_eos)")->check(CLI::Range(1, 1 << 22));
  app.add_option("--vocab", a.vocab, "token ids are drawn from [1, vocab)")->check(CLI::Range(2, 1 << 24));
  app.add_option("--seed", a.seed, "seed of the prompts");
  app.add_option("--interval", a.interval, "seconds between client starts (0: all at once)")->check(CLI::Range(0.0, 3600.0));
  app.add_option("--stop-after", a.stop_after,
                 "cut every stream once all have started and the last to start has this many tokens (0: off)")
      ->check(CLI::Range(0, 1 << 22));
  app.add_option("--kv-method", a.kv_method, "kv extension: method (empty: the server's default)");
  app.add_option("--kv-budget", a.kv_budget, "kv extension: budget")->check(CLI::Range(0, 1 << 30));
  app.add_option("--kv-window", a.kv_window, "kv extension: window")->check(CLI::Range(0, 1 << 30));
  app.add_option("--api-key", a.api_key, "bearer token");
  app.add_option("--label", a.label, "name of the run in the table");
  app.add_option("--json", a.json_path, "append the run's figures as one JSON line to this file");
  app.add_option("--table", a.table, "print the table of a --json file and exit");
  app.add_option("--timeout", a.timeout, "seconds a request may take")->check(CLI::Range(1.0, 86400.0));
  app.add_option("--metrics-every", a.metrics_every, "seconds between /metrics samples")->check(CLI::Range(0.01, 60.0));
  app.add_option("--settle", a.settle, "seconds to wait after the run for the server's KV to drop to 0")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--wait-ready", a.wait_ready, "seconds to wait for /health")->check(CLI::Range(0.0, 3600.0));
  CLI11_PARSE(app, argc, argv);
  try {
    if (!a.table.empty()) return print_table(a.table);
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loadgen: %s\n", e.what());
    return 2;
  }
}
