// Admin actions while automatic grouping moves the device they name. Regroup replaces a
// device's training unit; pause, resume and "train now" look that unit up at the same time.
// Each must see either the unit before or the unit after, never a half-replaced pointer or a
// unit already freed. Run under ThreadSanitizer in CI (scripts/sanitize.sh tsan): before the
// training pool owned the device-to-unit map, SetPaused and RequestRound read Device::unit
// holding only the admin lock while Regroup wrote it under the device's lock, and TSan reported
// that race here.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/auto_grouping_util.h"

namespace sd {
namespace {

using namespace sd::testing;

TEST(RegroupRaceTest, AdminActionsDuringARegroupThatMovesTheDeviceSeeOneUnitAndStick) {
  const Scenes scenes;
  auto core = ServerCore::Create(AutoConfig(TempDir("regroup_race")), scenes.Oracle());
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  ServerCore& server = **core;
  SendFrames(server, scenes.street, {"cam1", "cam2"}, 40);
  Train(server, {"cam1", "cam2"});
  ASSERT_EQ(GroupOf(server, "cam1"), "") << "alone before the regroup";

  // An operator resumes, asks for a round of and pauses cam1 over and over while the regroup
  // runs (so that the loop ends paused); the regroup is started once the operator has begun.
  std::atomic<bool> regrouped{false};
  std::atomic<int> actions{0}, failures{0};
  std::thread admin([&] {
    while (!regrouped) {
      const Status resumed = server.SetPaused("cam1", false, "race-test");
      // FailedPrecondition is a valid answer (a paused unit); anything else is not.
      const Status requested = server.RequestRound("cam1", "race-test");
      const Status paused = server.SetPaused("cam1", true, "race-test");
      if (!paused.ok() || !resumed.ok() ||
          (!requested.ok() && requested.code() != Status::Code::kFailedPrecondition))
        ++failures;
      ++actions;
    }
  });
  while (actions == 0) std::this_thread::yield();
  const Status regroup = server.Regroup();
  regrouped = true;
  admin.join();
  ASSERT_TRUE(regroup.ok()) << regroup.ToString();
  EXPECT_GT(actions.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  const std::string group = GroupOf(server, "cam1");
  ASSERT_NE(group, "") << "the regroup moved cam1 into a group";
  EXPECT_EQ(GroupOf(server, "cam2"), group);

  // The pause followed cam1 into its new unit, in the scheduler itself: the group has 60 new
  // frames, so only a pause keeps its round from being handed out.
  EXPECT_TRUE(server.State("cam1")->admin.paused);
  auto none = server.RunScheduledRound();
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value()) << "the group pauses while any member is";
  EXPECT_EQ(server.RequestRound("cam2", "race-test").code(), Status::Code::kFailedPrecondition);
  ASSERT_TRUE(server.SetPaused("cam1", false, "race-test").ok());
  auto round = server.RunScheduledRound();
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  ASSERT_TRUE(round->has_value()) << "resumed, the group's round runs";
  EXPECT_EQ((*round)->train_frames, 60) << "on both members' frames";
}

}  // namespace
}  // namespace sd
