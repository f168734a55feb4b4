// bench/memory_rounds.h: the server's rounds replayed on a stream whose scene changes, with and
// without the long-term memory, each round's student scored on every condition's frames.
#include "bench/memory_rounds.h"

#include <gtest/gtest.h>

#include "common/vision/appearance.h"
#include "common/student/student.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

constexpr int kDriftAt = 100;  // the scene's frames 0-99 before its change, 100-299 after

StudentArchitecture TinyStudent() {
  StudentArchitecture arch;
  arch.input_width = 128;
  arch.input_height = 96;
  arch.num_classes = 1;
  arch.channels = {8, 16, 32, 32, 64};
  return arch;
}

std::vector<LabelledFrame> Eval(const SyntheticScene& scene, int begin, int end, int stride) {
  std::vector<LabelledFrame> out;
  for (int i = begin; i < end; i += stride) {
    SyntheticFrame f = scene.Render(i);
    out.push_back({i, f.bgr, f.ground_truth});
  }
  return out;
}

TEST(MemoryRoundsTest, EveryRoundIsScoredOnEveryConditionWithAndWithoutTheMemory) {
  const SyntheticScene scene = TestScene(21, kDriftAt);
  std::vector<ReceivedFrame> received;
  auto add = [&](int begin, int end, const std::string& condition) {
    for (int i = begin; i < end; ++i) {
      SyntheticFrame f = scene.Render(i);
      received.push_back({TrainingSample{f.bgr, f.ground_truth}, AppearanceEmbedding(f.bgr), condition});
    }
  };
  add(0, 60, "before");
  add(kDriftAt, kDriftAt + 60, "after");
  const std::map<std::string, std::vector<LabelledFrame>> eval = {{"before", Eval(scene, 60, kDriftAt, 4)},
                                                                  {"after", Eval(scene, 200, 300, 10)}};
  auto model = StudentModel::Create(TinyStudent(), 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::string start = (*model)->SerializeWeights();

  MemoryRunOptions options;
  options.round_every = 30;
  options.round.iterations = 6;
  options.round.min_validation_frames = 3;
  options.round.trainer.batch_size = 4;
  options.round.trainer.total_steps = 6;
  options.round.trainer.warmup_steps = 1;
  options.windows.replay_frames = 20;
  options.windows.validation_frames = 4;
  for (const int memory : {0, 8}) {
    SCOPED_TRACE("memory_frames " + std::to_string(memory));
    options.windows.memory_frames = memory;
    options.windows.longterm_validation_frames = memory;
    auto rounds = ReplayWithMemory(start, received, options, eval);
    ASSERT_TRUE(rounds.ok()) << rounds.status().ToString();
    ASSERT_EQ(rounds->size(), 4u);  // after 30, 60, 90, 120 frames
    EXPECT_EQ((*rounds)[1].condition, "before");
    EXPECT_EQ((*rounds)[3].condition, "after");
    for (const MemoryRoundRecord& r : *rounds) {
      ASSERT_EQ(r.map50.size(), 2u);
      for (const auto& [name, map50] : r.map50) EXPECT_TRUE(map50 >= 0 && map50 <= 1) << name << " " << map50;
      EXPECT_FALSE(r.reason.empty());
    }
    // The last round (60 frames of each scene received) has a long-term set only with memory.
    const bool judged_on_the_past = (*rounds)[3].reason.find("long-term") != std::string::npos;
    EXPECT_EQ(judged_on_the_past, memory > 0) << (*rounds)[3].reason;
  }
}

}  // namespace
}  // namespace sd
