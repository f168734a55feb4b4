// A daemon's HTTP port (cpp-httplib underneath): GET /metrics for Prometheus, and on the server
// the dashboard (server/dashboard.h); the routes are registered by their owners, one Handle()
// call each. httplib stays out of this header, which every daemon source includes.
//
// Later, when the server's gRPC port has TLS, this port is meant to follow it: HttpOptions
// then gains a certificate and key, and Start() builds an httplib::SSLServer (the Debian
// library is built with OpenSSL). The dashboard checks its admin token in its own handlers.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace sd {

class MetricsRegistry;

// `http:` in server.yaml and edge.yaml (docs/operations.md).
struct HttpOptions {
  bool enabled = false;
  std::string bind = "127.0.0.1";  // loopback: metrics are for a local Prometheus or a tunnel
  int port = 0;                    // 0: a free port, which the daemon logs
};

struct HttpRequest {
  std::string path;                           // the route's pattern, as given to Handle()
  std::vector<std::string> captures;          // the pattern's groups, matched in the request's path
  std::map<std::string, std::string> params;  // the query string's, decoded
  std::string authorization;                  // the Authorization header ("" when absent)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// The content type of the Prometheus text format that /metrics serves.
extern const char kPrometheusContentType[];

class HttpEndpoint {
 public:
  // `name` says whose port it is in errors and log lines ("streamdistill-edge").
  HttpEndpoint(HttpOptions options, std::string name);
  ~HttpEndpoint();  // Stop()
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  // Serves GET requests whose whole path matches `path`, an ECMAScript regular expression
  // ("/metrics", "/api/devices/([^/]+)"), with `handler`, which runs on one of the endpoint's
  // threads (several requests may run at once). Only before Start(): httplib's routing table
  // has no lock.
  Status Handle(const std::string& path, HttpHandler handler);
  // GET /metrics: `registry` rendered (it must outlive the endpoint).
  Status ServeMetrics(const MetricsRegistry* registry);

  // Binds options.bind:options.port (0: a free port) and runs the listen loop on a thread of
  // its own; returns once connections are accepted. A port in use is Unavailable, so the
  // daemon's start fails with a clear error.
  Status Start();
  // Closes the port and waits for the loop and its requests to end; idempotent.
  void Stop();

  int port() const { return port_; }  // after Start(): the bound port (the free one 0 picked)

 private:
  const HttpOptions options_;
  const std::string name_;
  std::unique_ptr<httplib::Server> server_;
  std::vector<std::string> paths_;  // the routes, for the start's log line
  int port_ = 0;
  std::thread thread_;  // the listen loop, from Start() until Stop()
  std::atomic<bool> loop_ended_{false};
};

}  // namespace sd
