#include "server/device_trainer.h"
#include "server/round_scheduler.h"

#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/video/synthetic_scene.h"

namespace sd {
namespace {

// Small enough that a round of a few dozen steps takes well under a second on one core.
StudentArchitecture TinyArch() {
  StudentArchitecture arch;
  arch.input_width = 128;
  arch.input_height = 96;
  arch.channels = {8, 8, 16, 16, 32};
  arch.num_classes = 1;
  return arch;
}

SyntheticScene Scene() {
  SyntheticSceneOptions o;
  o.width = 160;  // about 1.25x the student input, as the server stores frames
  o.height = 120;
  o.num_classes = 1;
  o.max_objects = 3;
  o.seed = 3;
  auto scene = SyntheticScene::Create(o);
  EXPECT_TRUE(scene.ok()) << scene.status().ToString();
  return std::move(scene).value();
}

// Frames [begin, end) with their exact ground truth as labels.
std::vector<LabelledFrame> Frames(const SyntheticScene& scene, int64_t begin, int64_t end, int64_t step = 1) {
  std::vector<LabelledFrame> frames;
  for (int64_t i = begin; i < end; i += step) {
    SyntheticFrame f = scene.Render(i);
    frames.push_back({i, f.bgr, f.ground_truth});
  }
  return frames;
}

RoundOptions Options(int iterations) {
  RoundOptions o;
  o.iterations = iterations;
  o.replay_frames = 200;
  o.max_map50_drop = 0.02;
  o.min_validation_frames = 5;
  o.trainer.batch_size = 8;
  o.trainer.learning_rate = 8e-3f;  // high for a fresh student: these rounds start from scratch
  o.trainer.warmup_steps = 5;
  o.trainer.seed = 5;
  return o;
}

std::unique_ptr<DeviceTrainer> MakeTrainer(const RoundOptions& options, const std::string& weights = "",
                                           uint64_t version = 0) {
  auto trainer = DeviceTrainer::Create("cam-1", TinyArch(), weights, version, options);
  EXPECT_TRUE(trainer.ok()) << trainer.status().ToString();
  return trainer.ok() ? std::move(trainer).value() : nullptr;
}

void Report(const char* name, const RoundResult& r) {
  std::printf("[ round    ] %s: %s v%llu mAP50 %.3f -> %.3f, %d train / %d val frames, loss %.3f, %.2f s (train %.2f s): %s\n",
              name, r.published ? "published" : "discarded", static_cast<unsigned long long>(r.version),
              r.map50_before, r.map50_after, r.train_frames, r.val_frames, r.final_loss, r.seconds, r.train_seconds,
              r.reason.c_str());
}

// Two rounds from fresh weights on learnable data, run once and shared by the tests that need
// a trained student (training is the slow part of this file).
struct LearnedRounds {
  std::vector<RoundResult> rounds;
  std::vector<std::string> weights;  // after each round
  std::vector<LabelledFrame> validation;
};

const LearnedRounds& Learned() {
  // Never destroyed: torch objects and static destruction order do not mix well.
  static const LearnedRounds* learned = [] {
    SetTorchThreads(1);
    auto* out = new LearnedRounds;
    const SyntheticScene scene = Scene();
    const std::vector<TrainingSample> train = ToTrainingSamples(Frames(scene, 0, 500, 2));
    out->validation = Frames(scene, 2000, 2040, 2);
    auto trainer = MakeTrainer(Options(60));
    if (trainer == nullptr) return out;
    out->weights.push_back(trainer->weights());
    for (int round = 0; round < 3; ++round) {
      auto result = trainer->RunRound(train, out->validation);
      EXPECT_TRUE(result.ok()) << result.status().ToString();
      if (!result.ok()) break;
      Report(("learnable " + std::to_string(round + 1)).c_str(), *result);
      out->rounds.push_back(*result);
      out->weights.push_back(trainer->weights());
    }
    return out;
  }();
  return *learned;
}

TEST(DeviceTrainerTest, LearnableRoundsPublishAndImprove) {
  const LearnedRounds& learned = Learned();
  ASSERT_EQ(learned.rounds.size(), 3u);
  for (size_t i = 0; i < learned.rounds.size(); ++i) {
    const RoundResult& r = learned.rounds[i];
    EXPECT_TRUE(r.published) << "round " << i + 1 << ": " << r.reason;
    EXPECT_EQ(r.version, i + 1);
    EXPECT_EQ(r.train_frames, 200);  // the replay horizon of the 250 given
    EXPECT_EQ(r.val_frames, 20);
    EXPECT_GT(r.seconds, 0);
    EXPECT_NE(learned.weights[i + 1], learned.weights[i]) << "round " << i + 1 << " changed nothing";
  }
  // Each round starts where the last one ended, and the student gets better every round.
  for (size_t i = 0; i < learned.rounds.size(); ++i) {
    if (i > 0) {
      EXPECT_DOUBLE_EQ(learned.rounds[i].map50_before, learned.rounds[i - 1].map50_after);
    }
    EXPECT_GT(learned.rounds[i].map50_after, learned.rounds[i].map50_before) << "round " << i + 1;
  }
  EXPECT_GT(learned.rounds.back().map50_after, 0.4);
  EXPECT_LT(learned.rounds.back().final_loss, learned.rounds.front().final_loss);
}

TEST(DeviceTrainerTest, ResumesFromStoredWeightsAndVersion) {
  // A restarted server resumes from the weights and version it stored.
  auto stored = StudentModel::Create(TinyArch(), 9);
  ASSERT_TRUE(stored.ok());
  const std::string bytes = (*stored)->SerializeWeights();
  auto trainer = MakeTrainer(Options(1), bytes, 3);
  ASSERT_NE(trainer, nullptr);
  EXPECT_EQ(trainer->device_id(), "cam-1");
  EXPECT_EQ(trainer->version(), 3u);
  EXPECT_EQ(trainer->weights(), bytes);
  EXPECT_EQ(WeightsChecksum(trainer->flat_weights()), WeightsChecksum((*stored)->FlatWeights()));
  EXPECT_EQ(trainer->published_map50(), -1);
}

TEST(DeviceTrainerTest, WorseCandidateIsDiscardedAndPublishedWeightsStay) {
  const LearnedRounds& learned = Learned();
  ASSERT_EQ(learned.weights.size(), 4u);
  const SyntheticScene scene = Scene();
  // Garbage labels: each frame gets the boxes of a frame far away, mirrored, so the targets
  // sit where nothing is.
  std::vector<LabelledFrame> frames = Frames(scene, 0, 120, 2);
  std::vector<TrainingSample> garbage;
  for (size_t i = 0; i < frames.size(); ++i) {
    Detections wrong = frames[(i + frames.size() / 2) % frames.size()].labels;
    for (Detection& d : wrong) d.box = Box{160 - d.box.x2, 120 - d.box.y2, 160 - d.box.x1, 120 - d.box.y1};
    garbage.push_back({frames[i].bgr, wrong});
  }
  RoundOptions options = Options(20);
  options.max_map50_drop = 0;
  auto trainer = MakeTrainer(options, learned.weights.back(), 3);
  ASSERT_NE(trainer, nullptr);
  const std::vector<float> flat_before = trainer->flat_weights();
  auto result = trainer->RunRound(garbage, learned.validation);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  Report("garbage", *result);
  EXPECT_FALSE(result->published);
  EXPECT_EQ(result->version, 3u);
  EXPECT_LT(result->map50_after, result->map50_before);
  EXPECT_DOUBLE_EQ(result->map50_before, learned.rounds.back().map50_after);
  EXPECT_NE(result->reason.find("drops more than"), std::string::npos) << result->reason;
  EXPECT_EQ(trainer->version(), 3u);
  EXPECT_EQ(trainer->weights(), learned.weights.back());
  EXPECT_EQ(WeightsChecksum(trainer->flat_weights()), WeightsChecksum(flat_before));
}

TEST(DeviceTrainerTest, ReadersSeeWholeVersionsWhileARoundRuns) {
  SetTorchThreads(1);
  const SyntheticScene scene = Scene();
  auto trainer = MakeTrainer(Options(5));
  ASSERT_NE(trainer, nullptr);
  const std::string v0 = trainer->weights();
  std::atomic<bool> done{false};
  std::vector<std::pair<uint64_t, std::string>> seen;
  // What the server's stream threads do while the training thread runs a round.
  std::thread reader([&] {
    while (!done) {
      const uint64_t before = trainer->version();
      std::string weights = trainer->weights();
      if (trainer->version() == before) seen.emplace_back(before, std::move(weights));
    }
  });
  auto result = trainer->RunRound(ToTrainingSamples(Frames(scene, 0, 10)), {});
  done = true;
  reader.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_TRUE(result->published);
  const std::string v1 = trainer->weights();
  ASSERT_FALSE(seen.empty());
  for (const auto& [version, weights] : seen) EXPECT_EQ(weights, version == 0 ? v0 : v1) << "version " << version;
}

TEST(DeviceTrainerTest, BootstrapsWithoutValidationFrames) {
  SetTorchThreads(1);
  const SyntheticScene scene = Scene();
  auto trainer = MakeTrainer(Options(3));
  ASSERT_NE(trainer, nullptr);
  EXPECT_EQ(trainer->version(), 0u);
  const std::string fresh = trainer->weights();
  auto result = trainer->RunRound(ToTrainingSamples(Frames(scene, 0, 10)), {});
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(result->published);
  EXPECT_EQ(result->version, 1u);
  EXPECT_EQ(result->map50_before, -1);
  EXPECT_EQ(result->map50_after, -1);
  EXPECT_EQ(result->train_frames, 10);
  EXPECT_NE(result->reason.find("bootstrapping"), std::string::npos) << result->reason;
  EXPECT_EQ(trainer->version(), 1u);
  EXPECT_NE(trainer->weights(), fresh);
}

TEST(DeviceTrainerTest, ReplayHorizonUsesTheNewestFrames) {
  SetTorchThreads(1);
  const SyntheticScene scene = Scene();
  RoundOptions options = Options(1);
  options.replay_frames = 4;
  auto trainer = MakeTrainer(options);
  ASSERT_NE(trainer, nullptr);
  // Old frames are unusable: if the horizon picked them, the round would fail.
  std::vector<TrainingSample> train(6, TrainingSample{cv::Mat(), {}});
  for (const LabelledFrame& f : Frames(scene, 0, 4)) train.push_back({f.bgr, f.labels});
  auto result = trainer->RunRound(train, {});
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->train_frames, 4);
}

TEST(DeviceTrainerTest, RejectsBadInputAndKeepsWeights) {
  SetTorchThreads(1);
  RoundOptions bad = Options(0);
  EXPECT_EQ(DeviceTrainer::Create("cam", TinyArch(), "", 0, bad).status().code(), Status::Code::kInvalidArgument);
  StudentArchitecture other = TinyArch();
  other.channels = {8, 8, 16, 16, 64};
  auto other_model = StudentModel::Create(other, 1);
  ASSERT_TRUE(other_model.ok());
  auto mismatched = DeviceTrainer::Create("cam", TinyArch(), (*other_model)->SerializeWeights(), 4, Options(1));
  ASSERT_FALSE(mismatched.ok());
  EXPECT_EQ(mismatched.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("device cam"), std::string::npos) << mismatched.status().ToString();
  EXPECT_FALSE(DeviceTrainer::Create("cam", TinyArch(), "garbage", 4, Options(1)).ok());

  auto trainer = MakeTrainer(Options(2));
  ASSERT_NE(trainer, nullptr);
  const std::string before = trainer->weights();
  auto empty = trainer->RunRound({}, {});
  EXPECT_EQ(empty.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(empty.status().message().find("cam-1"), std::string::npos) << empty.status().ToString();
  auto gray = trainer->RunRound({TrainingSample{cv::Mat(10, 10, CV_8UC1), {}}}, {});
  EXPECT_EQ(gray.status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(trainer->version(), 0u);
  EXPECT_EQ(trainer->weights(), before);
}

// ---------------------------------------------------------------------------------------------
// RoundScheduler.

TEST(SparseSelectionTest, KeepsTheLargestAndEveryStatistic) {
  const std::vector<float> magnitude = {0.1f, -5.0f, 0.0f, 3.0f, 0.2f, 0.0f, NAN, 4.0f};
  const std::vector<bool> stats = {false, false, false, false, false, true, false, false};
  // 7 candidates (index 5 is a statistic): ceil(0.3 x 7) = 3 of them.
  const std::vector<bool> selected = SparseSelection(magnitude, stats, 0.3);
  const std::vector<bool> expected = {false, true, false, true, false, true, false, true};
  EXPECT_EQ(selected, expected);
  EXPECT_EQ(SparseSelection(magnitude, {}, 0.0), std::vector<bool>(8, false));
}

// A sparse round changes at most the chosen fraction of the parameters (plus the BatchNorm
// statistics), still learns, and with an encoder the published weights are exactly what the
// encoder delivered.
TEST(DeviceTrainerTest, SparseRoundChangesOnlyItsFractionAndPublishesTheDelivered) {
  const SyntheticScene scene = Scene();
  const std::vector<TrainingSample> train = ToTrainingSamples(Frames(scene, 0, 300, 3));
  const std::vector<LabelledFrame> validation = Frames(scene, 2000, 2040, 2);
  const LearnedRounds& learned = Learned();
  ASSERT_FALSE(learned.weights.empty());
  RoundOptions options = Options(30);
  options.sparse_fraction = 0.05;
  options.trainer.learning_rate = 2e-3f;
  options.max_map50_drop = 1.0;  // this test is about what changes, not about the gate
  int encoder_calls = 0;
  UpdateEncoder halve_changes = [&](uint64_t base_version, const std::vector<float>& base,
                                    const std::vector<float>& candidate) {
    EXPECT_EQ(base_version, 1u);
    ++encoder_calls;
    DeliveredUpdate u{UpdateEncoding::kInt8, "payload", candidate};
    for (size_t k = 0; k < base.size(); ++k) u.delivered[k] = base[k] + 0.5f * (candidate[k] - base[k]);
    return StatusOr<DeliveredUpdate>(u);
  };
  auto trainer = DeviceTrainer::Create("cam-1", TinyArch(), learned.weights[1], 1, options, halve_changes);
  ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
  const std::vector<float> before = (*trainer)->flat_weights();
  auto model = StudentModel::FromBytes(learned.weights[1]);
  ASSERT_TRUE(model.ok());
  const std::vector<bool> stats = (*model)->StatisticsMask();
  int64_t parameters = 0, statistics = 0;
  for (bool s : stats) (s ? statistics : parameters) += 1;
  ASSERT_GT(statistics, 0);

  auto round = (*trainer)->RunRound(train, validation);
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  Report("sparse", *round);
  ASSERT_TRUE(round->published) << round->reason;
  EXPECT_EQ(encoder_calls, 1);
  EXPECT_EQ(round->update.encoding, UpdateEncoding::kInt8);
  EXPECT_EQ(round->update.payload, "payload");
  const std::vector<float> after = (*trainer)->flat_weights();
  EXPECT_EQ(after, round->update.delivered);
  int64_t changed_parameters = 0;
  for (size_t k = 0; k < after.size(); ++k) changed_parameters += !stats[k] && after[k] != before[k];
  EXPECT_GT(changed_parameters, 0);
  EXPECT_LE(changed_parameters, static_cast<int64_t>(std::ceil(0.05 * parameters)));
  EXPECT_LE(round->changed_weights, static_cast<int>(std::ceil(0.05 * parameters) + statistics));
}

// The device of the next round, or nullopt; the round ends at once (`map50` published).
std::optional<std::string> NextDone(RoundScheduler& scheduler, double now_s, double map50 = -1) {
  std::optional<ScheduledRound> round = scheduler.Next(now_s);
  if (!round) return std::nullopt;
  scheduler.RoundDone(round->device, map50, now_s);
  return round->device;
}

SchedulerOptions RoundRobin(int min_new_frames, double max_wait_s) {
  SchedulerOptions o;
  o.min_new_frames = min_new_frames;
  o.max_wait_s = max_wait_s;
  o.policy = SchedulePolicy::kRoundRobin;
  return o;
}

SchedulerOptions Benefit(int min_new_frames, double max_wait_s, int max_skips = 4) {
  SchedulerOptions o = RoundRobin(min_new_frames, max_wait_s);
  o.policy = SchedulePolicy::kBenefit;
  o.max_skips = max_skips;
  return o;
}

class EitherPolicy : public ::testing::TestWithParam<SchedulePolicy> {
 protected:
  SchedulerOptions Options(int min_new_frames, double max_wait_s) const {
    return GetParam() == SchedulePolicy::kBenefit ? Benefit(min_new_frames, max_wait_s)
                                                  : RoundRobin(min_new_frames, max_wait_s);
  }
};

TEST_P(EitherPolicy, NobodyIsScheduledWithoutNewFrames) {
  RoundScheduler scheduler(Options(20, 30));
  EXPECT_EQ(NextDone(scheduler, 0), std::nullopt);
  EXPECT_EQ(NextDone(scheduler, 1e6), std::nullopt);
  for (int i = 0; i < 19; ++i) scheduler.OnNewFrame("a", 1);
  EXPECT_EQ(NextDone(scheduler, 2), std::nullopt);  // too few, too soon
  scheduler.OnNewFrame("a", 3);
  EXPECT_EQ(NextDone(scheduler, 3), "a");
  EXPECT_EQ(scheduler.pending_frames("a"), 0);
  EXPECT_EQ(NextDone(scheduler, 3), std::nullopt);
  EXPECT_EQ(NextDone(scheduler, 1e6), std::nullopt);  // time alone is not work
  RoundScheduler fresh(Options(20, 30));
  fresh.OnNewFrame("b", 0);
  for (int i = 0; i < 20; ++i) fresh.OnNewFrame("b", 1);
  EXPECT_EQ(NextDone(fresh, 1), "b");  // round at t = 1
  fresh.OnNewFrame("b", 2);
  EXPECT_EQ(fresh.pending_frames("b"), 1);
  EXPECT_EQ(fresh.pending_frames("unknown"), 0);
  EXPECT_EQ(NextDone(fresh, 30.5), std::nullopt);
  EXPECT_EQ(NextDone(fresh, 31), "b");  // one frame, and max_wait_s since the last round
}

TEST_P(EitherPolicy, FirstFrameStartsTheWaitOfANewDevice) {
  RoundScheduler scheduler(Options(20, 30));
  scheduler.OnNewFrame("late", 100);
  EXPECT_EQ(NextDone(scheduler, 129), std::nullopt);
  EXPECT_EQ(NextDone(scheduler, 130), "late");
}

// The training pool asks again while a round runs: the device is not handed out twice, and
// the frames that came during its round are work for the next one.
TEST_P(EitherPolicy, RunningDeviceIsNotHandedOutAgain) {
  RoundScheduler scheduler(Options(2, 30));
  for (int i = 0; i < 2; ++i) scheduler.OnNewFrame("a", 0), scheduler.OnNewFrame("b", 0);
  std::optional<ScheduledRound> first = scheduler.Next(0);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->new_frames, 2);
  for (int i = 0; i < 2; ++i) scheduler.OnNewFrame(first->device, 1);
  std::optional<ScheduledRound> second = scheduler.Next(1);
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(second->device, first->device);
  EXPECT_EQ(scheduler.Next(1), std::nullopt);  // both running
  scheduler.RoundDone(first->device, 0.5, 1);
  EXPECT_EQ(NextDone(scheduler, 2), first->device);
}

TEST_P(EitherPolicy, ChattyDeviceDoesNotStarveQuietOne) {
  const SchedulerOptions options = Options(20, 30);
  RoundScheduler scheduler(options);
  std::map<std::string, int> rounds;
  std::map<std::string, double> last_round = {{"chatty", 0}, {"quiet", 0}};
  std::map<std::string, int> pending;
  double longest_quiet_wait = 0;
  // The chatty camera sends 10 frames a second, the quiet one a frame every 7 s; the trainer
  // finishes one round a second.
  for (int t = 0; t < 600; ++t) {
    for (int k = 0; k < 10; ++k) scheduler.OnNewFrame("chatty", t), ++pending["chatty"];
    if (t % 7 == 0) scheduler.OnNewFrame("quiet", t), ++pending["quiet"];
    std::optional<std::string> next = NextDone(scheduler, t, 0.5);
    if (!next) continue;
    EXPECT_GT(pending[*next], 0) << *next << " scheduled without new frames at t=" << t;
    pending[*next] = 0;
    ++rounds[*next];
    if (*next == "quiet") longest_quiet_wait = std::max(longest_quiet_wait, t - last_round["quiet"]);
    last_round[*next] = t;
  }
  // Chatty has work every other second (20 frames per 2 s); quiet has a frame within 7 s of
  // its last round and then waits out max_wait_s, so every 30-35 s.
  EXPECT_GE(rounds["chatty"], 280);
  EXPECT_GE(rounds["quiet"], 600 / 36);
  EXPECT_LE(longest_quiet_wait, options.max_wait_s + 7);
}

INSTANTIATE_TEST_SUITE_P(Policies, EitherPolicy, ::testing::Values(SchedulePolicy::kBenefit, SchedulePolicy::kRoundRobin),
                         [](const auto& info) {
                           return info.param == SchedulePolicy::kBenefit ? "benefit" : "round_robin";
                         });

TEST(RoundSchedulerTest, RoundRobinDevicesWithWorkTakeTurns) {
  RoundScheduler scheduler(RoundRobin(1, 30));
  std::vector<std::string> order;
  for (int t = 0; t < 6; ++t) {
    for (const char* d : {"a", "b", "c"}) scheduler.OnNewFrame(d, t);
    for (int k = 0; k < 2; ++k) order.push_back(NextDone(scheduler, t).value_or("-"));
  }
  // Two rounds per tick for three busy devices: nobody is served twice before the others once.
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "a", "b", "c", "a", "b", "c", "a", "b", "c"}));
}

