// The sampling budget apart from the strategy's choice (issue 26): the edge's controller
// (down while the teacher agrees, up at once on a fall or a new scene, the server's bound), the
// scene watch, the samplers under a moving budget, the config checks, the server's sharing of
// its labellers, and one server flooded by more cameras than its labeller serves, over gRPC.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/clock.h"
#include "common/teacher/teacher.h"
#include "edge/budget_controller.h"
#include "edge/edge_config.h"
#include "edge/sampler.h"
#include "server/label_budget.h"
#include "server/server.h"
#include "server/server_config.h"
#include "tests/fake_clock.h"
#include "tests/protocol_client.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

BudgetOptions Adaptive() {
  BudgetOptions o;
  o.floor_per_minute = 4;
  o.ceiling_per_minute = 20;
  return o.Resolved(20);
}

TEST(BudgetControllerTest, FallsToTheFloorWhileTheTeacherAgreesAndNeverBelow) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  EXPECT_EQ(budget.reason(), BudgetReason::kStart);
  double previous = budget.Effective();
  for (int i = 0; i < 100; ++i) {
    budget.OnAgreement(0.9);
    EXPECT_LE(budget.Effective(), previous);
    EXPECT_GE(budget.Effective(), 4);
    previous = budget.Effective();
  }
  EXPECT_DOUBLE_EQ(budget.Effective(), 4);
  EXPECT_DOUBLE_EQ(budget.Requested(), 4);
  EXPECT_EQ(budget.reason(), BudgetReason::kAgreement);
  EXPECT_GT(budget.changes()[static_cast<size_t>(BudgetReason::kAgreement)], 5);
}

TEST(BudgetControllerTest, DisagreementKeepsTheCeiling) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  for (int i = 0; i < 50; ++i) budget.OnAgreement(0.45);  // between low and target: held
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  for (int i = 0; i < 50; ++i) budget.OnAgreement(0.0);  // an untrained student
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
}

TEST(BudgetControllerTest, RisesAtOnceWhenTheAgreementFallsThenHoldsBeforeFallingAgain) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  for (int i = 0; i < 100; ++i) budget.OnAgreement(0.9);
  ASSERT_DOUBLE_EQ(budget.Effective(), 4);
  // The scene the student knew is gone: its detections no longer match the teacher's.
  int reports = 0;
  while (budget.Effective() < 20 && reports < 10) {
    budget.OnAgreement(0.2);
    ++reports;
  }
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  EXPECT_LE(reports, 4) << "the budget must rise within a few frames of the fall";
  EXPECT_EQ(budget.reason(), BudgetReason::kAgreementFell);
  // Agreeing again at once does not lower it within hold_s...
  for (int i = 0; i < 20; ++i) budget.OnAgreement(0.9);
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  // ...but after it, it does.
  clock.Advance(31);
  budget.OnAgreement(0.9);
  EXPECT_LT(budget.Effective(), 20);
}

TEST(BudgetControllerTest, AFallRelativeToTheCamerasOwnLevelRaisesToo) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  for (int i = 0; i < 100; ++i) budget.OnAgreement(0.95);
  ASSERT_DOUBLE_EQ(budget.Effective(), 4);
  // 0.5 is above agreement_low, but 0.45 below where this camera was.
  for (int i = 0; i < 6; ++i) budget.OnAgreement(0.5);
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
}

TEST(BudgetControllerTest, SceneChangeRaisesToTheCeiling) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  for (int i = 0; i < 100; ++i) budget.OnAgreement(0.9);
  ASSERT_DOUBLE_EQ(budget.Effective(), 4);
  budget.OnSceneChange();
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  EXPECT_EQ(budget.reason(), BudgetReason::kSceneChange);
  EXPECT_EQ(budget.changes()[static_cast<size_t>(BudgetReason::kSceneChange)], 1);
}

