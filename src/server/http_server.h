// The HTTP side (cpp-httplib): routes of serve_contract.md, the bearer-token
// check, the body limit, OpenAI-style errors for every refusal, and the
// streaming of a job's events (server-sent events, or one JSON body).
#pragma once
#include <memory>
#include <string>

#include "server/metrics.h"
#include "server/prepare.h"
#include "server/scheduler.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}

namespace ckv::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  std::string api_key;  // "": no check
  size_t max_body = 8u << 20;
  int threads = 96;  // connections served at once (each stream holds one)
};

class HttpServer {
 public:
  HttpServer(const ServeModel& sm, Engine& engine, Metrics& metrics, const HttpOptions& opt);
  ~HttpServer();
  // Binds; returns the port (throws ckv::Error when it cannot).
  int bind();
  // Serves until stop() (from another thread).
  void run();
  void stop();

 private:
  void routes();
  void answer_whole(const httplib::Request& req, httplib::Response& res, const std::shared_ptr<Job>& job);
  const ServeModel& sm_;
  Engine& engine_;
  Metrics& metrics_;
  HttpOptions opt_;
  std::unique_ptr<httplib::Server> svr_;
  int listen_fd_ = -1;  // the listening socket (its backlog is raised after bind)
};

// The built-in web page (web_page.html, embedded at build time).
extern const char* const kWebPage;

}  // namespace ckv::server
