// The server's training pool: rounds of different devices run at once on the workers, and a
// shutdown during them cancels every one and publishes nothing. A real ServerCore (labeller,
// SQLite store, trainers) on a tiny student and synthetic frames.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "server/server_core.h"
#include "tests/daemon_test_util.h"
#include "tests/server_core_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

ServerConfig PoolConfig(const std::string& dir, int iterations) {
  auto config = ParseServerConfig(ServerYaml(dir), "pool.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  config->training_workers = 2;
  config->threads_per_worker = 1;
  config->schedule.min_new_frames = 8;  // exactly the training frames each device gets below
  config->schedule.max_wait_s = 1e6;
  config->round.iterations = iterations;
  return *config;
}

// Polls the counters until `done` holds for every device (or the deadline passes).
bool WaitFor(const ServerCore& core, const std::vector<std::string>& devices, double seconds,
             const std::function<bool(const DeviceCounters&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds * TimeScale());
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (const std::string& d : devices) all = all && done(core.Counters(d));
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool Running(const DeviceCounters& c) { return c.round_start_s > c.round_end_s; }

const std::vector<std::string> kDevices = {"cam1", "cam2"};

// A core with 2 workers whose two devices have just become due (8 training frames each; the
// sequences 4 and 8 of the 10 sent are held out, validation_every 4), for rounds of `iterations`.
std::unique_ptr<ServerCore> CoreWithTwoDueDevices(const std::string& name, int iterations) {
  const SyntheticScene scene = TestScene(21);
  auto core = ServerCore::Create(PoolConfig(TempDir(name), iterations), Oracle(scene));
  EXPECT_TRUE(core.ok()) << core.status().ToString();
  if (!core.ok()) return nullptr;
  SendFrames(**core, scene, kDevices, 10);
  return std::move(core).value();
}

TEST(TrainingPoolTest, RoundsOfTwoDevicesRunAtOnce) {
  auto core = CoreWithTwoDueDevices("pool_overlap", 40);
  ASSERT_NE(core, nullptr);
  ASSERT_TRUE(WaitFor(*core, kDevices, 120, [](const DeviceCounters& c) { return c.published >= 1 && !Running(c); }));
  const DeviceCounters a = core->Counters("cam1"), b = core->Counters("cam2");
  std::printf("[ rounds   ] cam1 %.2f-%.2f s, cam2 %.2f-%.2f s\n", 0.0, a.round_end_s - a.round_start_s,
              b.round_start_s - a.round_start_s, b.round_end_s - a.round_start_s);
  EXPECT_EQ(a.rounds, 1);
  EXPECT_EQ(b.rounds, 1);
  EXPECT_EQ(a.published, 1);
  EXPECT_EQ(b.published, 1);
  // Each began before the other ended.
  EXPECT_LT(a.round_start_s, b.round_end_s);
  EXPECT_LT(b.round_start_s, a.round_end_s);
}

TEST(TrainingPoolTest, ShutdownDuringConcurrentRoundsPublishesNothing) {
  auto core = CoreWithTwoDueDevices("pool_shutdown", 1000000);  // rounds that never end by themselves
  ASSERT_NE(core, nullptr);
  ASSERT_TRUE(WaitFor(*core, kDevices, 60, Running)) << "both rounds never ran at once";
  const auto shutdown = std::chrono::steady_clock::now();
  core->BeginShutdown();
  ASSERT_TRUE(WaitFor(*core, kDevices, 30, [](const DeviceCounters& c) { return !Running(c); }));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - shutdown).count(), 10 * TimeScale())
      << "rounds did not stop at their next step";
  for (const std::string& device : kDevices) {
    EXPECT_EQ(core->Counters(device).published, 0) << device;
    EXPECT_EQ(core->store().LatestVersion(device).status().code(), Status::Code::kNotFound) << device;
    auto latest = core->LatestUpdate(device);
    ASSERT_TRUE(latest.ok());
    EXPECT_EQ(*latest, nullptr) << device;
  }
}

// A group (CSBAD's shared student): one round trains on the frames of both members, and the
// version goes to each of them, stored for each, so that a restart resumes both at it.
TEST(TrainingPoolTest, AGroupTrainsOneStudentOnItsMembersFramesForAllOfThem) {
  const std::string dir = TempDir("pool_group");
  const SyntheticScene scene = TestScene(21);
  auto parsed = ParseServerConfig(ServerYaml(dir, "groups:\n  pair: [cam1, cam2]\n"), "group.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ServerConfig config = *parsed;
  config.train_in_background = false;
  config.schedule.min_new_frames = 8;
  config.schedule.max_wait_s = 1e6;
  {
    auto core = ServerCore::Create(config, Oracle(scene));
    ASSERT_TRUE(core.ok()) << core.status().ToString();
    SendFrames(**core, scene, kDevices, 10);  // 8 training and 2 held-out frames each
    auto round = (*core)->RunScheduledRound();
    ASSERT_TRUE(round.ok()) << round.status().ToString();
    ASSERT_TRUE(round->has_value());
    EXPECT_EQ((*round)->train_frames, 16);
    EXPECT_EQ((*round)->val_frames, 4);
    ASSERT_TRUE((*round)->published) << (*round)->reason;
    auto again = (*core)->RunScheduledRound();  // both members' frames went into that round
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_FALSE(again->has_value());
    std::string checksum;
    for (const std::string& device : kDevices) {
      EXPECT_EQ((*core)->Counters(device).rounds, 1) << device;
      auto stored = (*core)->store().LatestVersion(device);
      ASSERT_TRUE(stored.ok()) << device << ": " << stored.status().ToString();
      EXPECT_EQ(stored->version, 1u);
      auto latest = (*core)->LatestUpdate(device);
      ASSERT_TRUE(latest.ok() && *latest);
      EXPECT_EQ((*latest)->new_version, 1u);
      if (checksum.empty()) checksum = (*latest)->weights_checksum;
      EXPECT_EQ((*latest)->weights_checksum, checksum) << device << " got other weights";
    }
  }
  auto restarted = ServerCore::Create(config, Oracle(scene));
  ASSERT_TRUE(restarted.ok()) << restarted.status().ToString();
  for (const std::string& device : kDevices) {
    auto latest = (*restarted)->LatestUpdate(device);
    ASSERT_TRUE(latest.ok() && *latest) << device;
    EXPECT_EQ((*latest)->new_version, 1u) << device;
  }
}

}  // namespace
}  // namespace sd