TEST(BudgetControllerTest, TheServersBudgetBoundsItAndIsAskedFor) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  budget.OnServerBudget(3);
  EXPECT_DOUBLE_EQ(budget.Effective(), 3);
  EXPECT_DOUBLE_EQ(budget.Requested(), 20);  // what the edge asks the server for
  EXPECT_EQ(budget.reason(), BudgetReason::kServer);
  budget.OnServerBudget(50);
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  budget.OnServerBudget(0);  // no bound
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  budget.OnServerBudget(std::numeric_limits<double>::quiet_NaN());
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
}

TEST(BudgetControllerTest, AgreementOutsideZeroToOneFromAHostilePeerIsIgnored) {
  FakeClock clock(100);
  BudgetController budget(Adaptive(), 20, &clock);
  budget.OnAgreement(0.3);
  const double smoothed = budget.smoothed_agreement();
  for (double bad : {5.0, 1.0001, -0.5, -1e9, std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN()}) {
    for (int i = 0; i < 50; ++i) budget.OnAgreement(bad);
  }
  EXPECT_DOUBLE_EQ(budget.smoothed_agreement(), smoothed);
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  budget.OnAgreement(-1);  // the protocol's unknown
  EXPECT_DOUBLE_EQ(budget.smoothed_agreement(), smoothed);
}

TEST(BudgetControllerTest, FixedModeNeverMovesButTheServerStillBoundsIt) {
  FakeClock clock(100);
  BudgetOptions o = Adaptive();
  o.mode = BudgetMode::kFixed;
  BudgetController budget(o, 20, &clock);
  for (int i = 0; i < 100; ++i) budget.OnAgreement(1.0);
  budget.OnSceneChange();
  EXPECT_DOUBLE_EQ(budget.Effective(), 20);
  budget.OnServerBudget(5);
  EXPECT_DOUBLE_EQ(budget.Effective(), 5);
}

TEST(BudgetOptionsTest, DerivedValuesComeFromTheSamplingBudget) {
  BudgetOptions o;
  const BudgetOptions r = o.Resolved(30);
  EXPECT_DOUBLE_EQ(r.ceiling_per_minute, 30);
  EXPECT_DOUBLE_EQ(r.floor_per_minute, 6);
  EXPECT_TRUE(r.Validate().ok());
  EXPECT_EQ(o.Resolved(0).mode, BudgetMode::kFixed);  // no rate limit: nothing to adapt
}

// Frames of one look with a person-sized patch walking across, then another look.
cv::Mat SceneFrame(int i, bool dusk) {
  cv::Mat frame(240, 320, CV_8UC3, dusk ? cv::Scalar(40, 30, 30) : cv::Scalar(150, 160, 170));
  cv::rectangle(frame, cv::Rect(20, 150, 280, 60), dusk ? cv::Scalar(20, 20, 25) : cv::Scalar(90, 100, 90), cv::FILLED);
  const int x = (i * 7) % 300;
  cv::rectangle(frame, cv::Rect(x, 100, 20, 60), cv::Scalar(30, 60, 200), cv::FILLED);
  return frame;
}

TEST(SceneWatchTest, PeopleWalkingAreNoChangeDuskIsOneChangeSeenWithinSeconds) {
  SceneWatch watch(BudgetOptions().scene_change);
  int changes = 0;
  for (int i = 0; i < 600; ++i) changes += watch.Observe(SceneFrame(i, false), i / 10.0);
  EXPECT_EQ(changes, 0) << "distance " << watch.last_distance();
  double changed_at = -1;
  for (int i = 600; i < 1200; ++i) {
    if (watch.Observe(SceneFrame(i, true), i / 10.0)) {
      ++changes;
      if (changed_at < 0) changed_at = i / 10.0;
    }
  }
  EXPECT_EQ(changes, 1);
  EXPECT_GE(changed_at, 60);
  EXPECT_LT(changed_at, 60 + 30) << "the issue asks for a rise within 30 s";
}

