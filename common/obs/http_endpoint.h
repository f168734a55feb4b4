// A daemon's HTTP port (cpp-httplib underneath): GET /metrics for Prometheus, and on the server
// the dashboard and its admin actions (server/dashboard.h); the routes are registered by their
// owners, one Handle() call each. httplib stays out of this header, which every daemon source
// includes.
//
// Given a certificate and key (the server passes its gRPC port's tls.cert and tls.key) the
// port serves HTTPS only (an httplib::SSLServer; the Debian library is built with
// OpenSSL). The dashboard checks its admin token in its own handlers.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/status.h"

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
  // A bind address and a port in [0, 65535]; the message starts with the field's name
  // (YamlReader::Check).
  Status Validate() const;
};

// PEM text, not paths: the certificate chain (leaf first) and its unencrypted key.
struct HttpsCertificate {
  std::string cert_pem, key_pem;
  bool empty() const { return cert_pem.empty() && key_pem.empty(); }
};

enum class HttpMethod { kGet, kPost };

struct HttpRequest {
  std::string path;                           // the route's pattern, as given to Handle()
  std::vector<std::string> captures;          // the pattern's groups, matched in the request's path
  std::map<std::string, std::string> params;  // the query string's, decoded
  std::string authorization;                  // the Authorization header ("" when absent)
  std::string body;                           // a POST's body
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
  // `name` says whose port it is in errors and log lines ("streamdistill-edge"). With a
  // `certificate` the port serves HTTPS only.
  HttpEndpoint(HttpOptions options, std::string name, HttpsCertificate certificate = {});
  ~HttpEndpoint();  // Stop()
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  // Serves `method` requests whose whole path matches `path`, an ECMAScript regular expression
  // ("/metrics", "/api/devices/([^/]+)"), with `handler`, which runs on one of the endpoint's
  // threads (several requests may run at once). Only before Start(): httplib's routing table
  // has no lock.
  Status Handle(const std::string& path, HttpHandler handler, HttpMethod method = HttpMethod::kGet);
  // GET /metrics: `registry` rendered (it must outlive the endpoint).
  Status ServeMetrics(const MetricsRegistry* registry);

  // Binds options.bind:options.port (0: a free port) and runs the listen loop on a thread of
  // its own; returns once connections are accepted. A port in use is Unavailable, so the
  // daemon's start fails with a clear error; a certificate or key that does not load is
  // InvalidArgument.
  Status Start();
  // Closes the port and waits for the loop and its requests to end; idempotent.
  void Stop();

  int port() const { return port_; }  // after Start(): the bound port (the free one 0 picked)
  bool tls() const { return tls_; }

 private:
  const HttpOptions options_;
  const std::string name_;
  const bool tls_;
  Status setup_;  // why the certificate or key did not load; Start() returns it (before server_: it sets it)
  std::unique_ptr<httplib::Server> server_;  // an httplib::SSLServer with a certificate
  std::vector<std::string> paths_;  // the routes, for the start's log line
  int port_ = 0;
  std::thread thread_;  // the listen loop, from Start() until Stop()
  std::atomic<bool> loop_ended_{false};
};

}  // namespace sd