// Automatic grouping replaced units: the new one has their new frames, the old ones are gone
// (their late RoundDone changes nothing), and the others keep theirs.
TEST(RoundSchedulerTest, RegroupedUnitsCarryTheirNewFramesOver) {
  RoundScheduler scheduler(RoundRobin(5, 1e6));
  for (int i = 0; i < 3; ++i) scheduler.OnNewFrame("a", 0), scheduler.OnNewFrame("b", 0), scheduler.OnNewFrame("c", 0);
  scheduler.Regrouped({{"group:auto1", {"a", "b"}}}, 1);
  EXPECT_EQ(scheduler.pending_frames("group:auto1"), 6);
  EXPECT_EQ(scheduler.pending_frames("a"), 0);
  EXPECT_EQ(scheduler.pending_frames("c"), 3);
  scheduler.RoundDone("a", 0.5, 2);
  auto next = scheduler.Next(2);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->device, "group:auto1");  // 6 new frames: due; c with 3 is not
  EXPECT_FALSE(scheduler.Next(2));
}

// An admin's pause keeps a device with work out; a request puts one below its thresholds first.
TEST(RoundSchedulerTest, APausedDeviceWaitsAndARequestedOneGoesFirst) {
  for (const SchedulerOptions& options : {RoundRobin(5, 30), Benefit(5, 30)}) {
    RoundScheduler s(options);
    for (int i = 0; i < 10; ++i) s.OnNewFrame("busy", 0), s.OnNewFrame("paused", 0);
    s.SetPaused("paused", true, 0);
    EXPECT_EQ(NextDone(s, 1), "busy");
    EXPECT_EQ(NextDone(s, 100), std::nullopt) << "a paused device is never handed out";
    EXPECT_EQ(s.pending_frames("paused"), 10) << "its frames still count";
    s.SetPaused("paused", false, 100);
    EXPECT_EQ(NextDone(s, 100), "paused");

    s.OnNewFrame("quiet", 100);  // 1 new frame, below 5, before max_wait
    for (int i = 0; i < 10; ++i) s.OnNewFrame("busy", 100);
    s.RequestRound("quiet", 100);
    EXPECT_EQ(NextDone(s, 100), "quiet");
    EXPECT_EQ(NextDone(s, 100), "busy");
    EXPECT_EQ(NextDone(s, 100), std::nullopt) << "a request is for one round";
    s.RequestRound("unseen", 100);  // a unit with stored frames but none new since the start
    EXPECT_EQ(NextDone(s, 100), "unseen");
  }
}

