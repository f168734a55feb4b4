// Issue 24's failover, with real processes on loopback: PostgreSQL, 3 replicas, HAProxy and 4
// edges. One replica is killed with SIGKILL while rounds run: its cameras are served again
// through HAProxy within 30 s, no acked frame is lost or stored twice, each device's versions
// strictly increase with no number used twice, and every camera gets a new version after the
// kill.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "edge/edge_agent.h"
#include "tests/cluster_test_util.h"
#include "tests/sanitizer_build.h"

namespace sd {
namespace {

using namespace sd::testing;

struct Camera {
  std::string id;
  std::unique_ptr<EdgeAgent> agent;
  std::thread run;
  std::mutex mu;
  std::set<uint64_t> acked;
  int refused = 0;
  size_t acked_count() {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  }
};

using Devices = std::vector<std::pair<std::string, std::string>>;

Devices FourDevices() {
  return {{"cam1", "secret-token-1"}, {"cam2", "secret-token-2"}, {"cam3", "secret-token-3"}, {"cam4", "secret-token-4"}};
}

// Real edges (the edge's own agent, in this process) on synthetic scenes, through HAProxy.
class Fleet {
 public:
  Fleet(const std::string& dir, const Devices& devices, int proxy_port) {
    for (size_t i = 0; i < devices.size(); ++i) {
      auto camera = std::make_unique<Camera>();
      camera->id = devices[i].first;
      auto config = ParseEdgeConfig(EdgeYaml(camera->id, devices[i].second, proxy_port, dir + "/" + camera->id,
                                             SyntheticUri(11 + static_cast<int>(i))),
                                    camera->id);
      EXPECT_TRUE(config.ok()) << config.status().ToString();
      if (!config.ok()) continue;
      auto agent = EdgeAgent::Create(*config);
      EXPECT_TRUE(agent.ok()) << agent.status().ToString();
      if (!agent.ok()) continue;
      camera->agent = std::move(agent).value();
      Camera* c = camera.get();
      camera->agent->SetAckObserver([c](uint64_t sequence, int code) {
        std::lock_guard<std::mutex> lock(c->mu);
        if (code == 0) c->acked.insert(sequence);
        else ++c->refused;
      });
      camera->run = std::thread([c] { EXPECT_TRUE(c->agent->Run().ok()); });
      cameras_.push_back(std::move(camera));
    }
  }
  ~Fleet() { Stop(); }
  void Stop() {
    for (auto& c : cameras_) c->agent->Stop();
    for (auto& c : cameras_)
      if (c->run.joinable()) c->run.join();
  }
  std::vector<std::unique_ptr<Camera>>& cameras() { return cameras_; }
  // The version each camera runs now.
  std::map<std::string, uint64_t> RunningVersions() {
    std::map<std::string, uint64_t> out;
    for (auto& c : cameras_) out[c->id] = c->agent->stats().model_version;
    return out;
  }
  // Waits until every camera runs a newer version than in `before`; false after `seconds`.
  bool WaitForNewerVersions(const std::map<std::string, uint64_t>& before, int seconds) {
    return WaitFor(
        [&] {
          for (auto& c : cameras_)
            if (c->agent->stats().model_version <= before.at(c->id)) return false;
          return true;
        },
        seconds);
  }
  // Every camera has run a version and had `frames` acked.
  bool AllLearning(size_t frames) {
    for (auto& c : cameras_)
      if (c->agent->stats().model_version < 1 || c->acked_count() < frames) return false;
    return true;
  }

