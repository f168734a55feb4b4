// The long-term memory (issue 13): frame looks and k-center, the embeddings the store keeps
// (and a store of schema version 1 upgraded in place), the gate's forgetting check, and a real
// ServerCore with the HOG teacher on the sample video whose scene changes (mirrored and at
// dusk), where every round is judged on the new scene and on the old one.
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "common/vision/appearance.h"
#include "common/teacher/teacher.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"
#include "server/long_term_memory.h"
#include "server/server_core.h"
#include "tests/daemon_test_util.h"
#include "tests/server_core_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

const char kVideo[] = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

std::vector<cv::Mat> VideoFrames(int n) {
  cv::VideoCapture capture(kVideo);
  std::vector<cv::Mat> frames;
  cv::Mat frame;
  while (static_cast<int>(frames.size()) < n && capture.read(frame)) frames.push_back(frame.clone());
  return frames;
}

// The same street mirrored at dusk: a change of scene a camera meets (moved, evening).
cv::Mat Dusk(const cv::Mat& bgr) {
  cv::Mat flipped, dark;
  cv::flip(bgr, flipped, 1);
  cv::Mat lut(1, 256, CV_8U);
  for (int i = 0; i < 256; ++i) lut.at<uchar>(i) = cv::saturate_cast<uchar>(255.0 * std::pow(i / 255.0, 2.2) * 0.8);
  cv::LUT(flipped, lut, dark);
  return dark;
}

// ---------------------------------------------------------------------------------------------
// Looks and k-center.

TEST(AppearanceTest, EmbeddingSeesLayoutAndLighting) {
  const std::vector<cv::Mat> frames = VideoFrames(2);
  ASSERT_EQ(frames.size(), 2u);
  const auto day = AppearanceEmbedding(frames[0]);
  ASSERT_EQ(day.size(), static_cast<size_t>(kAppearanceDims));
  for (float v : day) ASSERT_TRUE(v >= 0 && v <= 1) << v;
  const float next_frame = SquaredDistance(day, AppearanceEmbedding(frames[1]));
  cv::Mat mirrored;
  cv::flip(frames[0], mirrored, 1);
  const float mirror = SquaredDistance(day, AppearanceEmbedding(mirrored));
  const float dusk = SquaredDistance(day, AppearanceEmbedding(Dusk(frames[0])));
  // Consecutive frames of one scene look alike; a mirrored or darkened view does not.
  EXPECT_LT(next_frame * 20, mirror) << next_frame << " vs " << mirror;
  EXPECT_LT(next_frame * 20, dusk) << next_frame << " vs " << dusk;
  EXPECT_TRUE(AppearanceEmbedding(cv::Mat()).empty());
}

TEST(KCenterTest, ChoosesOneOfEachClusterFarthestFromWhatIsCovered) {
  // Three clusters on a line: around 0, 10 and 20; 0 is covered already.
  std::vector<std::vector<float>> values = {{0.1f}, {10.f}, {0.2f}, {20.f}, {10.2f}, {19.9f}, {}};
  std::vector<const std::vector<float>*> points;
  for (const auto& v : values) points.push_back(&v);
  const std::vector<float> covered_zero = {0.f};
  const auto chosen = KCenterGreedy(points, {&covered_zero}, 2);
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_EQ(chosen[0], 3u) << "20 is farthest from the covered 0";
  EXPECT_EQ(chosen[1], 1u) << "then 10 (ties to the lower index: 10.0 and 10.2 are both 10 from an end)";
  // More than there are: every non-empty point once, the empty embedding never.
  const auto all = KCenterGreedy(points, {}, 100);
  EXPECT_EQ(all.size(), 6u);
  EXPECT_EQ(std::set<size_t>(all.begin(), all.end()).count(6), 0u);
  EXPECT_EQ(all.front(), 0u) << "without anything covered the first point starts";
  EXPECT_TRUE(KCenterGreedy(points, {}, 0).empty());
}

TEST(KCenterTest, LongTermFramesAreTheOldSceneWhenTheRecentOnesAreTheNewScene) {
  const std::vector<cv::Mat> frames = VideoFrames(40);
  ASSERT_EQ(frames.size(), 40u);
  std::vector<FrameRecord> older, recent;
  // Frames 1-20 the street by day, 21-30 at dusk (older too), 31-40 at dusk (recent).
  for (int i = 0; i < 40; ++i) {
    FrameRecord r;
    r.sequence = i + 1;
    r.embedding = AppearanceEmbedding(i < 20 ? frames[i] : Dusk(frames[i]));
    (i < 30 ? older : recent).push_back(r);
  }
  older[3].embedding.clear();  // stored before embeddings: never chosen
  const auto chosen = ChooseLongTermFrames(older, recent, 4);
  ASSERT_EQ(chosen.size(), 4u);
  uint64_t previous = 0;
  int day = 0;
  for (const FrameRecord& r : chosen) {
    EXPECT_GT(r.sequence, previous) << "oldest first";
    EXPECT_NE(r.sequence, 4u) << "no embedding";
    previous = r.sequence;
    day += r.sequence <= 20;
  }
  EXPECT_GE(day, 3) << "the dusk frames are covered by the recent ones; the memory keeps the day";
}

