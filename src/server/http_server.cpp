#include "server/http_server.h"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "server/connection_socket.h"
#include "server/openai_response.h"
#include "util/error.h"

namespace ckv::server {

namespace {

using json = nlohmann::json;

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status == 429) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_json(e));
}

// What one streamed request keeps between the calls of its content provider.
struct Stream {
  std::shared_ptr<Job> job;
  bool started = false, ended = false;
  LogprobCursor at;
};

}  // namespace

HttpServer::HttpServer(const ServeModel& sm, Engine& engine, Metrics& metrics, const HttpOptions& opt)
    : sm_(sm), engine_(engine), metrics_(metrics), opt_(opt), svr_(std::make_unique<httplib::Server>()) {
  routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  int port = opt_.port;
  if (port == 0) port = svr_->bind_to_any_port(opt_.host);
  else if (!svr_->bind_to_port(opt_.host, port)) port = -1;
  if (port <= 0) throw Error("cannot listen on " + opt_.host + ":" + std::to_string(opt_.port) + " (in use, or not an address of this host)");
  // cpp-httplib listens with a backlog of 5: a burst of clients connecting
  // at once (64 in the load test) overflows it and the kernel drops some
  // of the connections before the server sees them. Listening again on the
  // bound socket sets the kernel's largest backlog.
  if (listen_fd_ >= 0 && ::listen(listen_fd_, SOMAXCONN) != 0)
    throw Error("cannot raise the listen backlog on " + opt_.host + ":" + std::to_string(port) + ": " +
                std::strerror(errno));
  return port;
}

void HttpServer::run() { svr_->listen_after_bind(); }

void HttpServer::stop() { svr_->stop(); }

// A request with stream: false. The handler waits for the whole answer, so
// the status line says how it ended (a failure after admission: its own 4xx
// or 5xx, not a 200 with an error body); meanwhile the connection's socket
// is watched, and a client that hangs up cancels its sequence at once.
void HttpServer::answer_whole(const httplib::Request& req, httplib::Response& res, const std::shared_ptr<Job>& job) {
  const int fd = connection_socket(req.remote_addr, req.remote_port, req.local_port);
  std::string text;
  json logprobs;  // null unless asked for
  LogprobCursor at;
  auto checked = Clock::now();
  for (;;) {
    Event ev;
    const bool got = job->pop(ev, std::chrono::milliseconds(50));
    if (Clock::now() - checked >= std::chrono::milliseconds(50)) {  // tokens may come faster than that
      if (fd >= 0 && peer_closed(fd)) {
        engine_.cancel(job);
        metrics_.count_request(499);
        send_json(res, 499, error_json(ApiError(499, "the client closed the connection")));  // nobody reads it
        return;
      }
      checked = Clock::now();
    }
    if (!got) continue;
    if (ev.kind != Event::Fail) append_logprobs(logprobs, logprobs_json(*job, sm_.tok, ev.logprobs, at));
    if (ev.kind == Event::Text) {
      text += ev.text;
    } else if (ev.kind == Event::Finish) {
      metrics_.count_request(200);
      send_json(res, 200, completion_json(*job, text, ev.finish_reason, logprobs));
      return;
    } else {
      metrics_.count_request(ev.error->status);
      send_error(res, *ev.error);
      return;
    }
  }
}