 private:
  std::vector<std::unique_ptr<Camera>> cameras_;
};

// What no failure may break: every acked frame stored, none twice, no refused frame, and each
// device's versions strictly increasing in the order they were stored.
void ExpectNothingLost(TestCluster& cluster, Fleet& fleet) {
  for (auto& c : fleet.cameras()) {
    const std::map<uint64_t, int> stored = cluster.StoredSequences(c->id);
    std::lock_guard<std::mutex> lock(c->mu);
    int lost = 0;
    for (uint64_t sequence : c->acked)
      if (!stored.count(sequence)) ++lost;
    EXPECT_EQ(lost, 0) << c->id << ": acked frames lost";
    for (const auto& [sequence, rows] : stored) EXPECT_EQ(rows, 1) << c->id << " frame " << sequence << " stored twice";
    EXPECT_EQ(c->refused, 0) << c->id;
    const auto versions = cluster.Versions(c->id);
    std::set<std::string> by;
    for (size_t i = 1; i < versions.size(); ++i) EXPECT_GT(versions[i].first, versions[i - 1].first) << c->id;
    for (const auto& v : versions) by.insert(v.second);
    std::printf("%s: %zu acked, %zu stored, versions 1..%llu by %zu replica(s), now running v%llu\n", c->id.c_str(),
                c->acked.size(), stored.size(),
                static_cast<unsigned long long>(versions.empty() ? 0 : versions.back().first), by.size(),
                static_cast<unsigned long long>(c->agent->stats().model_version));
  }
}

// Kills the replica serving the most cameras; returns its index and waits until each of its
// cameras has a frame acked again (through HAProxy, by another replica): the seconds each took.
std::map<std::string, double> KillBusiestAndWaitForTakeover(TestCluster& cluster, Fleet& fleet, size_t* victim_index) {
  std::map<std::string, std::string> holders = cluster.Holders();
  std::map<std::string, int> load;
  for (const auto& [device, replica] : holders) ++load[replica];
  std::string victim = load.empty() ? "r1" : load.begin()->first;
  for (const auto& [replica, n] : load)
    if (n > load[victim]) victim = replica;
  *victim_index = static_cast<size_t>(std::stoi(victim.substr(1)) - 1);
  std::set<std::string> orphaned;
  for (const auto& [device, replica] : holders)
    if (replica == victim) orphaned.insert(device);
  std::map<std::string, size_t> acked_at_kill;
  for (auto& c : fleet.cameras()) acked_at_kill[c->id] = c->acked_count();
  const auto killed_at = std::chrono::steady_clock::now();
  cluster.KillReplica(*victim_index);
  std::map<std::string, double> resumed_after_s;
  WaitFor(
      [&] {
        for (auto& c : fleet.cameras()) {
          if (!orphaned.count(c->id) || resumed_after_s.count(c->id)) continue;
          if (c->acked_count() > acked_at_kill[c->id])
            resumed_after_s[c->id] =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
        }
        return resumed_after_s.size() == orphaned.size();
      },
      60);
  for (const std::string& device : orphaned) {
    EXPECT_TRUE(resumed_after_s.count(device)) << device << " was not served again after " << victim << " died";
    if (resumed_after_s.count(device))
      std::printf("%s: served again %.1f s after %s was killed\n", device.c_str(), resumed_after_s[device],
                  victim.c_str());
  }
  EXPECT_FALSE(orphaned.empty()) << "no camera on " << victim;
  return resumed_after_s;
}

TEST(ClusterFailoverTest, AKilledReplicasCamerasAreServedAgainWithNoAckedFrameLost) {
  const std::string dir = TempDir("failover");
  // Leases of 3 s: a dead replica's cameras wait at most that long for another.
  TestCluster cluster(dir, FourDevices(), /*lease_ttl_s=*/3);
  for (size_t k = 0; k < 3; ++k) cluster.StartReplica(k);
  cluster.StartProxy();
  Fleet fleet(dir, FourDevices(), cluster.proxy_port());
  ASSERT_EQ(fleet.cameras().size(), 4u);
  ASSERT_TRUE(WaitFor([&] { return fleet.AllLearning(10); }, 150))
      << "not every camera had a version and 10 acked frames; r1's log:\n" << cluster.ReplicaLog(0) << "\nHAProxy:\n"
      << cluster.ProxyState();
  const std::map<std::string, uint64_t> version_at_kill = fleet.RunningVersions();
  size_t victim = 0;
  for (const auto& [device, seconds] : KillBusiestAndWaitForTakeover(cluster, fleet, &victim))
    EXPECT_LE(seconds, 30.0 * TimeScale()) << device;
  // Every camera gets a version newer than the one it ran at the kill.
  const bool all_newer = fleet.WaitForNewerVersions(version_at_kill, 150);
  fleet.Stop();
  EXPECT_TRUE(all_newer) << "a camera got no new version after the kill";
  ExpectNothingLost(cluster, fleet);
}

// Rounds are claimed from PostgreSQL by any replica's idle workers (FOR UPDATE SKIP LOCKED):
// r1 serves both cameras and trains nothing (--training-workers 0), so every version they run
// was trained on r2, stored there with its update and sent by r1. Then r2 is killed while a
// round it claimed runs: the claim expires, r3 claims the round again, and every camera gets a
// newer version, versions still strictly increasing with no number used twice.
TEST(ClusterFailoverTest, RoundsRunOnAnyReplicaAndAKilledTrainersRoundRunsAgain) {
  const std::string dir = TempDir("round_queue");
  const Devices devices = {{"cam1", "secret-token-1"}, {"cam2", "secret-token-2"}};
  // int8 deltas (configs/server.yaml's): r1 sends the update r2's round made, not a full model.
  TestCluster cluster(dir, devices, /*lease_ttl_s=*/3, "update_encoding: int8\n");
  cluster.StartReplica(0, {"--training-workers", "0"});
  cluster.StartReplica(1);
  // Straight to r1, no proxy: r1 must serve both.
  Fleet fleet(dir, devices, cluster.replica_port(0));
  ASSERT_EQ(fleet.cameras().size(), 2u);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& c : fleet.cameras())
          if (c->agent->stats().model_version < 2) return false;
        return true;
      },
      180))
      << "a camera did not run version 2; r1's log:\n" << cluster.ReplicaLog(0) << "\nr2's log:\n" << cluster.ReplicaLog(1);
  for (auto& c : fleet.cameras()) {
    EXPECT_EQ(cluster.Holders()[c->id], "r1") << c->id;
    for (const auto& [version, by] : cluster.Versions(c->id)) EXPECT_EQ(by, "r2") << c->id << " v" << version;
  }
  EXPECT_NE(cluster.ReplicaLog(0).find("stored by a claimed round) sent as int8"), std::string::npos)
      << cluster.ReplicaLog(0);
  // Kill r2 inside a round it claimed: frozen first, so that the claim seen is still its
  // round when the kill lands (a round takes about a second here).
  std::vector<std::string> running;
  ASSERT_TRUE(WaitFor(
      [&] {
        cluster.FreezeReplica(1, true);
        running = cluster.RunningClaims("r2");
        if (running.empty()) cluster.FreezeReplica(1, false);
        return !running.empty();
      },
      120))
      << "r2 never held a claim";
  const std::map<std::string, uint64_t> version_at_kill = fleet.RunningVersions();
  cluster.KillReplica(1);
  cluster.StartReplica(2);
  const bool all_newer = fleet.WaitForNewerVersions(version_at_kill, 180);
  fleet.Stop();
  EXPECT_TRUE(all_newer) << "a camera got no new version after r2 died; r3's log:\n" << cluster.ReplicaLog(2);
  const std::string r3 = cluster.ReplicaLog(2);
  EXPECT_NE(r3.find("device " + running.front() + ": round claimed"), std::string::npos) << r3;
  EXPECT_NE(r3.find("claimed again after replica r2's claim expired"), std::string::npos) << r3;
  httplib::Client r3_http("127.0.0.1", cluster.http_port(2));
  auto metrics = r3_http.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_TRUE(std::regex_search(metrics->body,
                                std::regex(R"(streamdistill_server_rounds_claimed_total\{[^}]*whose="other"[^}]*\} [1-9])")))
      << metrics->body;
  EXPECT_TRUE(std::regex_search(metrics->body, std::regex(R"(streamdistill_server_round_queue_wait_seconds_count\S* [1-9])")))
      << metrics->body;
  ExpectNothingLost(cluster, fleet);
}