// ---------------------------------------------------------------------------------------------
// The store keeps the embeddings.

TEST(FrameStoreEmbeddingTest, EmbeddingReadsBackAndOlderListsTheHistory) {
  const std::string dir = TempDir("memory_store");
  auto store = FrameStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    FrameRecord f;
    f.device_id = "cam1";
    f.sequence = seq;
    f.validation = seq % 5 == 0;
    f.jpeg = "jpeg-bytes";
    if (seq != 2) f.embedding = {0.25f * seq, 1.5f, -0.0f};
    ASSERT_TRUE((*store)->Put(f).ok());
  }
  auto older = (*store)->Older("cam1", false, 8, 3);
  ASSERT_TRUE(older.ok()) << older.status().ToString();
  ASSERT_EQ(older->size(), 3u);  // training frames before 8, newest 3, oldest first: 4, 6, 7
  EXPECT_EQ((*older)[0].sequence, 4u);
  EXPECT_EQ((*older)[2].sequence, 7u);
  EXPECT_EQ((*older)[2].embedding, (std::vector<float>{1.75f, 1.5f, -0.0f}));
  auto first = (*store)->Older("cam1", false, 3, 10);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 2u);
  EXPECT_TRUE((*first)[1].embedding.empty()) << "frame 2 was stored without one";
  EXPECT_TRUE((*store)->Older("cam1", true, 1, 10)->empty());
}

