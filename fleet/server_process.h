// streamdistill-server as a child process of the fleet generator: started on a free loopback
// port, watched through /proc (CPU time, resident memory), stopped in order with SIGINT.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/base/status.h"

namespace sd {

struct ProcessUsage {
  double cpu_seconds = 0;  // user + system time so far
  double rss_mb = 0;       // resident set (VmRSS)
};

// Reads /proc/<pid>/stat and /proc/<pid>/status.
StatusOr<ProcessUsage> ReadProcessUsage(pid_t pid);

class ServerProcess {
 public:
  // Runs `binary --config <config_path> --listen 127.0.0.1:0 --http-port 0` with stdout and
  // stderr in `log_path`, and waits (up to `timeout_s`) for the ports it logs once it listens.
  static StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary, const std::string& config_path,
                                                        const std::string& log_path, double timeout_s);
  ~ServerProcess();  // Stop()

  int port() const { return port_; }
  // Its HTTP port (/metrics), from its log; 0 when it serves none (http.enabled false).
  int http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }
  // SIGINT (the server's orderly shutdown), then SIGKILL after `timeout_s`. Idempotent.
  Status Stop(double timeout_s = 20);

 private:
  ServerProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  Status WaitForPort(double timeout_s);

  pid_t pid_;
  const std::string log_path_;
  int port_ = 0;
  int http_port_ = 0;
  bool stopped_ = false;
};

}  // namespace sd
