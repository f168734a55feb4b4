// For tests of automatic grouping on a real ServerCore: two synthetic scenes labelled by an
// oracle, a server config that groups by hand-called Regroup(), and rounds that make each
// device's first student its own.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/server_core.h"
#include "tests/daemon_test_util.h"
#include "tests/server_core_test_util.h"

namespace sd::testing {

constexpr int kFramesPerScene = 120;  // the oracle knows this many frames of each scene

struct Scenes {
  SyntheticScene street = TestScene(21);
  SyntheticScene other = TestScene(77, /*drift_at_frame=*/0);  // another background and lighting throughout
  TeacherFactory Oracle() const {
    return [scenes = std::vector<SyntheticScene>{street, other}]() -> StatusOr<std::unique_ptr<Teacher>> {
      return std::unique_ptr<Teacher>(std::make_unique<SyntheticOracleTeacher>(scenes, kFramesPerScene));
    };
  }
};

inline ServerConfig AutoConfig(const std::string& dir, const std::string& start = "alone") {
  auto config = ParseServerConfig(
      ServerYaml(dir, "grouping: {mode: auto, start: " + start +
                          ", every_s: 1000000, margin: 0.1, min_heldout_frames: 5, heldout_frames: 8}\n"),
      "auto.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  config->device_tokens["cam3"] = "secret-token-3";
  config->device_updates.clear();  // one encoding for all: a group's members share its updates
  config->train_in_background = false;
  config->threads_per_worker = 1;  // an OpenMP team of 2 spins at its barriers on cores shared with other work
  // Small batches at a high rate: students that tell the scenes apart within a few dozen steps.
  config->round.trainer.batch_size = 4;
  config->round.trainer.learning_rate = 0.01f;
  return *config;
}

// Steps of a round that makes a device's first student its own: enough to tell the scenes
// apart (measured: 0.84 on its scene, under 0.06 on the other after 2 rounds of 60), short
// enough for 2 cores shared with other work.
constexpr int kFirstRoundSteps = 40;
constexpr int kShortRoundSteps = 3;  // a round that only has to run

// A round of each device's unit, one after another.
inline void Train(ServerCore& core, const std::vector<std::string>& devices) {
  for (const std::string& device : devices) {
    auto round = core.RunRound(device, kFirstRoundSteps);
    ASSERT_TRUE(round.ok()) << device << ": " << round.status().ToString();
    ASSERT_TRUE(round->published) << device << ": " << round->reason;
  }
}

inline std::string GroupOf(const ServerCore& core, const std::string& device) {
  auto state = core.State(device);
  EXPECT_TRUE(state.ok()) << state.status().ToString();
  return state.ok() ? state->group : "?";
}

}  // namespace sd::testing