TEST(FrameStoreEmbeddingTest, AStoreOfSchemaVersion1IsUpgradedAndKeepsItsFrames) {
  const std::string dir = TempDir("memory_store_v1");
  std::filesystem::create_directories(dir + "/frames/cam1");
  {
    // The tables as version 1 made them, with one frame.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir + "/index.sqlite").c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
PRAGMA journal_mode=WAL;
CREATE TABLE frames(device_id TEXT NOT NULL, sequence INTEGER NOT NULL, frame_index INTEGER NOT NULL,
  capture_time_s REAL, source_width INTEGER NOT NULL, source_height INTEGER NOT NULL, image_score REAL,
  validation INTEGER NOT NULL, labels TEXT NOT NULL, image_bytes INTEGER NOT NULL,
  PRIMARY KEY(device_id, sequence)) WITHOUT ROWID;
CREATE INDEX frames_by_kind ON frames(device_id, validation, sequence);
CREATE TABLE versions(device_id TEXT NOT NULL, version INTEGER NOT NULL, base_version INTEGER NOT NULL,
  encoding TEXT NOT NULL, weights_checksum TEXT NOT NULL, val_map50 REAL, created_ms INTEGER NOT NULL,
  checkpoint_bytes INTEGER NOT NULL, PRIMARY KEY(device_id, version)) WITHOUT ROWID;
CREATE TABLE devices(device_id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
INSERT INTO frames VALUES('cam1', 1, 1, 0.1, 64, 48, 0.5, 0, '', 4);
INSERT INTO devices VALUES('cam1');
PRAGMA user_version=1;
)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  // Read-only openers (an export) ask for the server to upgrade it first.
  auto read_only = FrameStore::OpenReadOnly(dir);
  ASSERT_FALSE(read_only.ok());
  EXPECT_NE(read_only.status().message().find("schema version 1"), std::string::npos) << read_only.status().ToString();
  auto store = FrameStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto old_frame = (*store)->Recent("cam1", false, 10);
  ASSERT_TRUE(old_frame.ok()) << old_frame.status().ToString();
  ASSERT_EQ(old_frame->size(), 1u);
  EXPECT_TRUE((*old_frame)[0].embedding.empty());
  FrameRecord f;
  f.device_id = "cam1";
  f.sequence = 2;
  f.jpeg = "jpeg";
  f.embedding = {0.5f};
  ASSERT_TRUE((*store)->Put(f).ok());
  auto both = (*store)->Recent("cam1", false, 10);
  ASSERT_TRUE(both.ok());
  ASSERT_EQ(both->size(), 2u);
  EXPECT_EQ((*both)[1].embedding, std::vector<float>{0.5f});
}

// ---------------------------------------------------------------------------------------------
// The gate.

GateScores Scores(double recent_before, double recent_after, double longterm_before, double longterm_after) {
  GateScores s;
  s.final_loss = 1.0;
  s.recent_frames = 30;
  s.recent_labelled = true;
  s.recent_before = recent_before;
  s.recent_after = recent_after;
  s.longterm_frames = longterm_before < 0 ? 0 : 60;
  s.longterm_labelled = longterm_before >= 0;
  s.longterm_before = longterm_before;
  s.longterm_after = longterm_after;
  return s;
}

TEST(GateTest, ARoundThatGainsOnTheNewSceneIsKeptUnlessItForgetsBeyondTheMargin) {
  RoundOptions options;
  options.max_map50_drop = 0.02;
  options.max_forgetting = 0.03;
  // Gains now, forgets 0.02 of the old scene: within the margin.
  GateDecision kept = DecideGate(Scores(0.40, 0.60, 0.85, 0.83), options);
  EXPECT_TRUE(kept.publish) << kept.reason;
  EXPECT_NE(kept.reason.find("long-term held-out mAP50 0.850 -> 0.830"), std::string::npos) << kept.reason;
  // Gains now, forgets 0.10: discarded, and the reason says it is forgetting.
  GateDecision forgets = DecideGate(Scores(0.40, 0.60, 0.85, 0.75), options);
  EXPECT_FALSE(forgets.publish);
  EXPECT_NE(forgets.reason.find("forgets more than 0.030"), std::string::npos) << forgets.reason;
  // Loses on the scene as it is now: discarded whatever the old scene says.
  EXPECT_FALSE(DecideGate(Scores(0.60, 0.50, 0.85, 0.90), options).publish);
  // No long-term set (a new camera): the recent set alone decides.
  EXPECT_TRUE(DecideGate(Scores(0.40, 0.41, -1, -1), options).publish);
  // A long-term set too small to trust is not checked.
  GateScores few = Scores(0.40, 0.60, 0.85, 0.10);
  few.longterm_frames = options.min_validation_frames - 1;
  EXPECT_TRUE(DecideGate(few, options).publish);
  GateScores diverged = Scores(0.40, 0.60, 0.85, 0.85);
  diverged.final_loss = std::nan("");
  EXPECT_FALSE(DecideGate(diverged, options).publish);
}

// ---------------------------------------------------------------------------------------------
// A real core on the sample video whose scene changes.

TeacherFactory Hog() {
  return []() -> StatusOr<std::unique_ptr<Teacher>> {
    TeacherOptions options;
    options.kind = TeacherKind::kHog;
    return CreateTeacher(options);
  };
}

void Submit(ServerCore& core, const std::vector<cv::Mat>& images, uint64_t first_sequence) {
  std::mutex mu;
  std::condition_variable cv;
  size_t stored = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    std::vector<uchar> jpeg;
    cv::imencode(".jpg", images[i], jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
    FrameRecord meta;
    meta.sequence = first_sequence + i;
    meta.frame_index = static_cast<int64_t>(meta.sequence);
    auto done = [&](FrameOutcome outcome) {
      EXPECT_TRUE(outcome.status.ok()) << outcome.status.ToString();
      std::lock_guard<std::mutex> lock(mu);
      ++stored;
      cv.notify_all();
    };
    while (!core.TrySubmitFrame("cam1", meta, std::make_shared<const std::string>(jpeg.begin(), jpeg.end()), done))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(300), [&] { return stored == images.size(); }));
}

// A core whose rounds run by hand, every 4th frame held out: `held_out` recent and as many
// long-term held-out frames, `memory` long-term and `replay` recent training frames.
StatusOr<ServerConfig> MemoryConfig(const std::string& name, int held_out, int memory, int replay) {
  SD_ASSIGN_OR_RETURN(ServerConfig config, ParseServerConfig(ServerYaml(TempDir(name)), name + ".yaml"));
  config.train_in_background = false;
  config.threads_per_worker = 1;
  config.device_updates.clear();
  config.validation_every = 4;
  config.validation_frames = held_out;
  config.longterm_validation_frames = held_out;
  config.memory_frames = memory;
  config.round.replay_frames = replay;
  config.round.min_validation_frames = 3;
  config.round.trainer.batch_size = 4;
  return config;
}