TEST(ClusterFailoverTest, AReplicaAddedMidRunTakesAShareAfterTheConnectionAge) {
  // Routing, not memory safety: the kill and restart tests run the same replicas' code under
  // the sanitizers, and CI's budget has no room for a third cluster there.
  if (kSanitizerBuild) GTEST_SKIP() << "Release builds only";
  const std::string dir = TempDir("scale_up");
  // Connections end after 4 s (+-10%): streams then reconnect and go where the hash says.
  TestCluster cluster(dir, FourDevices(), /*lease_ttl_s=*/3, "max_connection_age_s: 4\n");
  cluster.ReservePorts(3);  // HAProxy lists r3 from the start; it is down until it runs
  cluster.StartReplica(0);
  cluster.StartReplica(1);
  cluster.StartProxy();
  Fleet fleet(dir, FourDevices(), cluster.proxy_port());
  ASSERT_TRUE(WaitFor([&] { return fleet.AllLearning(5); }, 150))
      << "r1's log:\n" << cluster.ReplicaLog(0) << "\nHAProxy:\n" << cluster.ProxyState();
  for (const auto& [device, replica] : cluster.Holders()) EXPECT_NE(replica, "r3") << device;
  cluster.StartReplica(2);
  const bool took_share = WaitFor(
      [&] {
        for (const auto& [device, replica] : cluster.Holders())
          if (replica == "r3") return true;
        return false;
      },
      60);
  const std::map<std::string, uint64_t> versions_now = fleet.RunningVersions();
  const bool all_newer = fleet.WaitForNewerVersions(versions_now, 150);
  fleet.Stop();
  EXPECT_TRUE(took_share) << "r3 serves no camera; its log:\n" << cluster.ReplicaLog(2);
  EXPECT_TRUE(all_newer) << "a camera got no new version after r3 joined";
  for (const auto& [device, replica] : cluster.Holders()) std::printf("%s served by %s\n", device.c_str(), replica.c_str());
  ExpectNothingLost(cluster, fleet);
}

