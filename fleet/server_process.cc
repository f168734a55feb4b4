#include "fleet/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "common/base/clock.h"

namespace sd {

namespace {


std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Tail(const std::string& text, size_t chars) {
  return text.size() <= chars ? text : text.substr(text.size() - chars);
}

}  // namespace

StatusOr<ProcessUsage> ReadProcessUsage(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  const std::string stat = ReadWhole(dir + "/stat");
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its
  // closing parenthesis, where field 3 (state) comes first; utime and stime are fields 14, 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return Status::NotFound(dir + "/stat: no such process");
  std::istringstream fields(stat.substr(close + 1));
  std::vector<std::string> after_name;
  std::string field;
  while (fields >> field && after_name.size() < 13) after_name.push_back(field);
  if (after_name.size() < 13) return Status::DataLoss(dir + "/stat: too few fields");
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  ProcessUsage usage;
  usage.cpu_seconds = (std::strtod(after_name[11].c_str(), nullptr) + std::strtod(after_name[12].c_str(), nullptr)) / ticks;
  std::istringstream status(ReadWhole(dir + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) usage.rss_mb = std::strtod(line.c_str() + 6, nullptr) / 1024.0;  // kB
  }
  return usage;
}

StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(const std::string& binary,
                                                             const std::string& config_path,
                                                             const std::string& log_path, double timeout_s) {
  if (access(binary.c_str(), X_OK) != 0)
    return Status::NotFound(binary + ": not an executable (--server-binary): " + std::strerror(errno));
  const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) return Status::IOError(log_path + ": cannot create the server log: " + std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log);
    return Status::Internal(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The server must not outlive a generator that dies without stopping it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    // Stop() asks with SIGINT: a generator started in the background (SIGINT ignored, which
    // exec keeps) must not pass that on, or a server script could not trap it.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    // Free ports for gRPC and /metrics: a fleet run may go on beside a running server.
    execl(binary.c_str(), binary.c_str(), "--config", config_path.c_str(), "--listen", "127.0.0.1:0", "--http-port",
          "0", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(log);
  std::unique_ptr<ServerProcess> server(new ServerProcess(pid, log_path));
  SD_RETURN_IF_ERROR(server->WaitForPort(timeout_s));
  return server;
}

Status ServerProcess::WaitForPort(double timeout_s) {
  // The server logs "listening on 127.0.0.1:0 (port N, ...)" once its port is bound.
  const std::regex listening(R"(listening on \S+ \(port (\d+))");
  // ... and "HTTP (streamdistill-server) on 127.0.0.1:N serves /metrics ..." (common/obs).
  const std::regex http_line(R"(HTTPS? \(streamdistill-server\) on \S+:(\d+) serves)");
  const double deadline = SteadySeconds() + timeout_s;
  while (SteadySeconds() < deadline) {
    const std::string log = ReadWhole(log_path_);
    std::smatch match;
    if (std::regex_search(log, match, listening)) {
      port_ = std::stoi(match[1]);
      // The HTTP endpoint starts (and logs its port) before the gRPC port listens.
      std::smatch http;
      if (std::regex_search(log, http, http_line)) http_port_ = std::stoi(http[1]);
      return Status::Ok();
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      stopped_ = true;
      return Status::Unavailable("the server exited before listening; " + log_path_ + " ends:\n" + Tail(log, 2000));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::Unavailable("the server did not listen within " + std::to_string(timeout_s) + " s; see " +
                             log_path_);
}

Status ServerProcess::Stop(double timeout_s) {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  kill(pid_, SIGINT);
  const double deadline = SteadySeconds() + timeout_s;
  int status = 0;
  while (SteadySeconds() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
      return Status::Internal("the server exited with status " + std::to_string(status) + "; see " + log_path_);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  return Status::Unavailable("the server did not stop within " + std::to_string(timeout_s) + " s and was killed");
}

ServerProcess::~ServerProcess() {
  Status stopped = Stop();
  if (!stopped.ok()) std::fprintf(stderr, "warning: %s\n", stopped.message().c_str());
}

}  // namespace sd