TEST(LongTermMemoryCoreTest, AfterAChangeOfSceneRoundsAreJudgedOnTheNewSceneAndOnTheOld) {
  // Recent held-out: the newest 5 (all after the change); long-term: 5 of the 10 before them;
  // the newest 15 training frames, all after the change, and 8 long-term ones.
  auto config = MemoryConfig("memory_core", /*held_out=*/5, /*memory=*/8, /*replay=*/15);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto core = ServerCore::Create(*config, Hog());
  ASSERT_TRUE(core.ok()) << core.status().ToString();

  // 40 frames of the street by day, then 28 of it mirrored at dusk.
  std::vector<cv::Mat> frames = VideoFrames(68);
  ASSERT_EQ(frames.size(), 68u);
  std::vector<cv::Mat> day(frames.begin(), frames.begin() + 40), dusk;
  for (size_t i = 40; i < frames.size(); ++i) dusk.push_back(Dusk(frames[i]));
  Submit(**core, day, 1);
  Submit(**core, dusk, 41);

  RoundOptions gate = config->round;
  for (int round_number = 1; round_number <= 2; ++round_number) {
    auto round = (*core)->RunRound("cam1", 12);
    ASSERT_TRUE(round.ok()) << round.status().ToString();
    SCOPED_TRACE("round " + std::to_string(round_number) + ": " + round->reason);
    EXPECT_EQ(round->train_frames, 15);
    EXPECT_EQ(round->memory_frames, 8);
    EXPECT_EQ(round->val_frames, 5);
    EXPECT_EQ(round->longterm_val_frames, 5);
    ASSERT_GE(round->map50_before, 0);
    ASSERT_GE(round->longterm_map50_before, 0) << "the long-term set is scored";
    // The server's decision is the gate's on these scores: a round that holds or gains on the
    // new scene is discarded only when the old scene's mAP50 falls beyond max_forgetting.
    const bool holds_now = round->map50_after >= round->map50_before - gate.max_map50_drop - 1e-12;
    const bool forgets = round->longterm_map50_after < round->longterm_map50_before - gate.max_forgetting - 1e-12;
    if (holds_now && !forgets) {
      EXPECT_TRUE(round->published);
    }
    if (forgets) {
      EXPECT_FALSE(round->published);
      EXPECT_NE(round->reason.find("forgets"), std::string::npos);
    }
    if (!holds_now) {
      EXPECT_FALSE(round->published);
    }
  }

  // The long-term frames are the day's: k-center from the dusk frames that are recent.
  auto recent = (*core)->store().Recent("cam1", true, config->validation_frames);
  ASSERT_TRUE(recent.ok());
  for (const FrameRecord& r : *recent) EXPECT_GT(r.sequence, 40u) << "recent held-out frames are after the change";
  auto older = (*core)->store().Older("cam1", true, recent->front().sequence, config->memory_history);
  ASSERT_TRUE(older.ok());
  const auto longterm = ChooseLongTermFrames(*older, *recent, config->longterm_validation_frames);
  int day_frames = 0;
  for (const FrameRecord& r : longterm) day_frames += r.sequence <= 40;
  EXPECT_GE(day_frames, 4) << "of 5 long-term held-out frames";
}

// The same on a synthetic scene whose background and lighting change, where the tiny test
// student learns within a few dozen steps, so the scores before and after move: the server
// publishes a round that holds the new scene unless the old one falls beyond max_forgetting.
TEST(LongTermMemoryCoreTest, RoundsAfterADriftKeepTheOldSceneWithinTheMargin) {
  constexpr int kDriftAt = 60;
  const SyntheticScene scene = TestScene(21, kDriftAt);
  auto config = MemoryConfig("memory_core_drift", /*held_out=*/6, /*memory=*/10, /*replay=*/20);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->round.trainer.learning_rate = 0.01f;
  auto core = ServerCore::Create(*config, [scene]() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<SyntheticOracleTeacher>(std::vector<SyntheticScene>{scene}, 130));
  });
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  SendFrames(**core, scene, {"cam1"}, kDriftAt - 1);  // frames 1-59: before the drift
  for (int i = 0; i < 2; ++i) ASSERT_TRUE((*core)->RunRound("cam1", 40).ok());
  SendFrames(**core, scene, {"cam1"}, 60, kDriftAt);  // 60-119: after it

  int published = 0;
  for (int round_number = 1; round_number <= 3; ++round_number) {
    auto round = (*core)->RunRound("cam1", 40);
    ASSERT_TRUE(round.ok()) << round.status().ToString();
    SCOPED_TRACE("round " + std::to_string(round_number) + " after the drift: " + round->reason);
    EXPECT_EQ(round->memory_frames, 10);
    EXPECT_EQ(round->longterm_val_frames, 6);
    ASSERT_GE(round->longterm_map50_before, 0);
    const bool holds_now = round->map50_after >= round->map50_before - config->round.max_map50_drop - 1e-12;
    const bool forgets =
        round->longterm_map50_after < round->longterm_map50_before - config->round.max_forgetting - 1e-12;
    EXPECT_EQ(round->published, holds_now && !forgets);
    if (holds_now && forgets) {
      EXPECT_NE(round->reason.find("forgets"), std::string::npos);
    }
    published += round->published;
  }
  EXPECT_GE(published, 1) << "the student follows the new scene";
  auto state = (*core)->State("cam1");
  ASSERT_TRUE(state.ok());
}

}  // namespace
}  // namespace sd