// The paced strategy (the default) sends one frame per slot of the budget: its pace follows a
// budget set while it runs.
TEST(SamplerBudgetTest, PacedSamplerFollowsTheBudgetItIsGiven) {
  SamplerOptions options;
  options.strategy = SamplerStrategy::kPacedConfidenceDiversity;
  options.budget_per_minute = 20;
  auto sampler = CreateSampler(options);
  ASSERT_TRUE(sampler.ok()) << sampler.status().ToString();
  Detections detections = {Detection{Box{0, 0, 10, 10}, 0.9f, 0}};
  std::vector<float> embedding(8, 0.0f);
  auto run = [&](int from, int to) {
    const int64_t before = (*sampler)->taken();
    for (int i = from; i < to; ++i) {
      embedding[i % 8] = 1.0f;
      FrameFeatures f;
      f.index = i;
      f.time_s = i / 10.0;
      f.detections = &detections;
      f.embedding = &embedding;
      f.model_from_server = true;
      (*sampler)->Offer(f);
      (*sampler)->TakeReleased();
      (*sampler)->TakeDropped();
      embedding[i % 8] = 0.0f;
    }
    return (*sampler)->taken() - before;
  };
  EXPECT_NEAR(run(0, 1200), 40, 2);  // two minutes at 20 a minute
  (*sampler)->SetBudgetPerMinute(4);
  EXPECT_NEAR(run(1200, 2400), 8, 2);  // two minutes at 4 a minute
  (*sampler)->SetBudgetPerMinute(20);
  EXPECT_NEAR(run(2400, 3600), 40, 2);
}

// A raise (a new scene) does not wait out the open slot of the floor's length.
TEST(SamplerBudgetTest, PacedSamplerSendsSoonAfterARaise) {
  SamplerOptions options;
  options.strategy = SamplerStrategy::kPacedConfidenceDiversity;
  options.budget_per_minute = 4;  // 15 s slots
  auto sampler = CreateSampler(options);
  ASSERT_TRUE(sampler.ok()) << sampler.status().ToString();
  Detections detections = {Detection{Box{0, 0, 10, 10}, 0.9f, 0}};
  std::vector<double> released_at;
  for (int i = 0; i < 900; ++i) {
    if (i == 620) (*sampler)->SetBudgetPerMinute(20);  // 2 s into a slot that would end at 75 s
    FrameFeatures f;
    f.index = i;
    f.time_s = i / 10.0;
    f.detections = &detections;
    f.model_from_server = true;
    (*sampler)->Offer(f);
    // When a frame goes (the slot's close), not which.
    for (size_t n = (*sampler)->TakeReleased().size(); n > 0; --n) released_at.push_back(f.time_s);
    (*sampler)->TakeDropped();
  }
  double first_after = -1;
  for (double t : released_at)
    if (t >= 62) {
      first_after = t;
      break;
    }
  ASSERT_GE(first_after, 62);
  // The bucket refills at the new rate (2-3 s) and a new slot of 3 s closes; without the
  // shortened slot the first frame would go at 74.9 s.
  EXPECT_LE(first_after, 62 + 6) << "the first frame after the raise waited for the old slot";
}

TEST(SamplerBudgetTest, UniformSamplerFollowsTheBudgetItIsGiven) {
  SamplerOptions options;
  options.strategy = SamplerStrategy::kUniform;
  options.budget_per_minute = 60;
  options.uniform_probability = 1;
  auto sampler = CreateSampler(options);
  ASSERT_TRUE(sampler.ok());
  int64_t taken = 0;
  for (int i = 0; i < 600; ++i) {
    if (i == 300) (*sampler)->SetBudgetPerMinute(6);
    FrameFeatures f;
    f.index = i;
    f.time_s = i / 10.0;
    f.model_from_server = true;
    if ((*sampler)->Offer(f) == SampleDecision::kTake) ++taken;
  }
  // 30 s at 60 a minute (with the bucket's 10 s burst) and 30 s at 6 a minute, no free burst.
  EXPECT_GE(taken, 30 + 10);
  EXPECT_LE(taken, 30 + 10 + 6);  // without the change: 70
}

