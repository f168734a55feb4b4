// streamdistill-server as an object: the gRPC server (TLS or plaintext, message limits,
// the standard health service) around a ServerCore, and its HTTP port (/metrics, and the
// dashboard when http.admin_token is set). Tests run it in-process on port 0.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/obs/http_endpoint.h"
#include "common/base/status.h"
#include "server/server_config.h"
#include "server/server_core.h"

namespace grpc {
class Server;
}

namespace sd {

class EdgeLinkService;

class Server {
 public:
  // Binds config.listen ("host:0" picks a free port) and config.http when enabled, and starts
  // serving.
  static StatusOr<std::unique_ptr<Server>> Start(const ServerConfig& config, TeacherFactory teachers = {});
  ~Server();

  int port() const { return port_; }
  int http_port() const { return http_ ? http_->port() : 0; }  // 0: HTTP is off
  ServerCore& core() { return *core_; }
  // Stops accepting, cancels open streams, waits for handlers; idempotent.
  void Shutdown();
  void Wait();  // blocks until Shutdown() (from another thread or a signal handler's thread)

 private:
  Server() = default;
  std::unique_ptr<ServerCore> core_;
  std::unique_ptr<EdgeLinkService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<HttpEndpoint> http_;  // reads core_: stopped before it goes
  // What the gRPC health service says for streamdistill.v1.EdgeLink, mirrored for GET /healthz.
  std::atomic<bool> serving_{false};
};

}  // namespace sd