void HttpServer::routes() {
  httplib::Server& s = *svr_;
  const int threads = opt_.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Each streamed token is a small write: without TCP_NODELAY, Nagle's
  // algorithm holds it for the client's delayed ACK (~40 ms a token).
  s.set_tcp_nodelay(true);
  // The listening socket, for bind() (what httplib's default options set, and its descriptor).
  s.set_socket_options([this](socket_t fd) {
    httplib::default_socket_options(fd);
    listen_fd_ = fd;
  });
  s.set_payload_max_length(opt_.max_body);
  // An idle kept-alive connection holds its thread until this timeout, and
  // stop() waits for it: 2 s bounds a clean shutdown.
  s.set_keep_alive_timeout(2);
  s.set_keep_alive_max_count(1000);
  s.set_read_timeout(30);
  s.set_write_timeout(30);

  // The bearer token on every route but /health and the page.
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opt_.api_key.empty() || req.path == "/health" || req.path == "/") return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + opt_.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    metrics_.count_request(401);
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, ApiError(401, req.has_header("Authorization") ? "incorrect API key" : "missing API key: send 'Authorization: Bearer KEY'", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Refusals by httplib itself (no route: 404; body over the limit: 413; bad HTTP: 400).
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // ours, already an error object
    std::string why = res.status == 404   ? "unknown route " + req.method + " " + req.path.substr(0, 200)
                      : res.status == 413 ? "the request body is larger than --max-body (" + std::to_string(opt_.max_body) + " bytes)"
                                          : "the request could not be read (HTTP " + std::to_string(res.status) + ")";
    metrics_.count_request(res.status);
    send_error(res, ApiError(res.status, why));
  });
  s.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string why = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      why = e.what();
    } catch (...) {
    }
    metrics_.count_request(500);
    send_error(res, ApiError(500, why));
  });

  auto ok_json = [this](httplib::Response& res, const json& j) {
    metrics_.count_request(200);
    send_json(res, 200, j);
  };
  s.Get("/health", [ok_json](const httplib::Request&, httplib::Response& res) { ok_json(res, {{"status", "ok"}}); });
  s.Get("/", [this](const httplib::Request&, httplib::Response& res) {
    metrics_.count_request(200);
    res.set_content(kWebPage, "text/html; charset=utf-8");
  });
  s.Get("/v1/models", [this, ok_json](const httplib::Request&, httplib::Response& res) {
    static const int64_t created = static_cast<int64_t>(std::time(nullptr));
    ok_json(res, {{"object", "list"},
                  {"data", json::array({{{"id", sm_.alias}, {"object", "model"}, {"created", created}, {"owned_by", "compresskv"}}})}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    metrics_.count_request(200);
    res.set_content(metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/v1/sequences", [this, ok_json](const httplib::Request&, httplib::Response& res) { ok_json(res, engine_.sequences_json()); });

  auto generate = [this](Endpoint e) {
    // A content reader, so the body is read whatever its Content-Type (httplib
    // caps form-encoded bodies, curl -d's default, at 8 KiB otherwise).
    return [this, e](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      std::string body;
      const bool read = reader([&](const char* d, size_t n) {
        body.append(d, n);
        return body.size() <= opt_.max_body;
      });
      std::shared_ptr<Job> job;
      try {
        if (!read || body.size() > opt_.max_body)
          throw body.size() >= opt_.max_body || res.status == 413
              ? ApiError(413, "the request body is larger than --max-body (" + std::to_string(opt_.max_body) + " bytes)")
              : ApiError(400, "the request body could not be read");
        job = prepare_job(sm_, parse_request(body, e));
        engine_.submit(job);
      } catch (const ApiError& err) {
        metrics_.count_request(err.status);
        send_error(res, err);
        return;
      }
      if (!job->req.stream) return answer_whole(req, res, job);
      auto st = std::make_shared<Stream>();
      st->job = job;
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      // The client gone (a failed write, or a closed socket seen while
      // waiting): the sequence is cancelled and counted as 499.
      auto gone = [this, st] {
        if (st->ended) return false;
        st->ended = true;
        engine_.cancel(st->job);
        metrics_.count_request(499);
        return false;
      };
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, st, gone](size_t, httplib::DataSink& sink) {
            Job& j = *st->job;
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            // A chunk's logprobs: its tokens' (null for a chunk of none)
            auto lp = [&](const std::vector<TokenLogprob>& v) {
              return v.empty() ? json(nullptr) : logprobs_json(j, sm_.tok, v, st->at);
            };
            if (!st->started && j.req.endpoint == Endpoint::Chat && !write(sse(chunk_json(j, "", "", true))))
              return gone();
            st->started = true;
            // Whether the client is still there, every 50 ms (between tokens
            // a stream may write nothing for a long time: a prompt's prefill).
            auto checked = Clock::now();
            for (;;) {
              Event ev;
              const bool got = j.pop(ev, std::chrono::milliseconds(50));
              if (Clock::now() - checked >= std::chrono::milliseconds(50)) {
                if (!sink.is_writable()) return gone();
                checked = Clock::now();
              }
              if (!got) continue;
              if (ev.kind == Event::Text) {
                if (!write(sse(chunk_json(j, ev.text, "", false, lp(ev.logprobs))))) return gone();
                continue;
              }
              bool wrote = true;
              int status = 200;
              if (ev.kind == Event::Finish) {
                wrote = write(sse(chunk_json(j, "", ev.finish_reason, false, lp(ev.logprobs))));
                if (wrote && j.req.include_usage) wrote = write(sse(usage_chunk_json(j)));
                if (wrote) wrote = write("data: [DONE]\n\n");
              } else {  // Fail: the status line went out already; the error event says what happened
                status = ev.error->status;
                wrote = write(sse(error_json(*ev.error))) && write("data: [DONE]\n\n");
              }
              if (!wrote) return gone();
              st->ended = true;
              metrics_.count_request(status);
              sink.done();
              return true;
            }
          },
          [gone](bool) { gone(); });
    };
  };
  s.Post("/v1/chat/completions", generate(Endpoint::Chat));
  s.Post("/v1/completions", generate(Endpoint::Completion));

  // Known routes with another method: 405.
  auto wrong_method = [this](const httplib::Request& req, httplib::Response& res) {
    metrics_.count_request(405);
    send_error(res, ApiError(405, "method " + req.method + " is not allowed on " + req.path));
  };
  const char* get_routes = "/|/health|/metrics|/v1/models|/v1/sequences";
  const char* post_routes = "/v1/chat/completions|/v1/completions";
  const std::string all = std::string("(") + get_routes + "|" + post_routes + ")";
  s.Post(std::string("(") + get_routes + ")", wrong_method);
  s.Get(std::string("(") + post_routes + ")", wrong_method);
  s.Put(all, wrong_method);
  s.Delete(all, wrong_method);
  s.Patch(all, wrong_method);
}

}  // namespace ckv::server
