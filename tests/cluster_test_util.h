// A streamdistill cluster for tests, all real processes on loopback: a throw-away PostgreSQL
// (tests/pg_test_cluster.h), N streamdistill-server replicas sharing it, and HAProxy in front
// with the shipped config (deploy/haproxy/streamdistill.cfg), as scripts/cluster.sh runs them.
#pragma once

#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <pqxx/pqxx>

#include "tests/child_process.h"
#include "tests/daemon_test_util.h"
#include "tests/pg_test_cluster.h"

namespace sd::testing {

class TestCluster {
 public:
  // `devices`: device id -> token, inline in the replicas' server.yaml.
  // `extra_yaml`: more top-level keys for the replicas' server.yaml.
  TestCluster(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& devices,
              double lease_ttl_s, const std::string& extra_yaml = "")
      : dir_(dir) {
    std::string why;
    PgTestCluster* pg = PgTestCluster::Get(&why);
    if (pg == nullptr) {
      ADD_FAILURE() << why;
      return;
    }
    dsn_ = pg->NewDatabase();
    std::string yaml = QuickOpenRounds(ServerYaml(dir + "/local"));
    // The replicas' devices instead of ServerYaml's two.
    std::string inline_devices = "devices:\n";
    for (const auto& [id, token] : devices) inline_devices += "  " + id + ": {token: " + token + "}\n";
    yaml = std::regex_replace(yaml, std::regex("devices:\\n(  .*\\n|  #.*\\n)+"), inline_devices);
    // A top-level `key: value` line of extra_yaml replaces ServerYaml's line of that key.
    std::istringstream extra(extra_yaml);
    for (std::string line; std::getline(extra, line);) {
      std::smatch key;
      if (std::regex_match(line, key, std::regex("([a-z_]+): .+")))
        yaml = std::regex_replace(yaml, std::regex("(^|\\n)" + key[1].str() + ": [^\\n]*\\n"), "$1");
    }
    yaml += "storage:\n  backend: postgres\n  dsn: \"" + dsn_ + "\"\n  lease_ttl_s: " + std::to_string(lease_ttl_s) +
            "\n" + extra_yaml;
    config_ = dir + "/server.yaml";
    std::ofstream(config_) << yaml;
    proxy_port_ = FreePort();
  }

  // Starts replica k (0-based) on its own port; again after a kill, on the same port.
  // `extra_args`: more of streamdistill-server's flags (--training-workers 0).
  void StartReplica(size_t k, const std::vector<std::string>& extra_args = {}) {
    while (replicas_.size() <= k) replicas_.emplace_back(), ports_.push_back(FreePort()), http_ports_.push_back(FreePort());
    std::vector<std::string> argv{std::string(SD_BINARY_DIR) + "/streamdistill-server", "--config", config_,
                                  "--replica", ReplicaName(k), "--listen", "127.0.0.1:" + std::to_string(ports_[k]),
                                  "--http-port", std::to_string(http_ports_[k])};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    replicas_[k] = std::make_unique<ChildProcess>(argv, dir_ + "/" + ReplicaName(k) + ".log");
  }
  int replica_port(size_t k) const { return ports_[k]; }
  int http_port(size_t k) const { return http_ports_[k]; }
  void KillReplica(size_t k) {
    replicas_[k]->Signal(SIGKILL);
    replicas_[k]->WaitExit(std::chrono::seconds(10));
  }
  // Freezes (SIGSTOP) or thaws (SIGCONT) replica k: a frozen replica's state in the database
  // stays as it is, so a test can check it before killing the replica.
  void FreezeReplica(size_t k, bool frozen) { replicas_[k]->Signal(frozen ? SIGSTOP : SIGCONT); }
  // Ports for replicas 0..n-1 (those not started yet too): HAProxy can list a replica before
  // it runs, as an operator adds a server line before starting it.
  void ReservePorts(size_t n) {
    while (replicas_.size() < n) replicas_.emplace_back(), ports_.push_back(FreePort()), http_ports_.push_back(FreePort());
  }
  // HAProxy with the shipped config, over the replicas with ports so far.
  void StartProxy() {
    std::ifstream in(std::string(SD_SOURCE_DIR) + "/deploy/haproxy/streamdistill.cfg");
    std::stringstream text;
    text << in.rdbuf();
    std::string servers;
    for (size_t k = 0; k < ports_.size(); ++k)
      servers += "    server " + ReplicaName(k) + " 127.0.0.1:" + std::to_string(ports_[k]) +
                 " proto h2 check port " + std::to_string(http_ports_[k]) + " check-proto h1 inter 1s fall 2 rise 1\n";
    std::string cfg = std::regex_replace(text.str(), std::regex("@PORT@"), std::to_string(proxy_port_));
    stats_port_ = FreePort();
    cfg = std::regex_replace(cfg, std::regex("@STATS_PORT@"), std::to_string(stats_port_));
    cfg = std::regex_replace(cfg, std::regex("@SERVERS@\\n"), servers);
    const std::string path = dir_ + "/haproxy.cfg";
    std::ofstream(path) << cfg;
    proxy_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/sbin/haproxy", "-db", "-f", path},
                                            dir_ + "/haproxy.log");
  }