// A shared student (server.yaml's groups) whose members two replicas serve: cam1 and cam2
// connect to r1, cam3 and cam4 to r2 (no HAProxy: the split is the test's). Neither serves
// the whole group, so each round runs from the newest stored version, is stored for all four
// members in one transaction, and reaches every camera through the replica serving it.
TEST(ClusterFailoverTest, ASharedStudentWhoseMembersTwoReplicasServeReachesThemAll) {
  if (kSanitizerBuild) GTEST_SKIP() << "Release builds only";
  const std::string dir = TempDir("group");
  TestCluster cluster(dir, FourDevices(), /*lease_ttl_s=*/3, "groups: {lobby: [cam1, cam2, cam3, cam4]}\n");
  cluster.StartReplica(0);
  cluster.StartReplica(1);
  const Devices all = FourDevices();
  Fleet on_r1(dir, {all[0], all[1]}, cluster.replica_port(0));
  Fleet on_r2(dir, {all[2], all[3]}, cluster.replica_port(1));
  auto at_least = [&](uint64_t version) {
    for (Fleet* fleet : {&on_r1, &on_r2})
      for (const auto& [id, running] : fleet->RunningVersions())
        if (running < version) return false;
    return true;
  };
  const bool reached = WaitFor([&] { return at_least(2); }, 150);
  on_r1.Stop();
  on_r2.Stop();
  ASSERT_TRUE(reached) << "not every member runs version 2; r1's log:\n" << cluster.ReplicaLog(0) << "\nr2's log:\n"
                       << cluster.ReplicaLog(1);
  std::map<std::string, std::string> holders = cluster.Holders();
  // One student: every version any member has is every member's, with the same weights.
  const std::map<uint64_t, std::string> cam1 = cluster.VersionChecksums("cam1");
  ASSERT_GE(cam1.size(), 2u);
  for (const std::string device : {"cam2", "cam3", "cam4"}) EXPECT_EQ(cluster.VersionChecksums(device), cam1) << device;
  ExpectNothingLost(cluster, on_r1);
  ExpectNothingLost(cluster, on_r2);
  const std::string log1 = cluster.ReplicaLog(0), log2 = cluster.ReplicaLog(1);
  EXPECT_NE((log1 + log2).find("group lobby: round claimed"), std::string::npos);
  EXPECT_NE((log1 + log2).find("(stored by a claimed round) sent as"), std::string::npos);
}

// A cold start in the wrong order: HAProxy and the edges come up before any replica does (the
// edges meet "no server available" first), as after a power cut or a cluster restarted at once.
TEST(ClusterFailoverTest, EdgesStartedBeforeTheReplicasAreServedOnceTheyRun) {
  if (kSanitizerBuild) GTEST_SKIP() << "Release builds only";
  const std::string dir = TempDir("cold_start");
  TestCluster cluster(dir, FourDevices(), /*lease_ttl_s=*/3, "max_connection_age_s: 4\n");
  cluster.ReservePorts(2);
  cluster.StartProxy();
  Fleet fleet(dir, FourDevices(), cluster.proxy_port());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  cluster.StartReplica(0);
  cluster.StartReplica(1);
  ASSERT_TRUE(WaitFor([&] { return fleet.AllLearning(5); }, 120))
      << "r1's log:\n" << cluster.ReplicaLog(0) << "\nHAProxy:\n" << cluster.ProxyState();
  fleet.Stop();
  ExpectNothingLost(cluster, fleet);
}