// Each signal on its own decides between two devices that are alike in everything else.
TEST(RoundSchedulerTest, BenefitPrefersTheDeviceThatGainsMost) {
  auto due = [](RoundScheduler& s, const std::string& device, int frames, double t, double score = 0.5) {
    for (int i = 0; i < frames; ++i) s.OnNewFrame(device, t, score);
  };
  {  // More new data.
    RoundScheduler s(Benefit(10, 30));
    due(s, "few", 10, 0), due(s, "many", 20, 0);
    EXPECT_GT(s.Benefit("many", 1), s.Benefit("few", 1));
    EXPECT_EQ(NextDone(s, 1), "many");
  }
  {  // A larger held-out mAP50 deficit; unknown (no scored version yet) first of all.
    RoundScheduler s(Benefit(1, 30));
    for (const char* d : {"good", "poor", "unknown"}) due(s, d, 1, 0);
    for (const char* d : {"good", "poor", "unknown"}) EXPECT_EQ(NextDone(s, 0), d);  // first rounds, in turn
    s.RoundDone("good", 0.9, 0);  // (RoundDone again only updates the score)
    s.RoundDone("poor", 0.3, 0);
    s.RoundDone("unknown", -1, 0);
    for (const char* d : {"good", "poor", "unknown"}) due(s, d, 1, 1);
    EXPECT_EQ(NextDone(s, 1, 0.2), "unknown");
    EXPECT_EQ(NextDone(s, 1, 0.3), "poor");
    EXPECT_EQ(NextDone(s, 1, 0.9), "good");
  }
  {  // Waiting longer.
    RoundScheduler s(Benefit(1, 30));
    due(s, "early", 1, 0), due(s, "late", 1, 20);
    EXPECT_EQ(NextDone(s, 25), "early");
  }
  {  // Drift: the edge student's image score has fallen.
    RoundScheduler s(Benefit(1, 30));
    due(s, "steady", 40, 0, 0.6);
    due(s, "drifting", 30, 0, 0.6), due(s, "drifting", 10, 0, 0.2);
    EXPECT_GT(s.Benefit("drifting", 1), s.Benefit("steady", 1) + 0.5);
    EXPECT_EQ(NextDone(s, 1), "drifting");
  }
}