  static std::string ReplicaName(size_t k) { return "r" + std::to_string(k + 1); }
  int proxy_port() const { return proxy_port_; }
  const std::string& dsn() const { return dsn_; }
  std::string ReplicaLog(size_t k) const { return replicas_[k]->Log(); }
  // For a failure's message: HAProxy's view of each server and session counts (its stats CSV),
  // and what is listening on its port (`ss`): a proxy that never forwarded is told apart from
  // replicas that never answered.
  std::string ProxyState() const {
    httplib::Client stats("127.0.0.1", stats_port_);
    auto csv = stats.Get("/stats;csv");
    std::string out = csv ? csv->body : "HAProxy's stats did not answer\n";
    FILE* ss = popen(("ss -ltnp 'sport = :" + std::to_string(proxy_port_) + "' 2>&1").c_str(), "r");
    if (ss != nullptr) {
      char buf[512];
      while (fgets(buf, sizeof buf, ss) != nullptr) out += buf;
      pclose(ss);
    }
    return out;
  }

  // The replica serving each device now (live leases), by device id.
  std::map<std::string, std::string> Holders() const {
    std::map<std::string, std::string> out;
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    for (const pqxx::row& r : tx.exec("SELECT device_id, replica FROM device_leases WHERE expires_at > now()"))
      out[r[0].as<std::string>()] = r[1].as<std::string>();
    return out;
  }
  // The rounds claimed by `replica` and running now (unexpired claims), by unit.
  std::vector<std::string> RunningClaims(const std::string& replica) const {
    std::vector<std::string> out;
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    for (const pqxx::row& r : tx.exec_params(
             "SELECT unit FROM round_queue WHERE claimed_by=$1 AND claim_expires_at > now()", replica))
      out.push_back(r[0].as<std::string>());
    return out;
  }
  // Stored sequences of the device, and how many rows hold each (1 each, or a frame was
  // stored twice).
  std::map<uint64_t, int> StoredSequences(const std::string& device) const {
    std::map<uint64_t, int> out;
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    for (const pqxx::row& r : tx.exec_params("SELECT sequence FROM frames WHERE device_id=$1", device))
      ++out[r[0].as<uint64_t>()];
    return out;
  }
  // The device's stored versions with the replica that stored each, in the order they were
  // stored (creation time), so that "strictly increasing" is checked in time, not by sorting.
  std::vector<std::pair<uint64_t, std::string>> Versions(const std::string& device) const {
    std::vector<std::pair<uint64_t, std::string>> out;
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    for (const pqxx::row& r :
         tx.exec_params("SELECT version, stored_by FROM versions WHERE device_id=$1 ORDER BY created_ms, version", device))
      out.emplace_back(r[0].as<uint64_t>(), r[1].as<std::string>());
    return out;
  }
  // The device's stored versions and the weights' checksum of each.
  std::map<uint64_t, std::string> VersionChecksums(const std::string& device) const {
    std::map<uint64_t, std::string> out;
    pqxx::connection c(dsn_);
    pqxx::work tx(c);
    for (const pqxx::row& r :
         tx.exec_params("SELECT version, weights_checksum FROM versions WHERE device_id=$1", device))
      out[r[0].as<uint64_t>()] = r[1].as<std::string>();
    return out;
  }

 private:
  std::string dir_, dsn_, config_;
  int proxy_port_ = 0, stats_port_ = 0;
  std::vector<int> ports_, http_ports_;
  std::vector<std::unique_ptr<ChildProcess>> replicas_;
  std::unique_ptr<ChildProcess> proxy_;
};

}  // namespace sd::testing