// The soak of issue 24: ten kills in a row, each of the busiest replica, which is started again
// before the next. Minutes long, so not part of the test suite: scripts/cluster_soak.sh runs it.
TEST(ClusterFailoverTest, DISABLED_SoakTenKills) {
  const std::string dir = TempDir("soak");
  TestCluster cluster(dir, FourDevices(), /*lease_ttl_s=*/3);
  for (size_t k = 0; k < 3; ++k) cluster.StartReplica(k);
  cluster.StartProxy();
  Fleet fleet(dir, FourDevices(), cluster.proxy_port());
  ASSERT_TRUE(WaitFor([&] { return fleet.AllLearning(10); }, 150)) << cluster.ReplicaLog(0);
  double worst_s = 0;
  for (int kill = 1; kill <= 10; ++kill) {
    size_t victim = 0;
    for (const auto& [device, seconds] : KillBusiestAndWaitForTakeover(cluster, fleet, &victim)) {
      worst_s = std::max(worst_s, seconds);
      EXPECT_LE(seconds, 30.0 * TimeScale()) << "kill " << kill << ": " << device;
    }
    cluster.StartReplica(victim);
    std::this_thread::sleep_for(std::chrono::seconds(5));  // rounds run between kills
  }
  const std::map<std::string, uint64_t> versions_now = fleet.RunningVersions();
  const bool all_newer = fleet.WaitForNewerVersions(versions_now, 150);
  fleet.Stop();
  EXPECT_TRUE(all_newer);
  std::printf("10 kills: every orphaned camera served again within %.1f s\n", worst_s);
  ExpectNothingLost(cluster, fleet);
}

}  // namespace
}  // namespace sd

namespace sd {
namespace {

using namespace sd::testing;

TEST(ClusterFailoverTest, PostgresRestartedMidRunLosesNothingAndCrashesNothing) {
  const std::string dir = TempDir("pg_restart");
  TestCluster cluster(dir, {{"cam1", "secret-token-1"}}, /*lease_ttl_s=*/3);
  cluster.StartReplica(0);
  cluster.StartProxy();
  auto config = ParseEdgeConfig(EdgeYaml("cam1", "secret-token-1", cluster.proxy_port(), dir + "/cam1", SyntheticUri(21)),
                                "cam1");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto agent = EdgeAgent::Create(*config);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  std::mutex mu;
  std::set<uint64_t> acked;
  std::vector<double> ack_times;
  const auto start = std::chrono::steady_clock::now();
  (*agent)->SetAckObserver([&](uint64_t sequence, int code) {
    if (code != 0) return;
    std::lock_guard<std::mutex> lock(mu);
    acked.insert(sequence);
    ack_times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  });
  std::thread run([&] { EXPECT_TRUE((*agent)->Run().ok()); });
  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  };
  ASSERT_TRUE(WaitFor([&] { return acked_count() >= 10; }, 60)) << cluster.ReplicaLog(0);

  PgTestCluster* pg = PgTestCluster::Get();
  const double stopped_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(pg->Stop());
  std::this_thread::sleep_for(std::chrono::seconds(5));
  const double restarted_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(pg->Start());
  const size_t before = acked_count();
  const bool resumed = WaitFor([&] { return acked_count() >= before + 10; }, 60);
  (*agent)->Stop();
  run.join();
  EXPECT_TRUE(resumed) << "no frame acked after PostgreSQL came back; replica log:\n" << cluster.ReplicaLog(0);

  // While it was down nothing was acked (an ack in flight may land just after the stop).
  int acked_while_down = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (double t : ack_times)
      if (t > stopped_at + 0.5 && t < restarted_at) ++acked_while_down;
  }
  EXPECT_EQ(acked_while_down, 0);
  const std::map<uint64_t, int> stored = cluster.StoredSequences("cam1");
  std::lock_guard<std::mutex> lock(mu);
  for (uint64_t sequence : acked) EXPECT_TRUE(stored.count(sequence)) << "acked frame " << sequence << " lost";
  for (const auto& [sequence, rows] : stored) EXPECT_EQ(rows, 1);
  EXPECT_EQ(cluster.ReplicaLog(0).find("Segmentation"), std::string::npos);
}

}  // namespace
}  // namespace sd
