// Retention (issue 11, part 5): per-device bounds on stored frames hold after every prune and
// after a restart, while the gate's held-out frames and the replay window stay whole.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <sstream>

#include "server/frame_store.h"
#include "server/server_config.h"
#include "server/server_core.h"
#include "tests/daemon_test_util.h"
#include "tests/frame_store_backends.h"
#include "tests/protocol_client.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

constexpr int kValidationEvery = 5;
constexpr double kSecondsPerFrame = 3;  // 20 frames a minute, as the main job samples

struct DiskUsage {
  int64_t files = 0, bytes = 0;
};

// What the device's frames take on disk, counted from the files themselves.
DiskUsage OnDisk(const std::string& store_dir, const std::string& device) {
  DiskUsage usage;
  const fs::path dir = fs::path(store_dir) / "frames" / device;
  if (!fs::exists(dir)) return usage;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++usage.files;
    usage.bytes += static_cast<int64_t>(entry.file_size());
  }
  return usage;
}

std::vector<uint64_t> Sequences(const std::vector<FrameRecord>& records) {
  std::vector<uint64_t> out;
  for (const FrameRecord& r : records) out.push_back(r.sequence);
  return out;
}

// The newest `n` sequences in [1, last] of one kind, oldest first: what must still be stored.
std::vector<uint64_t> NewestOfKind(uint64_t last, bool validation, int n) {
  std::vector<uint64_t> out;
  for (uint64_t s = last; s >= 1 && static_cast<int>(out.size()) < n; --s)
    if ((s % kValidationEvery == 0) == validation) out.push_back(s);
  std::reverse(out.begin(), out.end());
  return out;
}

// Every bound of the device holds, its usage agrees with its rows (and, when the store keeps
// images as files under its directory, with the files), and the kept windows are whole.
void ExpectWithinBounds(const FrameStore& store, const std::string& device, const RetentionBounds& bounds,
                        const PruneKeep& keep, uint64_t last_sequence, bool files_in_dir = true) {
  SCOPED_TRACE(device + " after sequence " + std::to_string(last_sequence));
  const StoredUsage usage = store.Usage(device);
  const auto training = store.Recent(device, false, std::numeric_limits<int>::max());
  const auto validation = store.Recent(device, true, std::numeric_limits<int>::max());
  ASSERT_TRUE(training.ok() && validation.ok());
  EXPECT_EQ(usage.frames, static_cast<int64_t>(training->size() + validation->size()));
  if (files_in_dir) {
    const DiskUsage disk = OnDisk(store.dir(), device);
    EXPECT_EQ(disk.files, usage.frames) << "a file without a row or a row without a file";
    EXPECT_EQ(disk.bytes, usage.bytes);
  }
  if (bounds.max_frames > 0) {
    EXPECT_LE(usage.frames, bounds.max_frames);
  }
  if (bounds.max_bytes > 0) {
    EXPECT_LE(usage.bytes, bounds.max_bytes);
  }
  if (bounds.max_age_s > 0) {
    const double newest = (last_sequence - 1) * kSecondsPerFrame;
    for (const auto* records : {&*training, &*validation})
      for (const FrameRecord& r : *records) EXPECT_GE(r.capture_time_s, newest - bounds.max_age_s) << r.sequence;
  }
  auto gate = store.Recent(device, true, keep.validation_frames);
  auto replay = store.Recent(device, false, keep.replay_frames);
  ASSERT_TRUE(gate.ok() && replay.ok());
  EXPECT_EQ(Sequences(*gate), NewestOfKind(last_sequence, true, keep.validation_frames)) << "held-out set";
  EXPECT_EQ(Sequences(*replay), NewestOfKind(last_sequence, false, keep.replay_frames)) << "replay window";
}

// The retention contract of every FrameStore backend (tests/frame_store_backends.h).
class RetentionContractTest : public ::testing::TestWithParam<testing::FrameStoreBackend> {};

INSTANTIATE_TEST_SUITE_P(Backends, RetentionContractTest, ::testing::ValuesIn(testing::FrameStoreBackends()),
                         testing::FrameStoreBackendName);

