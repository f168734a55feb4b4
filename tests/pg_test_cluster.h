// A throw-away PostgreSQL 15 cluster for tests (issue 24): initdb in a fresh directory,
// postgres listening on a Unix socket there (and on a free loopback port), stopped and removed
// at the end. Run as root, the cluster belongs to the `postgres` user (initdb refuses root).
// Each test takes its own database (NewDatabase), so tests never see each other's rows.
#pragma once

#include <pwd.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace sd {
namespace testing {

// The newest PostgreSQL server Debian installed (/usr/lib/postgresql/<major>/bin); "" if none.
inline std::string PgBinDir() {
  std::string best;
  int best_major = 0;
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ignored)) {
    const int major = std::atoi(entry.path().filename().c_str());
    if (major > best_major && std::filesystem::exists(entry.path() / "bin" / "initdb")) {
      best_major = major;
      best = (entry.path() / "bin").string();
    }
  }
  return best;
}

class PgTestCluster {
 public:
  // The cluster of this test process, started on first use; null (with a message in
  // `why`) when PostgreSQL 15 is not installed.
  static PgTestCluster* Get(std::string* why = nullptr) {
    static std::unique_ptr<PgTestCluster> cluster = [] {
      std::unique_ptr<PgTestCluster> c(new PgTestCluster());
      if (!c->Start()) c.reset();
      return c;
    }();
    if (!cluster && why) *why = "PostgreSQL could not be started (scripts/setup.sh installs it)";
    return cluster.get();
  }

  // A fresh, empty database; its DSN.
  std::string NewDatabase() {
    static std::atomic<int> next{0};
    const std::string name = "t" + std::to_string(getpid()) + "_" + std::to_string(next++);
    if (Psql("postgres", "CREATE DATABASE " + name) != 0) ADD_FAILURE() << "CREATE DATABASE " << name << " failed";
    return Dsn(name);
  }
  std::string Dsn(const std::string& database) const {
    return "host=" + dir_ + " port=" + std::to_string(port_) + " user=postgres dbname=" + database;
  }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }

  // Stops and starts the server (fast shutdown: connections are cut), keeping the data.
  bool Stop() { return Run(Ctl() + " -m fast stop") == 0; }
  bool Start() {
    if (dir_.empty() && !Init()) return false;
    return Run(Ctl() + " -w -t 30 -o \"-p " + std::to_string(port_) + " -k " + dir_ + " -c listen_addresses=127.0.0.1" +
               " -c fsync=off -c max_connections=200\" start") == 0;
  }
  int Psql(const std::string& db, const std::string& sql) const {
    return Run(AsOwner() + bin_ + "/psql -q -h " + dir_ + " -p " + std::to_string(port_) +
               " -U postgres -d " + db + " -v ON_ERROR_STOP=1 -c \"" + sql + "\" > /dev/null");
  }

  ~PgTestCluster() {
    Stop();
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

 private:
  bool Init() {
    bin_ = PgBinDir();
    if (bin_.empty()) return false;
    char pattern[] = "/tmp/sd_pg_XXXXXX";
    if (mkdtemp(pattern) == nullptr) return false;
    root_ = pattern;
    dir_ = root_ + "/data";
    port_ = FreePort();
    if (getuid() == 0) {
      // The cluster's files belong to postgres; the socket lives in its data directory.
      Run("chmod 755 " + root_);
      Run("mkdir -p " + dir_ + " && chown postgres:postgres " + dir_);
    }
    return Run(AsOwner() + bin_ + "/initdb -A trust -U postgres -D " + dir_ + " > " + root_ +
               "/initdb.log 2>&1") == 0;
  }
  std::string Ctl() const {
    return AsOwner() + bin_ + "/pg_ctl -D " + dir_ + " -l " + dir_ + "/server.log";
  }
  static std::string AsOwner() { return getuid() == 0 ? "runuser -u postgres -- " : ""; }
  static int Run(const std::string& command) { return std::system(command.c_str()); }
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    const int port = ntohs(addr.sin_port);
    close(fd);
    return port;
  }

  std::string bin_, root_, dir_;
  int port_ = 0;
};

}  // namespace testing
}  // namespace sd
