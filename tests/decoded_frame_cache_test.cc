// The decoded frames that every training unit's rounds share (server/decoded_frame_cache.h): one
// budget in bytes for all units, the least recently used frames going first, a frame that went
// decoded again exactly as before, and a round that trains the same with no cache at all. A
// real SQLite store of synthetic frames; the round on a real ServerCore and a tiny student.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include <opencv2/imgcodecs.hpp>

#include "server/decoded_frame_cache.h"
#include "server/frame_store.h"
#include "server/server_core.h"
#include "tests/daemon_test_util.h"
#include "tests/server_core_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;

// The scene's 256x192 frames shrink to this student's 128x96 at scale 1.
const StudentArchitecture& SmallStudent() {
  static const StudentArchitecture arch = [] {
    StudentArchitecture small;
    small.input_width = 128;
    small.input_height = 96;
    return small;
  }();
  return arch;
}
constexpr int64_t kImageBytes = 128 * 96 * 3;

// Frames 1..per_device of a synthetic scene stored for each device (training frames, the
// scene's boxes as labels), and their records as the store returns them.
struct StoredFrames {
  std::unique_ptr<FrameStore> store;
  std::map<std::string, std::vector<FrameRecord>> records;  // by device, oldest first
};

StoredFrames StoreFrames(const std::string& dir, const std::vector<std::string>& devices, int per_device) {
  StoredFrames out;
  auto store = FrameStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return out;
  out.store = std::move(store).value();
  const SyntheticScene scene = TestScene(5);
  for (const std::string& device : devices) {
    for (int sequence = 1; sequence <= per_device; ++sequence) {
      const SyntheticFrame frame = scene.Render(sequence);
      std::vector<uchar> jpeg;
      cv::imencode(".jpg", frame.bgr, jpeg);
      FrameRecord record;
      record.device_id = device;
      record.sequence = sequence;
      record.frame_index = sequence;
      record.labels = frame.ground_truth;
      auto put = out.store->Put(record, std::string_view(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()));
      EXPECT_TRUE(put.ok() && *put) << device << " " << sequence;
    }
    auto records = out.store->Recent(device, false, per_device);
    EXPECT_TRUE(records.ok()) << records.status().ToString();
    if (records.ok()) out.records[device] = *records;
  }
  return out;
}

bool SamePixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

void ExpectSameFrames(const std::vector<LabelledFrame>& a, const std::vector<LabelledFrame>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, b[i].index);
    EXPECT_TRUE(SamePixels(a[i].bgr, b[i].bgr)) << "frame " << i;
    ASSERT_EQ(a[i].labels.size(), b[i].labels.size()) << "frame " << i;
    for (size_t j = 0; j < a[i].labels.size(); ++j) {
      EXPECT_EQ(a[i].labels[j].box.x1, b[i].labels[j].box.x1);
      EXPECT_EQ(a[i].labels[j].box.y2, b[i].labels[j].box.y2);
    }
  }
}

