// Automatic grouping (CSBAD's shared students, grouping.mode auto): the decision on given
// transfer scores, and a real ServerCore (labeller, SQLite store, trainers) whose cameras see
// synthetic scenes, grouped and split by how well their students transfer.
#include <gtest/gtest.h>

#include "server/grouping.h"
#include "server/server_core.h"
#include "tests/auto_grouping_util.h"

namespace sd {
namespace {

using namespace sd::testing;

using Groups = std::vector<std::vector<std::string>>;

UnitScores Unit(std::vector<std::string> members, std::map<std::string, double> map50, bool comparable = true) {
  return UnitScores{std::move(members), std::move(map50), comparable};
}

TEST(DecideGroupsTest, DevicesWhoseStudentsTransferWithinTheMarginMerge) {
  // a and b serve each other within 0.05; c is served badly by both and serves them badly.
  const std::vector<UnitScores> units = {Unit({"a"}, {{"a", 0.80}, {"b", 0.76}, {"c", 0.20}}),
                                         Unit({"b"}, {{"a", 0.78}, {"b", 0.79}, {"c", 0.25}}),
                                         Unit({"c"}, {{"a", 0.30}, {"b", 0.35}, {"c", 0.70}})};
  const GroupingDecision decision = DecideGroups(units, 0.05);
  EXPECT_EQ(decision.groups, (Groups{{"a", "b"}, {"c"}}));
  EXPECT_TRUE(decision.split_off.empty());
  ASSERT_EQ(decision.reasons.size(), 1u);
}

TEST(DecideGroupsTest, TheStudentThatServesTheMostTakesThemAndNoOneItServesBadly) {
  // b's student serves a and c within 0.05 of their own; a's serves only b. d is served by no
  // one: b's student finds little there.
  const std::vector<UnitScores> units = {
      Unit({"a"}, {{"a", 0.80}, {"b", 0.78}, {"c", 0.40}, {"d", 0.10}}),
      Unit({"b"}, {{"a", 0.79}, {"b", 0.80}, {"c", 0.79}, {"d", 0.20}}),
      Unit({"c"}, {{"a", 0.40}, {"b", 0.77}, {"c", 0.80}, {"d", 0.10}}),
      Unit({"d"}, {{"a", 0.10}, {"b", 0.10}, {"c", 0.10}, {"d", 0.60}})};
  const GroupingDecision decision = DecideGroups(units, 0.05);
  EXPECT_EQ(decision.groups, (Groups{{"a", "b", "c"}, {"d"}}));
  EXPECT_EQ(decision.seeds, (std::vector<std::string>{"b", ""})) << "the group starts from b's student";
}

TEST(DecideGroupsTest, AWeakCameraJoinsAStudentThatServesItButNotOneThatFindsNothingThere) {
  // a's student is good; b's (0.10) and c's (0.04) are weak. a's student scores 0.60 on b's
  // frames: b gains by joining. On c's frames it finds 0.02: no better than c's own, but nothing,
  // so c stays alone.
  const std::vector<UnitScores> units = {Unit({"a"}, {{"a", 0.80}, {"b", 0.60}, {"c", 0.02}}),
                                         Unit({"b"}, {{"a", 0.10}, {"b", 0.10}, {"c", 0.00}}),
                                         Unit({"c"}, {{"a", 0.00}, {"b", 0.00}, {"c", 0.04}})};
  EXPECT_EQ(DecideGroups(units, 0.05).groups, (Groups{{"a", "b"}, {"c"}}));
}

TEST(DecideGroupsTest, AStudentNotYetItsOwnTakesNoOne) {
  // b's student is a copy (a split's, or untrained): however well it scores, it takes no one.
  const std::vector<UnitScores> units = {Unit({"a"}, {{"a", 0.5}, {"b", 0.0}}, /*comparable=*/false),
                                         Unit({"b"}, {{"a", 0.8}, {"b", 0.8}}, /*comparable=*/false)};
  EXPECT_EQ(DecideGroups(units, 0.05).groups, (Groups{{"a"}, {"b"}}));
}

TEST(DecideGroupsTest, StudentsThatLearntNothingDoNotMerge) {
  // Trained, but no better than the margin on their own frames: alike only in scoring nothing.
  const std::vector<UnitScores> units = {Unit({"a"}, {{"a", 0.02}, {"b", 0.0}}), Unit({"b"}, {{"a", 0.0}, {"b", 0.03}})};
  EXPECT_EQ(DecideGroups(units, 0.05).groups, (Groups{{"a"}, {"b"}}));
}

TEST(DecideGroupsTest, AMemberFarBelowTheOthersIsSplitOff) {
  const std::vector<UnitScores> units = {Unit({"a", "b", "c"}, {{"a", 0.80}, {"b", 0.78}, {"c", 0.30}})};
  const GroupingDecision decision = DecideGroups(units, 0.1);
  EXPECT_EQ(decision.groups, (Groups{{"a", "b"}, {"c"}}));
  EXPECT_EQ(decision.split_off, std::vector<std::string>{"c"});
  ASSERT_FALSE(decision.reasons.empty());
  EXPECT_NE(decision.reasons.front().find("0.300"), std::string::npos) << decision.reasons.front();
}

// ---------------------------------------------------------------------------------------------
// A real core.

TEST(AutoGroupingTest, TwoCamerasOfOneSceneShareAStudentAndTheThirdTrainsAlone) {
  const Scenes scenes;
  auto core = ServerCore::Create(AutoConfig(TempDir("auto_group_three")), scenes.Oracle());
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  SendFrames(**core, scenes.street, {"cam1", "cam2"}, 40);  // 30 training, 10 held-out frames each
  SendFrames(**core, scenes.other, {"cam3"}, 40);
  // Before any student is a device's own, nothing merges: everyone starts alone.
  ASSERT_TRUE((*core)->Regroup().ok());
  for (const std::string device : {"cam1", "cam2", "cam3"}) EXPECT_EQ(GroupOf(**core, device), "") << device;

  Train(**core, {"cam1", "cam2", "cam3"});
  ASSERT_TRUE((*core)->Regroup().ok());
  const std::string group = GroupOf(**core, "cam1");
  EXPECT_NE(group, "");
  EXPECT_EQ(GroupOf(**core, "cam2"), group);
  EXPECT_EQ(GroupOf(**core, "cam3"), "");

  // The group trains one student on both cameras' frames and publishes it to both.
  auto round = (*core)->RunRound("cam1", kShortRoundSteps);
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_EQ(round->train_frames, 60);
  if (round->published) {
    auto a = (*core)->LatestUpdate("cam1"), b = (*core)->LatestUpdate("cam2");
    ASSERT_TRUE(a.ok() && *a && b.ok() && *b);
    EXPECT_EQ((*a)->new_version, (*b)->new_version);
    EXPECT_EQ((*a)->weights_checksum, (*b)->weights_checksum);
  }
}

TEST(AutoGroupingTest, ACameraWhoseSceneChangesIsSplitOffItsGroup) {
  const Scenes scenes;
  auto core = ServerCore::Create(AutoConfig(TempDir("auto_group_split")), scenes.Oracle());
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  SendFrames(**core, scenes.street, {"cam1", "cam2"}, 40);
  Train(**core, {"cam1", "cam2"});
  ASSERT_TRUE((*core)->Regroup().ok());
  const std::string group = GroupOf(**core, "cam1");
  ASSERT_NE(group, "");
  ASSERT_EQ(GroupOf(**core, "cam2"), group);
  const uint64_t group_version = (*core)->State("cam2")->version;

  // cam2 now looks at another scene: its newest held-out frames (8 of the 10 below) are of it.
  SendFrames(**core, scenes.other, {"cam2"}, 40, /*first=*/41);
  ASSERT_TRUE((*core)->Regroup().ok());
  EXPECT_EQ(GroupOf(**core, "cam2"), "");
  EXPECT_NE(GroupOf(**core, "cam2"), group);
  // It continues from the group's student, and trains on its own frames from there.
  EXPECT_EQ((*core)->State("cam2")->version, group_version);
  auto round = (*core)->RunRound("cam2", kShortRoundSteps);
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_EQ(round->train_frames, 60);
}

// grouping.start together (the default): the cameras of server.yaml start as one group, so the
// first version reaches them all at once, trained on all their frames.
TEST(AutoGroupingTest, CamerasStartTogetherAndShareTheFirstRound) {
  const Scenes scenes;
  auto core = ServerCore::Create(AutoConfig(TempDir("auto_group_together"), "together"), scenes.Oracle());
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  for (const std::string device : {"cam1", "cam2", "cam3"}) EXPECT_EQ(GroupOf(**core, device), "all") << device;
  SendFrames(**core, scenes.street, {"cam1", "cam2"}, 40);
  SendFrames(**core, scenes.other, {"cam3"}, 40);
  auto round = (*core)->RunRound("cam1", kFirstRoundSteps);
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_EQ(round->train_frames, 90) << "one student on the three cameras' frames";
  ASSERT_TRUE(round->published) << round->reason;
  for (const std::string device : {"cam1", "cam2", "cam3"}) {
    auto update = (*core)->LatestUpdate(device);
    ASSERT_TRUE(update.ok() && *update) << device;
    EXPECT_EQ((*update)->new_version, 1u) << device;
  }
  // The two cameras of one scene score alike on the shared student: a regroup keeps them together.
  ASSERT_TRUE((*core)->Regroup().ok());
  const std::string group = GroupOf(**core, "cam1");
  EXPECT_NE(group, "");
  EXPECT_EQ(GroupOf(**core, "cam2"), group);
}

}  // namespace
}  // namespace sd