std::string ShippedEdgeYaml() {
  std::ifstream in(std::string(SD_SOURCE_DIR) + "/configs/edge.yaml");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

StatusOr<EdgeConfig> EdgeWith(const std::string& key, const std::string& value) {
  std::string yaml = ShippedEdgeYaml();
  const size_t at = yaml.find("  " + key + ":");
  EXPECT_NE(at, std::string::npos) << key;
  yaml.replace(at, yaml.find('\n', at) - at, "  " + key + ": " + value);
  return ParseEdgeConfig(yaml, "edge.yaml");
}

TEST(BudgetConfigTest, ShippedEdgeConfigIsAdaptiveFromTwentyDownToFour) {
  auto config = ParseEdgeConfig(ShippedEdgeYaml(), "edge.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const BudgetOptions budget = config->Budget();
  EXPECT_EQ(budget.mode, BudgetMode::kAdaptive);
  EXPECT_DOUBLE_EQ(budget.ceiling_per_minute, 20);
  EXPECT_DOUBLE_EQ(budget.floor_per_minute, 4);
  EXPECT_DOUBLE_EQ(config->sampling.budget_per_minute, 20);  // what --fixed-budget keeps
}

TEST(BudgetConfigTest, BadBudgetsAreRefusedNamingTheKey) {
  auto above = EdgeWith("floor_per_minute", "30");
  ASSERT_FALSE(above.ok());
  EXPECT_NE(above.status().message().find("budget.floor_per_minute"), std::string::npos) << above.status().ToString();
  EXPECT_NE(above.status().message().find("above ceiling_per_minute"), std::string::npos) << above.status().ToString();
  auto negative = EdgeWith("ceiling_per_minute", "-5");
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("budget.ceiling_per_minute"), std::string::npos)
      << negative.status().ToString();
  auto negative_floor = EdgeWith("floor_per_minute", "-1");
  ASSERT_FALSE(negative_floor.ok());
  EXPECT_NE(negative_floor.status().message().find("budget.floor_per_minute"), std::string::npos)
      << negative_floor.status().ToString();
  auto mode = EdgeWith("mode", "sometimes");
  ASSERT_FALSE(mode.ok());
  EXPECT_NE(mode.status().message().find("budget.mode"), std::string::npos) << mode.status().ToString();
  auto target = EdgeWith("agreement_target", "1.5");
  ASSERT_FALSE(target.ok());
  EXPECT_NE(target.status().message().find("budget.agreement_target"), std::string::npos)
      << target.status().ToString();
}

constexpr int kCameras = 4;
constexpr int kFramesEach = 4;
constexpr double kAsked = 600;  // frames a minute each camera asks for: far more than HOG labels

std::string ServerYaml(const fs::path& storage, const std::string& labeler) {
  std::ostringstream y;
  y << "listen: \"127.0.0.1:0\"\n"
    << "http: {port: 0}\n"
    << "storage_dir: \"" << storage.string() << "\"\n"
    << "devices:\n";
  for (int i = 0; i < kCameras; ++i) y << "  cam" << i << ": {token: \"token-cam" << i << "\"}\n";
  y << "teacher: {kind: hog}\n"
    << "labeler: " << labeler << "\n"
    << "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
    << "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
    << "training: {background: false}\n";
  return y.str();
}

TEST(BudgetConfigTest, BadLabellerSharingIsRefusedNamingTheKey) {
  auto utilisation = ParseServerConfig(ServerYaml("/tmp/unused", "{target_utilisation: 1.5}"), "server.yaml");
  ASSERT_FALSE(utilisation.ok());
  EXPECT_NE(utilisation.status().message().find("labeler.target_utilisation"), std::string::npos)
      << utilisation.status().ToString();
  auto bound = ParseServerConfig(ServerYaml("/tmp/unused", "{max_queue_seconds: -1}"), "server.yaml");
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(bound.status().message().find("labeler.max_queue_seconds"), std::string::npos) << bound.status().ToString();
}

TEST(LabelBudgetTest, CapacityIsSharedByBenefitAndWhatACameraLeavesGoesToTheOthers) {
  LabelBudgetOptions options;
  options.utilisation = 1;
  LabelBudget budget(options);
  LabelCapacity capacity;
  capacity.workers = 1;
  capacity.seconds_per_frame = 1;  // 60 frames a minute
  std::map<std::string, double> benefit = {{"a", 1}, {"b", 1}, {"c", 2}};
  auto of = [&](const std::string& id) { return benefit[id]; };
  budget.OnFrame("a", 6, "agreement", 0.9, capacity, of, 0);
  budget.OnFrame("b", 100, "start", 0.1, capacity, of, 0);
  const double c = budget.OnFrame("c", 100, "start", 0.1, capacity, of, 0);
  auto cameras = budget.Cameras();
  // a asks for 6; the 54 left go 1 : 2 to b and c, and a may rise to the same level.
  EXPECT_NEAR(cameras["b"].granted, 18, 1e-9);
  EXPECT_NEAR(c, 36, 1e-9);
  EXPECT_NEAR(cameras["a"].granted, 18, 1e-9);
  EXPECT_DOUBLE_EQ(budget.capacity_per_minute(), 60);
  // Nobody bounded: each may have what it asks for and a share of what is spare.
  budget.OnFrame("b", 10, "agreement", 0.9, capacity, of, 1);
  budget.OnFrame("c", 10, "agreement", 0.9, capacity, of, 1);
  cameras = budget.Cameras();
  EXPECT_NEAR(cameras["a"].granted, 6 + 34 / 4.0, 1e-9);
  EXPECT_NEAR(cameras["c"].granted, 10 + 34 / 2.0, 1e-9);
  // Work queued: less is handed out, the fuller the queue the less.
  capacity.max_queue_seconds = 4;
  capacity.queued_seconds = 3;
  budget.OnFrame("a", 100, "scene_change", -1, capacity, of, 2);
  EXPECT_DOUBLE_EQ(budget.capacity_per_minute(), 15);
  // Cameras silent for longer than active_s get no share.
  budget.OnFrame("a", 100, "scene_change", -1, LabelCapacity{1, 1, 0, 0}, of, 1000);
  EXPECT_NEAR(budget.Cameras()["a"].granted, 60 * options.utilisation, 1e-9);
  EXPECT_FALSE(budget.Cameras()["a"].moves.empty());
  EXPECT_EQ(budget.Cameras()["a"].agreement, 0.9);
}

TEST(LabelBudgetTest, ReasonWordsFromAClientAreBounded) {
  EXPECT_EQ(BudgetReasonWord("scene_change"), "scene_change");
  EXPECT_EQ(BudgetReasonWord("Robert'); DROP TABLE"), "other");
  EXPECT_EQ(BudgetReasonWord(std::string(100, 'a')), "other");
}

fs::path UniqueDir() {
  const fs::path dir = fs::path(SD_BINARY_DIR) / "test_tmp" / ("budget_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string CameraJpeg(int camera) {
  cv::Mat image = SceneFrame(camera * 11, false);
  cv::resize(image, image, cv::Size(400, 300));
  std::vector<uchar> bytes;
  cv::imencode(".jpg", image, bytes);
  return std::string(bytes.begin(), bytes.end());
}

// More cameras than one HOG labeller serves, each sending as fast as the stream lets it: the
// queue never holds more than its bound in seconds of work, every edge is told a budget below
// what it asks, and every acked frame is stored.
TEST(LabelBudgetFloodTest, OneLabellerFloodedByMoreCamerasThanItServes) {
  const fs::path dir = UniqueDir();
  constexpr double kBoundSeconds = 0.3;
  auto config = ParseServerConfig(
      ServerYaml(dir / "store", "{workers: 1, queue: 16, max_queue_seconds: " + std::to_string(kBoundSeconds) + "}"),
      "budget_test.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto server = Server::Start(*config);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const std::string architecture = config->student.Fingerprint();

  struct Seen {
    std::vector<uint64_t> acked;
    std::vector<double> budgets;  // told, in ack order
    std::vector<double> agreements;
    int failed = 0;
  };
  std::vector<Seen> seen(kCameras);
  std::vector<std::thread> cameras;
  for (int c = 0; c < kCameras; ++c) {
    cameras.emplace_back([&, c] {
      testing::Stream stream(testing::Plaintext((*server)->port()), std::chrono::seconds(120));
      const std::string id = "cam" + std::to_string(c);
      if (!stream.Send(testing::HelloMessage(architecture, id, "token-" + id))) return;
      streamdistill::v1::ServerMessage welcome;
      if (!stream.Next(&welcome) || !welcome.has_welcome()) return;
      std::thread reader([&] {
        streamdistill::v1::ServerMessage m;
        while (static_cast<int>(seen[c].acked.size()) + seen[c].failed < kFramesEach && stream.Next(&m)) {
          if (!m.has_ack()) continue;
          if (m.ack().code() != 0) {
            ++seen[c].failed;
            continue;
          }
          seen[c].acked.push_back(m.ack().sequence());
          seen[c].budgets.push_back(m.ack().budget_per_minute());
          seen[c].agreements.push_back(m.ack().student_agreement());
        }
      });
      const std::string jpeg = CameraJpeg(c);
      for (int s = 1; s <= kFramesEach; ++s) {
        streamdistill::v1::EdgeMessage frame = testing::FrameMessage(s, jpeg);
        frame.mutable_frame()->set_source_width(400);
        frame.mutable_frame()->set_source_height(300);
        frame.mutable_frame()->set_budget_per_minute(kAsked);
        frame.mutable_frame()->set_budget_reason("start");
        auto* d = frame.mutable_frame()->add_student_detections();
        d->set_x1(0.1f), d->set_y1(0.4f), d->set_x2(0.2f), d->set_y2(0.7f), d->set_score(0.8f);
        if (!stream.Send(frame)) break;
      }
      reader.join();
      stream.Close();
    });
  }
  for (std::thread& t : cameras) t.join();

  ServerCore& core = (*server)->core();
  // One labelling job, measured here on the same frame: the teacher's slowest of three.
  double job_s = 0;
  {
    auto teacher = CreateTeacher(TeacherOptions());
    ASSERT_TRUE(teacher.ok()) << teacher.status().ToString();
    const std::string jpeg = CameraJpeg(0);
    const cv::Mat image = cv::imdecode(std::vector<uchar>(jpeg.begin(), jpeg.end()), cv::IMREAD_COLOR);
    for (int i = 0; i < 3; ++i) {
      const double start = SteadySeconds();
      ASSERT_TRUE((*teacher)->Label(image).ok());
      job_s = std::max(job_s, SteadySeconds() - start);
    }
  }
  for (int c = 0; c < kCameras; ++c) {
    const std::string id = "cam" + std::to_string(c);
    SCOPED_TRACE(id);
    EXPECT_EQ(seen[c].failed, 0);
    ASSERT_EQ(static_cast<int>(seen[c].acked.size()), kFramesEach);
    // Every acked frame is stored: the store holds each sequence once.
    EXPECT_EQ(core.store().Usage(id).frames, kFramesEach);
    EXPECT_EQ(core.LastStoredSequence(id), static_cast<uint64_t>(kFramesEach));
    // Told a budget below what it asks for, once the labeller was measured.
    const double last = seen[c].budgets.back();
    EXPECT_GT(last, 0);
    EXPECT_LT(last, kAsked);
    for (double a : seen[c].agreements) EXPECT_TRUE(a >= 0 && a <= 1) << a;
  }
  // No frame waited longer than the bound allows: the jobs queued within it plus the one being
  // labelled (without the bound, 16 queued HOG jobs wait several times longer).
  const Histogram::Snapshot waits = core.metrics().label_queue_wait_seconds.snapshot();
  const uint64_t count = waits.cumulative.back();
  EXPECT_EQ(count, static_cast<uint64_t>(kCameras * kFramesEach));
  const double allowed = kBoundSeconds + 2 * job_s;
  size_t bucket = 0;
  while (bucket < waits.bounds.size() && waits.bounds[bucket] < allowed) ++bucket;
  ASSERT_LT(bucket, waits.bounds.size()) << "allowed wait " << allowed << " s is beyond the histogram";
  EXPECT_EQ(waits.cumulative[bucket], count) << "some frame waited over " << waits.bounds[bucket]
                                             << " s for a labeller (bound " << kBoundSeconds << " s, a job "
                                             << job_s << " s)";
  server->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sd