// A device that always has lots of new data, a poor score and a falling image score cannot keep
// one with a single frame and a good score waiting for more than max_skips rounds.
TEST(RoundSchedulerTest, BenefitNeverStarvesADeviceWithWork) {
  const int max_skips = 3;
  RoundScheduler s(Benefit(1, 1000, max_skips));
  s.OnNewFrame("modest", 0, 0.5);
  ASSERT_EQ(NextDone(s, 0, 0.95), "modest");
  int skipped = 0, modest_rounds = 0;
  for (int round = 0; round < 200; ++round) {
    const double t = 1 + round * 0.01;
    for (int k = 0; k < 50; ++k) s.OnNewFrame("greedy", t, 0.9 - 0.004 * round);
    if (round % 2 == 0) s.OnNewFrame("modest", t, 0.5);
    if (s.pending_frames("modest") > 0) {
      std::optional<ScheduledRound> next = s.Next(t);
      ASSERT_TRUE(next.has_value());
      s.RoundDone(next->device, next->device == "modest" ? 0.95 : 0.1, t);
      if (next->device == "modest") {
        ++modest_rounds, skipped = 0;
      } else {
        ASSERT_LT(++skipped, max_skips + 1) << "modest waited more than max_skips rounds at round " << round;
      }
    } else {
      ASSERT_EQ(NextDone(s, t, 0.1), "greedy");
    }
  }
  EXPECT_GE(modest_rounds, 200 / 2 / (max_skips + 1));
}