TEST_P(RetentionContractTest, ThirtyMinutesOfFramesStayWithinBoundsAndKeepTheHeldOutSet) {
  const bool files = GetParam().files_in_dir;
  const std::string dir = sd::testing::TempDir("retention_store");
  // camA is bounded by count, camB by bytes and age; frames of 1-3 kB, 20 a minute each.
  const std::map<std::string, RetentionBounds> bounds = {
      {"camA", {/*max_frames=*/100, 0, 0}},
      {"camB", {0, /*max_bytes=*/200000, /*max_age_s=*/600}},
  };
  PruneKeep keep;
  keep.replay_frames = 40;
  keep.validation_frames = 12;
  constexpr uint64_t kFrames = 30 * 20;
  auto store = GetParam().open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  int64_t deleted = 0;
  for (uint64_t sequence = 1; sequence <= kFrames; ++sequence) {
    for (const auto& [device, bound] : bounds) {
      FrameRecord frame;
      frame.device_id = device;
      frame.sequence = sequence;
      frame.frame_index = static_cast<int64_t>(sequence) * 15;
      frame.capture_time_s = (sequence - 1) * kSecondsPerFrame;
      frame.validation = sequence % kValidationEvery == 0;
      frame.jpeg = std::string(1000 + (sequence * 7919) % 2000, static_cast<char>('a' + sequence % 26));
      ASSERT_TRUE((*store)->Put(frame).ok());
      if (sequence % 16 != 0 && sequence != kFrames) continue;  // as the server: once per 16 stored frames
      auto pruned = (*store)->Prune(device, bound, keep);
      ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
      EXPECT_EQ(pruned->replay_deleted + pruned->validation_deleted, 0) << "the bounds leave room for the windows";
      deleted += pruned->deleted;
      ExpectWithinBounds(**store, device, bound, keep, sequence, files);
    }
  }
  EXPECT_GT(deleted, 0);
  // Thinned, not cut: camA keeps frames from long before its newest 100.
  auto all = (*store)->Since("camA", 0, std::numeric_limits<int>::max());
  ASSERT_TRUE(all.ok());
  const double span_s = all->back().capture_time_s - all->front().capture_time_s;
  EXPECT_GT(span_s, 2 * 100 * kSecondsPerFrame) << "only the newest frames were kept";

  // A restart: the store reopens with every bound still holding and nothing orphaned.
  store = StatusOr<std::unique_ptr<FrameStore>>(Status::Aborted("closed"));
  auto reopened = GetParam().open(dir);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  for (const auto& [device, bound] : bounds) ExpectWithinBounds(**reopened, device, bound, keep, kFrames, files);
}

TEST(RetentionTest, ACrashBetweenRowsAndFilesLeavesOnlyFilesThatTheNextOpenRemoves) {
  const std::string dir = sd::testing::TempDir("retention_crash");
  {
    auto store = FrameStore::Open(dir);
    ASSERT_TRUE(store.ok());
    for (uint64_t sequence = 1; sequence <= 10; ++sequence) {
      FrameRecord frame;
      frame.device_id = "camA";
      frame.sequence = sequence;
      frame.jpeg = "jpeg bytes";
      ASSERT_TRUE((*store)->Put(frame).ok());
    }
    ASSERT_TRUE((*store)->Prune("camA", {/*max_frames=*/4, 0, 0}, PruneKeep()).ok());
  }
  // What a crash after the commit and before the unlinks leaves: pruned frames' files.
  ASSERT_TRUE(WriteFileDurably(Env::Default(), dir + "/frames/camA/000000000001.jpg", "jpeg bytes").ok());
  auto store = FrameStore::Open(dir);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(OnDisk(dir, "camA").files, 4);
  EXPECT_EQ((*store)->LastSequence("camA"), 10u) << "the newest frame always stays";
}

StatusOr<std::unique_ptr<ServerCore>> StartCore(const std::string& dir, const std::string& retention) {
  std::ostringstream y;
  y << "storage_dir: \"" << dir << "\"\nthreads: 1\ndevices: {cam1: {token: secret-token-1}}\n"
    << "labeler: {workers: 1, queue: 4}\n"
    << "training: {background: false, replay_frames: 16, validation_every: " << kValidationEvery
    << ", validation_frames: 8}\n"
    << retention << sd::testing::kTinyStudent;
  auto config = ParseServerConfig(y.str(), "retention_test.yaml");
  if (!config.ok()) return config.status();
  return ServerCore::Create(*config, []() -> StatusOr<std::unique_ptr<Teacher>> {
    return std::unique_ptr<Teacher>(std::make_unique<sd::testing::OneBoxTeacher>());
  });
}

TEST(RetentionTest, TheServerPrunesAfterStoresAndAtStartUp) {
  const std::string dir = sd::testing::TempDir("retention_core");
  PruneKeep keep;
  keep.replay_frames = 16;
  keep.validation_frames = 8;
  constexpr uint64_t kFrames = 97;  // the prune after frame 96 has run once frame 97 is stored
  {
    auto core = StartCore(dir, "retention: {max_frames: 1000, devices: {cam1: {max_frames: 40}}}\n");
    ASSERT_TRUE(core.ok()) << core.status().ToString();
    const std::string jpeg = sd::testing::RealJpeg();
    for (uint64_t sequence = 1; sequence <= kFrames; ++sequence) {
      FrameRecord meta;
      meta.sequence = sequence;
      meta.capture_time_s = (sequence - 1) * kSecondsPerFrame;
      std::promise<FrameOutcome> stored;
      ASSERT_TRUE((*core)->TrySubmitFrame("cam1", meta, std::make_shared<const std::string>(jpeg), [&](FrameOutcome o) { stored.set_value(o); }));
      ASSERT_TRUE(stored.get_future().get().status.ok());
    }
    ExpectWithinBounds((*core)->store(), "cam1", {/*max_frames=*/41, 0, 0}, keep, kFrames);
  }
  // Restarted with a bound below the two windows (16 + 8): the start-up prune cuts the replay
  // window, never the gate's held-out frames.
  auto core = StartCore(dir, "retention: {max_frames: 20}\n");
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  EXPECT_EQ(OnDisk(dir, "cam1").files, 20);
  auto gate = (*core)->store().Recent("cam1", true, keep.validation_frames);
  ASSERT_TRUE(gate.ok());
  EXPECT_EQ(Sequences(*gate), NewestOfKind(kFrames, true, keep.validation_frames));
  auto replay = (*core)->store().Recent("cam1", false, 100);
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(Sequences(*replay), NewestOfKind(kFrames, false, 12)) << "the replay window is cut from its oldest";
}

}  // namespace
}  // namespace sd