// Three units' workers load their devices' frames at once, again and again, through a cache
// that holds 5 of their 36 frames: it never holds more than its budget, and it pushes out frames
// of every device to stay within it.
TEST(DecodedFrameCacheTest, NeverExceedsItsBudgetAcrossUnits) {
  const std::vector<std::string> devices = {"cam1", "cam2", "cam3"};
  StoredFrames stored = StoreFrames(TempDir("store"), devices, 12);
  ASSERT_NE(stored.store, nullptr);
  const int64_t budget = 5 * kImageBytes;
  DecodedFrameCache cache(budget);
  std::atomic<bool> loading{true};
  std::atomic<int64_t> largest{0};
  std::thread watcher([&] {
    while (loading) {
      largest = std::max(largest.load(), cache.stats().bytes);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> workers;
  for (const std::string& device : devices)
    workers.emplace_back([&, device] {
      for (int round = 0; round < 3; ++round) {
        auto frames = cache.Load(*stored.store, stored.records[device], SmallStudent(), 1.0f);
        ASSERT_TRUE(frames.ok()) << frames.status().ToString();
        EXPECT_EQ(frames->size(), 12u);
      }
    });
  for (std::thread& worker : workers) worker.join();
  loading = false;
  watcher.join();

  const DecodedFrameCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.budget_bytes, budget);
  EXPECT_LE(largest.load(), budget);
  EXPECT_LE(stats.bytes, budget);
  EXPECT_EQ(stats.bytes, stats.images * kImageBytes);
  EXPECT_EQ(stats.images, 5);
  EXPECT_EQ(stats.hits + stats.misses, 3u * 3 * 12);
  EXPECT_EQ(stats.evictions, stats.misses - 5);  // every image kept but the last 5 was pushed out
}

// A frame pushed out is decoded again from the store when a round needs it, the same pixels and
// labels as the first time (and as with a cache that keeps everything).
TEST(DecodedFrameCacheTest, AnEvictedFrameIsDecodedAgainTheSame) {
  StoredFrames stored = StoreFrames(TempDir("store"), {"cam1"}, 6);
  ASSERT_NE(stored.store, nullptr);
  const std::vector<FrameRecord>& records = stored.records["cam1"];
  for (float scale : {1.0f, 1.15f}) {
    DecodedFrameCache roomy(int64_t{1} << 30);
    auto first = roomy.Load(*stored.store, records, SmallStudent(), scale);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    const cv::Mat& image = first->front().bgr;
    DecodedFrameCache small(2 * static_cast<int64_t>(image.total() * image.elemSize()));
    auto evicting = small.Load(*stored.store, records, SmallStudent(), scale);
    ASSERT_TRUE(evicting.ok()) << evicting.status().ToString();
    EXPECT_EQ(small.stats().evictions, 4u);  // frames 1-4 went, 5 and 6 are kept
    auto again = small.Load(*stored.store, records, SmallStudent(), scale);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(small.stats().misses, 12u);  // 5 and 6 went too while 1-4 came back
    ExpectSameFrames(*first, *evicting);
    ExpectSameFrames(*first, *again);

    auto cached = roomy.Load(*stored.store, records, SmallStudent(), scale);
    ASSERT_TRUE(cached.ok()) << cached.status().ToString();
    ExpectSameFrames(*first, *cached);
    EXPECT_EQ(roomy.stats().hits, 6u);
    EXPECT_EQ(roomy.stats().misses, 6u);
  }
}

// A frame asked for at another scale (a training frame's size against a held-out one's) is
// decoded for that scale, not handed out at the size it was kept at.
TEST(DecodedFrameCacheTest, AFrameIsKeptAtTheScaleItWasLoadedFor) {
  StoredFrames stored = StoreFrames(TempDir("store"), {"cam1"}, 1);
  ASSERT_NE(stored.store, nullptr);
  DecodedFrameCache cache(100 * kImageBytes);
  auto held_out = cache.Load(*stored.store, stored.records["cam1"], SmallStudent(), 1.0f);
  auto training = cache.Load(*stored.store, stored.records["cam1"], SmallStudent(), 1.5f);
  ASSERT_TRUE(held_out.ok() && training.ok());
  EXPECT_EQ(held_out->front().bgr.size(), cv::Size(128, 96));
  EXPECT_EQ(training->front().bgr.size(), cv::Size(192, 144));
  EXPECT_EQ(cache.stats().misses, 2u);
  EXPECT_EQ(cache.stats().images, 1);
  EXPECT_EQ(cache.stats().bytes, 192 * 144 * 3);
}

// KeepOnly drops a unit's frames that left its windows and leaves other units' frames alone.
TEST(DecodedFrameCacheTest, KeepOnlyForgetsAUnitsOldFramesOnly) {
  StoredFrames stored = StoreFrames(TempDir("store"), {"cam1", "cam2"}, 4);
  ASSERT_NE(stored.store, nullptr);
  DecodedFrameCache cache(100 * kImageBytes);
  ASSERT_TRUE(cache.Load(*stored.store, stored.records["cam1"], SmallStudent(), 1.0f).ok());
  ASSERT_TRUE(cache.Load(*stored.store, stored.records["cam2"], SmallStudent(), 1.0f).ok());
  cache.KeepOnly({"cam1"}, {{"cam1", 3}, {"cam1", 4}, {"cam2", 1}});
  EXPECT_EQ(cache.stats().images, 2 + 4);
  EXPECT_EQ(cache.stats().bytes, 6 * kImageBytes);
  EXPECT_EQ(cache.stats().evictions, 0u);
  const uint64_t hits = cache.stats().hits;
  ASSERT_TRUE(cache.Load(*stored.store, stored.records["cam2"], SmallStudent(), 1.0f).ok());
  EXPECT_EQ(cache.stats().hits, hits + 4);
}

// The value of a label-less series in /metrics' text; -1 when it is not there.
double Sample(const std::string& metrics, const std::string& name) {
  const size_t at = metrics.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + name.size() + 2));
}

// With no cache at all every round decodes its frames from the store, and trains exactly as the
// same rounds with a cache: the same weights, version after version.
TEST(DecodedFrameCacheTest, RoundsTrainTheSameWithoutACache) {
  const SyntheticScene scene = TestScene(21);
  std::map<int64_t, std::vector<std::string>> checksums;  // budget in MiB -> each round's weights
  for (int64_t budget_mb : {int64_t{256}, int64_t{0}}) {
    auto parsed = ParseServerConfig(QuickOpenRounds(ServerYaml(TempDir("mb" + std::to_string(budget_mb)))), "s.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    ServerConfig config = *parsed;
    config.train_in_background = false;
    config.decoded_cache_mb = budget_mb;
    auto core = ServerCore::Create(config, Oracle(scene));
    ASSERT_TRUE(core.ok()) << core.status().ToString();
    SetTorchThreads(1);  // one thread: the same arithmetic in the same order both times
    SendFrames(**core, scene, {"cam1"}, 10);  // 8 training and 2 held-out frames
    for (int round = 0; round < 2; ++round) {
      auto result = (*core)->RunRound("cam1", 3);
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      ASSERT_TRUE(result->published) << result->reason;
      auto latest = (*core)->LatestUpdate("cam1");
      ASSERT_TRUE(latest.ok() && *latest);
      checksums[budget_mb].push_back((*latest)->weights_checksum);
    }
    // Each round loads the same 10 frames: decoded once with the cache, every time without.
    const std::string metrics = (*core)->metrics().registry.Render();
    EXPECT_EQ(Sample(metrics, "streamdistill_server_decoded_cache_budget_bytes"), budget_mb << 20) << metrics;
    EXPECT_EQ(Sample(metrics, "streamdistill_server_decoded_cache_misses_total"), budget_mb > 0 ? 10 : 20);
    EXPECT_EQ(Sample(metrics, "streamdistill_server_decoded_cache_hits_total"), budget_mb > 0 ? 10 : 0);
    EXPECT_EQ(Sample(metrics, "streamdistill_server_decoded_cache_images"), budget_mb > 0 ? 10 : 0);
    EXPECT_EQ(Sample(metrics, "streamdistill_server_decoded_cache_evictions_total"), 0);
  }
  EXPECT_EQ(checksums[256], checksums[0]);
}

}  // namespace
}  // namespace sd