TEST(RoundSchedulerTest, FewNewFramesMakeAShorterRoundWhileOthersWait) {
  SchedulerOptions o = Benefit(10, 30);
  auto round = [](int new_frames, int others_waiting) { return ScheduledRound{"cam", new_frames, others_waiting, {}}; };
  EXPECT_EQ(RoundIterations(60, round(10, 1), o), 60);
  EXPECT_EQ(RoundIterations(60, round(25, 1), o), 60);  // the configured iterations are the cap
  EXPECT_EQ(RoundIterations(60, round(5, 1), o), 30);
  EXPECT_EQ(RoundIterations(60, round(1, 3), o), 15);  // never under a quarter
  EXPECT_EQ(RoundIterations(1, round(1, 1), o), 1);
  EXPECT_EQ(RoundIterations(60, round(5, 0), o), 60);  // nobody waits: a full round costs no one
}

TEST(RoundSchedulerTest, NextCountsTheOtherDevicesWaiting) {
  RoundScheduler s(Benefit(1, 1000));
  s.OnNewFrame("a", 0, 0.5);
  s.OnNewFrame("b", 0, 0.5);
  s.OnNewFrame("c", 0, 0.5);
  auto first = s.Next(1);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->others_waiting, 2);
  auto second = s.Next(1);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->others_waiting, 1);  // the first is running, not waiting
  auto third = s.Next(1);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->others_waiting, 0);
}

}  // namespace
}  // namespace sd

