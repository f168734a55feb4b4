// The server binary is killed with SIGKILL mid-stream and started again: every frame it had
// acked is still in its store, the edge reconnects by itself, and versions keep rising.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "edge/edge_agent.h"
#include "server/frame_store.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"

extern char** environ;

namespace sd {
namespace {

using namespace sd::testing;

pid_t StartServer(const std::string& config, const std::string& log) {
  const std::string binary = std::string(SD_BINARY_DIR) + "/streamdistill-server";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<std::string> args = {binary, "--config", config};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

std::set<uint64_t> StoredSequences(const std::string& storage_dir) {
  auto store = FrameStore::Open(storage_dir);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  std::set<uint64_t> stored;
  if (!store.ok()) return stored;
  auto frames = (*store)->Since("cam1", 0, 1 << 20);
  EXPECT_TRUE(frames.ok());
  for (const FrameRecord& f : *frames) stored.insert(f.sequence);
  return stored;
}

TEST(DaemonRestartTest, SigkilledServerKeepsAckedFramesAndEdgeCarriesOn) {
  const std::string dir = TempDir("restart");
  const int port = FreePort();
  std::string yaml = QuickOpenRounds(ServerYaml(dir + "/server"));
  yaml.replace(yaml.find("listen: 127.0.0.1:0"), 19, "listen: 127.0.0.1:" + std::to_string(port));
  const std::string server_config = dir + "/server.yaml";
  std::ofstream(server_config) << yaml;
  const std::string log = dir + "/server.log";

  pid_t server = StartServer(server_config, log);
  auto edge_config = ParseEdgeConfig(EdgeYaml("cam1", "secret-token-1", port, dir + "/cam1", SyntheticUri(5)), "e");
  ASSERT_TRUE(edge_config.ok()) << edge_config.status().ToString();
  auto agent = EdgeAgent::Create(*edge_config);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  std::mutex mu;
  std::set<uint64_t> acked;
  int rejected = 0;
  (*agent)->SetAckObserver([&](uint64_t sequence, int code) {
    std::lock_guard<std::mutex> lock(mu);
    if (code == 0) acked.insert(sequence);
    else ++rejected;
  });
  std::thread run([&] { EXPECT_TRUE((*agent)->Run().ok()); });

  ASSERT_TRUE(WaitFor([&] { return (*agent)->stats().model_version >= 1 && (*agent)->stats().uplink.frames_acked >= 20; }, 90))
      << "no version before the kill; server log: " << log;
  const uint64_t version_before = (*agent)->stats().model_version;
  ASSERT_EQ(kill(server, SIGKILL), 0);
  int status = 0;
  waitpid(server, &status, 0);
  std::set<uint64_t> acked_before_kill;
  {
    std::lock_guard<std::mutex> lock(mu);
    acked_before_kill = acked;
  }
  const std::set<uint64_t> stored = StoredSequences(dir + "/server");
  for (uint64_t sequence : acked_before_kill) EXPECT_TRUE(stored.count(sequence)) << "acked frame " << sequence << " lost";

  std::this_thread::sleep_for(std::chrono::seconds(1));  // the edge runs on without its server
  server = StartServer(server_config, log);
  const bool rose = WaitFor([&] { return (*agent)->stats().model_version > version_before; }, 90);
  const EdgeStats stats = (*agent)->stats();
  (*agent)->Stop();
  run.join();
  kill(server, SIGTERM);
  waitpid(server, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "server did not exit cleanly on SIGTERM";

  EXPECT_TRUE(rose) << "version stayed at " << stats.model_version << "; server log: " << log;
  EXPECT_GE(stats.uplink.connects, 2) << "the edge did not reconnect";
  EXPECT_EQ(rejected, 0);
  const std::set<uint64_t> stored_after = StoredSequences(dir + "/server");
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_GT(acked.size(), acked_before_kill.size());
  for (uint64_t sequence : acked) EXPECT_TRUE(stored_after.count(sequence)) << "acked frame " << sequence << " lost";
}

}  // namespace
}  // namespace sd