namespace sd {
namespace {

// The fleet's shape (issue 11): 8 cameras, each sending a frame every 3 s from its own start,
// every 5th held out (not counted), 2 workers, rounds of 125-150 s. Every camera gets a round
// before any camera gets its third.
// Rounds much longer than max_wait_s (a loaded fleet server): a device whose round just ended
// has not been waiting; every device with work gets its first round before any gets a second.
// (With waiting counted from a round's start, the device just trained tied with one never
// trained, and the fleet's first run left a camera without a round for 10 minutes.)
TEST(RoundSchedulerTest, AfterALongRoundTheNeverTrainedComeFirst) {
  RoundScheduler s(Benefit(1, 20));
  for (const char* d : {"a", "b", "c"}) s.OnNewFrame(d, 0, 0.5);
  auto a = s.Next(1);
  ASSERT_TRUE(a.has_value());
  for (int k = 0; k < 5; ++k) s.OnNewFrame(a->device, 100, 0.5);  // more new data than the others
  s.RoundDone(a->device, -1, 400);  // no held-out frames yet: the score stays unknown
  std::set<std::string> served = {a->device};
  for (int k = 0; k < 2; ++k) {
    auto next = s.Next(400 + 400 * k);
    ASSERT_TRUE(next.has_value());
    EXPECT_EQ(served.count(next->device), 0u) << next->device << " got a second round first";
    served.insert(next->device);
    s.RoundDone(next->device, -1, 800 + 400 * k);
  }
}

// Devices passed over equally often: the one that gains most goes first, not the one seen
// first. (The fleet's per-camera run gave a camera its second round before two were trained.)
TEST(RoundSchedulerTest, AmongTheMostPassedOverTheLargestBenefitGoesFirst) {
  SchedulerOptions o = Benefit(1, 1e6);
  o.max_skips = 1;
  RoundScheduler s(o);
  s.OnNewFrame("trained", 0, 0.5);
  s.OnNewFrame("busy", 0, 0.5);
  ASSERT_EQ(NextDone(s, 1, 0.9), "trained");  // first seen; a good score: little left to gain
  s.OnNewFrame("trained", 2, 0.5);
  s.OnNewFrame("fresh", 2, 0.5);  // never trained
  ASSERT_EQ(NextDone(s, 3), "busy");  // passed over once; "trained" and "fresh" now once each
  s.OnNewFrame("busy", 3, 0.5);
  auto next = s.Next(5);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->device, "fresh") << "a trained device went before one never trained";
}

TEST(RoundSchedulerTest, EightCamerasOnTwoWorkersAllGetARoundEarly) {
  RoundScheduler s(Benefit(10, 20));
  const std::vector<std::string> cameras = {"mirror", "right", "cool", "left", "bright", "dark", "warm", "full"};
  std::map<std::string, int> rounds;
  std::map<std::string, int> sent;
  struct Running {
    std::string device;
    double ends = 0;
  };
  std::vector<std::optional<Running>> workers(2);
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> jitter(0, 3), length(125, 150), map50(0, 1);
  std::vector<double> next_frame;
  for (size_t i = 0; i < cameras.size(); ++i) next_frame.push_back(jitter(rng) * 3);
  bool third_before_all_first = false;
  for (double t = 0; t < 1200; t += 0.25) {
    for (size_t i = 0; i < cameras.size(); ++i) {
      if (t < next_frame[i]) continue;
      if (++sent[cameras[i]] % 5 != 0) s.OnNewFrame(cameras[i], t, 0.5);
      next_frame[i] += 2 + jitter(rng) * 2 / 3;
    }
    for (auto& w : workers) {
      if (w && t >= w->ends) {
        s.RoundDone(w->device, map50(rng), t);
        w.reset();
      }
      if (w) continue;
      auto next = s.Next(t);
      if (!next) continue;
      if (++rounds[next->device] == 3 && rounds.size() < cameras.size()) third_before_all_first = true;
      w = Running{next->device, t + length(rng)};
    }
  }
  EXPECT_FALSE(third_before_all_first);
  for (const std::string& c : cameras) EXPECT_GE(rounds[c], 2) << c;
}

}  // namespace
}  // namespace sd
