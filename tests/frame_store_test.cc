#include "server/frame_store.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/frame_store_backends.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the build tree per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const fs::path root = fs::path(SD_BINARY_DIR) / "test_tmp";
    fs::create_directories(root);
    std::string pattern = (root / "frame_store_XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Deterministic image bytes per (device, sequence), including NULs and high bytes.
std::string FakeJpeg(const std::string& device, uint64_t sequence, size_t size = 300) {
  std::string bytes(size, '\0');
  uint64_t x = sequence * 0x9E3779B97F4A7C15ULL + device.size();
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    bytes[i] = static_cast<char>(x & 0xff);
  }
  bytes[0] = '\xff', bytes[1] = '\xd8', bytes[2] = '\0';
  return bytes;
}

FrameRecord MakeFrame(const std::string& device, uint64_t sequence, bool validation = false) {
  FrameRecord f;
  f.device_id = device;
  f.sequence = sequence;
  f.frame_index = static_cast<int64_t>(sequence % 1000000) * 10 + 3;
  f.capture_time_s = 1712345678.125 + sequence * 0.1;
  f.source_width = 1920;
  f.source_height = 1080;
  f.image_score = 0.1f * static_cast<float>(sequence % 7);
  f.validation = validation;
  for (uint64_t k = 0; k < sequence % 3; ++k) {
    f.labels.push_back({{0.1f * k, 1.0f / 3.0f, 100.5f + k, 200.25f}, 0.987654321f, static_cast<int>(k)});
  }
  if (sequence % 2 == 0) f.privacy = "masks=window,tv;faces=" + std::to_string(sequence % 5);
  f.jpeg = FakeJpeg(device, sequence);
  return f;
}

VersionRecord MakeVersion(const std::string& device, uint64_t version) {
  VersionRecord v;
  v.device_id = device;
  v.version = version;
  return v;
}

// Opens the store of `backend` in `dir`; the SQLite store (FrameStore::Open) by default.
std::unique_ptr<FrameStore> OpenOrDie(const std::string& dir,
                                      const testing::FrameStoreBackend& backend = testing::FrameStoreBackends()[0]) {
  auto store = backend.open(dir);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

void ExpectSameLabels(const Detections& a, const Detections& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].class_id, b[i].class_id);
    EXPECT_EQ(a[i].score, b[i].score);  // exact: labels must round-trip bit for bit
    EXPECT_EQ(a[i].box.x1, b[i].box.x1);
    EXPECT_EQ(a[i].box.y1, b[i].box.y1);
    EXPECT_EQ(a[i].box.x2, b[i].box.x2);
    EXPECT_EQ(a[i].box.y2, b[i].box.y2);
  }
}

void ExpectSameMetadata(const FrameRecord& want, const FrameRecord& got) {
  EXPECT_EQ(want.device_id, got.device_id);
  EXPECT_EQ(want.sequence, got.sequence);
  EXPECT_EQ(want.frame_index, got.frame_index);
  EXPECT_EQ(want.capture_time_s, got.capture_time_s);
  EXPECT_EQ(want.source_width, got.source_width);
  EXPECT_EQ(want.source_height, got.source_height);
  EXPECT_EQ(want.image_score, got.image_score);
  EXPECT_EQ(want.validation, got.validation);
  EXPECT_EQ(want.privacy, got.privacy);
  ExpectSameLabels(want.labels, got.labels);
}

std::vector<uint64_t> Sequences(const std::vector<FrameRecord>& frames) {
  std::vector<uint64_t> out;
  for (const FrameRecord& f : frames) out.push_back(f.sequence);
  return out;
}

// The contract every FrameStore implementation keeps (server/frame_store.h), run against each
// backend of tests/frame_store_backends.h. SqliteFrameStoreTest below covers the SQLite store's
// own layout: files, LOCK, orphan sweep, read-only opening, crashes.
class FrameStoreTest : public ::testing::TestWithParam<testing::FrameStoreBackend> {};

INSTANTIATE_TEST_SUITE_P(Backends, FrameStoreTest, ::testing::ValuesIn(testing::FrameStoreBackends()),
                         testing::FrameStoreBackendName);

TEST_P(FrameStoreTest, PutThenReadBackExactly) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  const bool files = GetParam().files_in_dir;
  if (files) EXPECT_TRUE(fs::exists(tmp.path() + "/index.sqlite"));
  FrameRecord frame = MakeFrame("cam-1", 5);
  frame.labels = {{{1e-7f, -0.0f, 1919.999f, 1079.5f}, 0.3f, 79},
                  {{3.4028235e38f, 1.17549435e-38f, 12345.678f, 0.1f}, std::nextafter(1.0f, 2.0f), 0}};
  frame.image_score = 0.7123457f;
  frame.capture_time_s = 1712345678.123456789;
  auto put = store->Put(frame);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_TRUE(*put);

  auto recent = store->Recent("cam-1", false, 10);
  ASSERT_TRUE(recent.ok()) << recent.status().ToString();
  ASSERT_EQ(recent->size(), 1u);
  const FrameRecord& got = (*recent)[0];
  ExpectSameMetadata(frame, got);
  EXPECT_TRUE(got.jpeg.empty()) << "reads must not carry the image bytes";
  if (files) {
    EXPECT_EQ(got.image_path, tmp.path() + "/frames/cam-1/000000000005.jpg");
    EXPECT_TRUE(fs::is_regular_file(got.image_path));
  }

  auto bytes = store->LoadImage(got);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(*bytes, frame.jpeg);

  // A frame with no labels and a validation frame read back too.
  FrameRecord empty = MakeFrame("cam-1", 6, /*validation=*/true);
  empty.labels.clear();
  ASSERT_TRUE(store->Put(empty).ok());
  auto val = store->Recent("cam-1", true, 10);
  ASSERT_TRUE(val.ok());
  ASSERT_EQ(val->size(), 1u);
  ExpectSameMetadata(empty, (*val)[0]);
}

TEST_P(FrameStoreTest, NanMetadataReadsBackAsNan) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  FrameRecord frame = MakeFrame("cam", 1);
  frame.image_score = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(store->Put(frame).ok());
  auto got = store->Since("cam", 0, 10);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_TRUE(std::isnan((*got)[0].image_score));
}

TEST_P(FrameStoreTest, DuplicateIsNotStoredTwice) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  const FrameRecord frame = MakeFrame("cam", 7);
  auto first = store->Put(frame);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(*first);

  FrameRecord again = frame;  // a resend after a lost ack, possibly re-encoded
  again.jpeg = FakeJpeg("other", 99, 50);
  again.labels.clear();
  auto second = store->Put(again);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(*second);

  EXPECT_EQ(store->Count("cam", false), 1);
  auto frames = store->Since("cam", 0, 100);
  ASSERT_TRUE(frames.ok());
  ASSERT_EQ(frames->size(), 1u);
  ExpectSameMetadata(frame, (*frames)[0]);
  auto bytes = store->LoadImage((*frames)[0]);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, frame.jpeg) << "the duplicate must not replace the stored image";
  // Nothing but the one image in the device directory (no temp leftovers).
  if (GetParam().files_in_dir)
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path() + "/frames/cam"), fs::directory_iterator()), 1);
}

TEST_P(FrameStoreTest, LastSequenceAndCountPerDeviceAndKind) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->LastSequence("a"), 0u);
  EXPECT_EQ(store->Count("a", false), 0);
  // Device a: 1..10, every 5th a validation frame, stored out of order.
  for (uint64_t seq : {3, 1, 2, 10, 4, 5, 6, 9, 8, 7}) {
    ASSERT_TRUE(store->Put(MakeFrame("a", seq, seq % 5 == 0)).ok());
  }
  ASSERT_TRUE(store->Put(MakeFrame("b", 42, true)).ok());
  EXPECT_EQ(store->LastSequence("a"), 10u);
  EXPECT_EQ(store->LastSequence("b"), 42u);
  EXPECT_EQ(store->LastSequence("c"), 0u);
  EXPECT_EQ(store->Count("a", false), 8);
  EXPECT_EQ(store->Count("a", true), 2);
  EXPECT_EQ(store->Count("b", false), 0);
  EXPECT_EQ(store->Count("b", true), 1);
}

TEST_P(FrameStoreTest, RecentReturnsNewestOldestFirst) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  for (uint64_t seq = 1; seq <= 12; ++seq) ASSERT_TRUE(store->Put(MakeFrame("cam", seq, seq % 4 == 0)).ok());
  ASSERT_TRUE(store->Put(MakeFrame("other", 100)).ok());

  auto train = store->Recent("cam", false, 3);
  ASSERT_TRUE(train.ok());
  EXPECT_EQ(Sequences(*train), (std::vector<uint64_t>{9, 10, 11}));
  auto val = store->Recent("cam", true, 2);
  ASSERT_TRUE(val.ok());
  EXPECT_EQ(Sequences(*val), (std::vector<uint64_t>{8, 12}));
  auto all_val = store->Recent("cam", true, 100);
  ASSERT_TRUE(all_val.ok());
  EXPECT_EQ(Sequences(*all_val), (std::vector<uint64_t>{4, 8, 12}));
  auto none = store->Recent("cam", false, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto unknown = store->Recent("nobody", false, 5);
  ASSERT_TRUE(unknown.ok());
  EXPECT_TRUE(unknown->empty());
}

TEST_P(FrameStoreTest, SinceReturnsLaterFramesOfBothKindsInOrder) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  for (uint64_t seq : {5, 1, 3, 2, 4, 6}) ASSERT_TRUE(store->Put(MakeFrame("cam", seq, seq == 4)).ok());
  ASSERT_TRUE(store->Put(MakeFrame("other", 3)).ok());

  auto since2 = store->Since("cam", 2, 100);
  ASSERT_TRUE(since2.ok());
  EXPECT_EQ(Sequences(*since2), (std::vector<uint64_t>{3, 4, 5, 6}));
  EXPECT_TRUE((*since2)[1].validation);
  auto limited = store->Since("cam", 0, 2);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(Sequences(*limited), (std::vector<uint64_t>{1, 2}));
  auto after_last = store->Since("cam", 6, 10);
  ASSERT_TRUE(after_last.ok());
  EXPECT_TRUE(after_last->empty());
  auto huge = store->Since("cam", std::numeric_limits<uint64_t>::max(), 10);
  ASSERT_TRUE(huge.ok());
  EXPECT_TRUE(huge->empty());
}

TEST_P(FrameStoreTest, VersionsLatestAndCheckpointRoundTrip) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  auto none = store->LatestVersion("cam");
  EXPECT_EQ(none.status().code(), Status::Code::kNotFound) << none.status().ToString();

  std::string weights1 = FakeJpeg("w", 1, 100000);
  std::string weights2 = FakeJpeg("w", 2, 4096);
  VersionRecord v1{"cam", 1, 0, "full", "crc:1111", 0.25, 1700000000123, ""};
  VersionRecord v2{"cam", 2, 1, "delta-zstd", "crc:2222", -1, 1700000000456, ""};
  ASSERT_TRUE(store->PutVersion(v2, weights2).ok());  // stored out of order on purpose
  ASSERT_TRUE(store->PutVersion(v1, weights1).ok());
  Status again = store->PutVersion(v1, "different");
  EXPECT_EQ(again.code(), Status::Code::kAlreadyExists) << again.ToString();
  EXPECT_EQ(store->PutVersion(MakeVersion("cam", 0), "x").code(), Status::Code::kInvalidArgument);

  auto latest = store->LatestVersion("cam");
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(latest->device_id, "cam");
  EXPECT_EQ(latest->version, 2u);
  EXPECT_EQ(latest->base_version, 1u);
  EXPECT_EQ(latest->encoding, "delta-zstd");
  EXPECT_EQ(latest->weights_checksum, "crc:2222");
  EXPECT_EQ(latest->val_map50, -1);
  EXPECT_EQ(latest->created_ms, 1700000000456);
  if (GetParam().files_in_dir) EXPECT_EQ(latest->checkpoint_path, tmp.path() + "/models/cam/v2.sdw");
  auto bytes2 = store->LoadCheckpoint(*latest);
  ASSERT_TRUE(bytes2.ok()) << bytes2.status().ToString();
  EXPECT_EQ(*bytes2, weights2);
  auto bytes1 = store->LoadCheckpoint(v1);
  ASSERT_TRUE(bytes1.ok()) << bytes1.status().ToString();
  EXPECT_EQ(*bytes1, weights1) << "AlreadyExists must not have replaced v1's checkpoint";
  EXPECT_EQ(store->LoadCheckpoint(MakeVersion("cam", 3)).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(store->LatestVersion("other").status().code(), Status::Code::kNotFound);
}

TEST_P(FrameStoreTest, DevicesListsFramesAndVersions) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->Devices().empty());
  ASSERT_TRUE(store->Put(MakeFrame("zeta", 1)).ok());
  ASSERT_TRUE(store->Put(MakeFrame("zeta", 2)).ok());
  ASSERT_TRUE(store->Put(MakeFrame("alpha", 1)).ok());
  ASSERT_TRUE(store->PutVersion({"model-only", 1, 0, "full", "c", 0.5, 1, ""}, "w").ok());
  EXPECT_EQ(store->Devices(), (std::vector<std::string>{"alpha", "model-only", "zeta"}));
}

TEST_P(FrameStoreTest, ReopenAfterCloseKeepsEverything) {
  TempDir tmp;
  std::vector<FrameRecord> frames;
  {
    auto store = OpenOrDie(tmp.path(), GetParam());
    ASSERT_TRUE(store);
    for (uint64_t seq = 1; seq <= 6; ++seq) {
      frames.push_back(MakeFrame("cam", seq, seq % 3 == 0));
      ASSERT_TRUE(store->Put(frames.back()).ok());
    }
    ASSERT_TRUE(store->PutVersion({"cam", 1, 0, "full", "sum", 0.5, 7, ""}, "weights-v1").ok());
  }  // closed: a server restart
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->LastSequence("cam"), 6u);
  EXPECT_EQ(store->Count("cam", false), 4);
  EXPECT_EQ(store->Count("cam", true), 2);
  EXPECT_EQ(store->Devices(), (std::vector<std::string>{"cam"}));
  auto all = store->Since("cam", 0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    ExpectSameMetadata(frames[i], (*all)[i]);
    auto bytes = store->LoadImage((*all)[i]);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    EXPECT_EQ(*bytes, frames[i].jpeg);
  }
  auto latest = store->LatestVersion("cam");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->val_map50, 0.5);
  auto weights = store->LoadCheckpoint(*latest);
  ASSERT_TRUE(weights.ok());
  EXPECT_EQ(*weights, "weights-v1");
  // Dedup survives the restart too.
  auto dup = store->Put(frames[0]);
  ASSERT_TRUE(dup.ok());
  EXPECT_FALSE(*dup);
}

TEST(SqliteFrameStoreTest, OrphanFilesAreRemovedAtOpen) {
  TempDir tmp;
  {
    auto store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Put(MakeFrame("cam", 1)).ok());
    ASSERT_TRUE(store->PutVersion(MakeVersion("cam", 1), "w1").ok());
  }
  // What a crash between file and row leaves behind, plus files the store never writes.
  const std::string frames_dir = tmp.path() + "/frames/cam/";
  const std::string models_dir = tmp.path() + "/models/cam/";
  for (const std::string& path : {frames_dir + "000000000002.jpg", frames_dir + "000000000003.jpg.tmp-123-4",
                                  models_dir + "v2.sdw", models_dir + "v3.sdw.tmp-9-9", frames_dir + "notes.txt"}) {
    std::ofstream(path) << "partial";
  }
  fs::create_directories(tmp.path() + "/frames/ghost");
  std::ofstream(tmp.path() + "/frames/ghost/000000000001.jpg") << "no row";

  auto store = OpenOrDie(tmp.path());
  ASSERT_TRUE(store);
  EXPECT_FALSE(fs::exists(frames_dir + "000000000002.jpg"));
  EXPECT_FALSE(fs::exists(frames_dir + "000000000003.jpg.tmp-123-4"));
  EXPECT_FALSE(fs::exists(models_dir + "v2.sdw"));
  EXPECT_FALSE(fs::exists(models_dir + "v3.sdw.tmp-9-9"));
  EXPECT_FALSE(fs::exists(tmp.path() + "/frames/ghost/000000000001.jpg"));
  EXPECT_TRUE(fs::exists(frames_dir + "notes.txt")) << "files the store did not write are left alone";
  EXPECT_TRUE(fs::exists(frames_dir + "000000000001.jpg"));
  EXPECT_TRUE(fs::exists(models_dir + "v1.sdw"));
  EXPECT_EQ(store->LastSequence("cam"), 1u);
  EXPECT_EQ(store->Devices(), (std::vector<std::string>{"cam"}));
  // The sequence whose file was swept can be stored normally.
  auto put = store->Put(MakeFrame("cam", 2));
  ASSERT_TRUE(put.ok());
  EXPECT_TRUE(*put);
}

TEST_P(FrameStoreTest, RejectsBadDeviceIdsAndArguments) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  const std::string too_long(65, 'a');
  for (const std::string& bad :
       {std::string(), std::string("."), std::string(".."), std::string("a/b"), std::string("../escape"),
        std::string("cam 1"), std::string("cam\n"), std::string("caf\xc3\xa9"), too_long}) {
    SCOPED_TRACE("device id '" + bad + "'");
    EXPECT_FALSE(IsValidDeviceId(bad));
    auto put = store->Put(MakeFrame(bad, 1));
    EXPECT_EQ(put.status().code(), Status::Code::kInvalidArgument) << put.status().ToString();
    EXPECT_EQ(store->PutVersion(MakeVersion(bad, 1), "w").code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(store->Recent(bad, false, 5).status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(store->Since(bad, 0, 5).status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(store->LatestVersion(bad).status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(store->LastSequence(bad), 0u);
  }
  EXPECT_FALSE(fs::exists(tmp.path() + "/escape"));
  EXPECT_TRUE(store->Devices().empty());

  const std::string longest(64, 'Z');
  EXPECT_TRUE(IsValidDeviceId("Cam_01.north-gate"));
  EXPECT_TRUE(store->Put(MakeFrame(longest, 1)).ok());

  EXPECT_EQ(store->Put(MakeFrame("cam", 0)).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->Put(MakeFrame("cam", uint64_t{1} << 63)).status().code(), Status::Code::kInvalidArgument);
  FrameRecord no_bytes = MakeFrame("cam", 1);
  no_bytes.jpeg.clear();
  EXPECT_EQ(store->Put(no_bytes).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->LastSequence("cam"), 0u);
}

TEST(SqliteFrameStoreTest, MissingOrTruncatedImageIsDataLossNamingTheFile) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put(MakeFrame("cam", 1)).ok());
  ASSERT_TRUE(store->Put(MakeFrame("cam", 2)).ok());
  auto frames = store->Since("cam", 0, 10);
  ASSERT_TRUE(frames.ok());
  ASSERT_EQ(frames->size(), 2u);

  fs::remove((*frames)[0].image_path);
  auto missing = store->LoadImage((*frames)[0]);
  EXPECT_EQ(missing.status().code(), Status::Code::kDataLoss);
  EXPECT_NE(missing.status().message().find((*frames)[0].image_path), std::string::npos) << missing.status().ToString();

  fs::resize_file((*frames)[1].image_path, 10);
  auto truncated = store->LoadImage((*frames)[1]);
  EXPECT_EQ(truncated.status().code(), Status::Code::kDataLoss);
  EXPECT_NE(truncated.status().message().find((*frames)[1].image_path), std::string::npos)
      << truncated.status().ToString();

  auto not_stored = store->LoadImage(MakeFrame("cam", 3));
  EXPECT_EQ(not_stored.status().code(), Status::Code::kNotFound);
}

TEST(SqliteFrameStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  TempDir tmp;
  auto first = OpenOrDie(tmp.path());
  ASSERT_TRUE(first);
  auto second = FrameStore::Open(tmp.path());
  EXPECT_EQ(second.status().code(), Status::Code::kFailedPrecondition) << second.status().ToString();
  first.reset();
  auto third = FrameStore::Open(tmp.path());
  EXPECT_TRUE(third.ok()) << third.status().ToString();
}

// streamdistill-export reads a store that a running server holds (LOCK) and writes to.
TEST(SqliteFrameStoreTest, ReadOnlyOpenBesideTheServerSeesItsCommitsAndWritesNothing) {
  TempDir tmp;
  auto writer = OpenOrDie(tmp.path());
  ASSERT_TRUE(writer);
  for (uint64_t seq = 1; seq <= 3; ++seq) ASSERT_TRUE(writer->Put(MakeFrame("cam", seq, seq == 2)).ok());
  ASSERT_TRUE(writer->PutVersion(MakeVersion("cam", 1), "weights").ok());

  auto reader = FrameStore::OpenReadOnly(tmp.path());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto frames = (*reader)->Since("cam", 0, 10);
  ASSERT_TRUE(frames.ok()) << frames.status().ToString();
  ASSERT_EQ(Sequences(*frames), (std::vector<uint64_t>{1, 2, 3}));
  for (const FrameRecord& f : *frames) ExpectSameMetadata(MakeFrame("cam", f.sequence, f.sequence == 2), f);
  auto image = (*reader)->LoadImage((*frames)[1]);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(*image, MakeFrame("cam", 2).jpeg);
  auto version = (*reader)->LatestVersion("cam");
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->version, 1u);
  EXPECT_EQ((*reader)->Devices(), std::vector<std::string>{"cam"});

  // The server is not blocked by the reader, and the reader sees what it commits next.
  ASSERT_TRUE(writer->Put(MakeFrame("cam", 4)).ok());
  EXPECT_EQ((*reader)->LastSequence("cam"), 4u);

  EXPECT_EQ((*reader)->Put(MakeFrame("cam", 5)).status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ((*reader)->PutVersion(MakeVersion("cam", 2), "w").code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ((*reader)->Prune("cam", RetentionBounds{1, 0, 0}, PruneKeep{}).status().code(),
            Status::Code::kFailedPrecondition);
  EXPECT_EQ(writer->LastSequence("cam"), 4u);
  EXPECT_EQ(writer->Count("cam", false), 3);

  // With the server stopped the reader still opens, and leaves the index as it was.
  reader = StatusOr<std::unique_ptr<FrameStore>>(Status::Aborted("closed"));
  writer.reset();
  std::ifstream before_file(tmp.path() + "/index.sqlite", std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(before_file)), std::istreambuf_iterator<char>());
  {
    auto stopped = FrameStore::OpenReadOnly(tmp.path());
    ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
    EXPECT_EQ((*stopped)->LastSequence("cam"), 4u);
  }
  std::ifstream after_file(tmp.path() + "/index.sqlite", std::ios::binary);
  const std::string after((std::istreambuf_iterator<char>(after_file)), std::istreambuf_iterator<char>());
  EXPECT_EQ(after, before);
  auto reopened = FrameStore::Open(tmp.path());
  EXPECT_TRUE(reopened.ok()) << "a reader must leave nothing behind that stops the server: "
                             << reopened.status().ToString();
}

TEST(SqliteFrameStoreTest, ReadOnlyOpenReportsADirectoryWithoutAStore) {
  TempDir tmp;
  auto none = FrameStore::OpenReadOnly(tmp.path());
  EXPECT_EQ(none.status().code(), Status::Code::kNotFound) << none.status().ToString();
  EXPECT_FALSE(fs::exists(tmp.path() + "/index.sqlite")) << "a reader creates nothing";
  std::ofstream(tmp.path() + "/index.sqlite") << "";  // SQLite takes an empty file for an empty database
  auto empty = FrameStore::OpenReadOnly(tmp.path());
  EXPECT_EQ(empty.status().code(), Status::Code::kFailedPrecondition) << empty.status().ToString();
}

TEST(SqliteFrameStoreTest, OpenReportsAnUnusableDirectory) {
  TempDir tmp;
  const std::string file = tmp.path() + "/plain-file";
  std::ofstream(file) << "x";
  auto store = FrameStore::Open(file + "/store");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(file), std::string::npos) << store.status().ToString();
}

TEST_P(FrameStoreTest, ConcurrentPutsStoreEachFrameOnce) {
  TempDir tmp;
  auto store = OpenOrDie(tmp.path(), GetParam());
  ASSERT_TRUE(store);
  constexpr int kThreads = 4;
  constexpr uint64_t kFrames = 15;
  // Every thread puts the same frames of a shared device (racing duplicates) and of its own.
  std::vector<int> stored(kThreads, 0);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string own = "own-" + std::to_string(t);
      for (uint64_t seq = 1; seq <= kFrames; ++seq) {
        for (const std::string& device : {std::string("shared"), own}) {
          auto put = store->Put(MakeFrame(device, seq));
          if (!put.ok()) errors[t] = put.status().ToString();
          if (put.ok() && *put && device == "shared") ++stored[t];
        }
        (void)store->Recent("shared", false, 5);  // readers interleave with writers
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(stored[0] + stored[1] + stored[2] + stored[3], static_cast<int>(kFrames))
      << "each shared frame must be reported stored exactly once";
  EXPECT_EQ(store->Count("shared", false), static_cast<int64_t>(kFrames));
  auto shared = store->Since("shared", 0, 100);
  ASSERT_TRUE(shared.ok());
  for (const FrameRecord& f : *shared) {
    auto bytes = store->LoadImage(f);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    EXPECT_EQ(*bytes, FakeJpeg("shared", f.sequence));
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(store->LastSequence("own-" + std::to_string(t)), kFrames);
}

// Reads one 8-byte record from `fd`, waiting at most `timeout_ms`. False on EOF or timeout.
bool ReadReport(int fd, uint64_t* value, int timeout_ms) {
  char buf[sizeof(uint64_t)];
  size_t got = 0;
  while (got < sizeof(buf)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    const ssize_t n = read(fd, buf + got, sizeof(buf) - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  std::memcpy(value, buf, sizeof(buf));
  return true;
}

// The child: opens the store, resumes after the last stored frame and puts frames until it is
// killed, reporting each sequence on `fd` only after Put returned true. Never returns.
[[noreturn]] void PutFramesUntilKilled(const std::string& dir, int fd) {
  auto store = FrameStore::Open(dir);
  if (!store.ok()) _exit(2);
  for (uint64_t seq = (*store)->LastSequence("cam") + 1;; ++seq) {
    // Big enough that the kill often lands mid-write.
    FrameRecord frame = MakeFrame("cam", seq, seq % 5 == 0);
    frame.jpeg = FakeJpeg("cam", seq, 64 * 1024 + seq);
    auto put = (*store)->Put(frame);
    if (!put.ok() || !*put) _exit(3);
    if (write(fd, &seq, sizeof(seq)) != static_cast<ssize_t>(sizeof(seq))) _exit(4);
    if (seq > 100000) _exit(5);  // the parent is gone
  }
}

TEST(SqliteFrameStoreTest, FramesReportedStoredSurviveSigkill) {
  TempDir tmp;
  std::set<uint64_t> reported;
  std::mt19937 rng(1234);
  // Three crash/restart cycles: each child also opens a store a previous kill left behind.
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      PutFramesUntilKilled(tmp.path(), fds[1]);
    }
    close(fds[1]);
    const int want = 8 + round * 3;
    uint64_t seq = 0;
    for (int i = 0; i < want; ++i) {
      ASSERT_TRUE(ReadReport(fds[0], &seq, 10000)) << "child stopped reporting";
      reported.insert(seq);
    }
    // Let it get some way into the next Put (file write, fsyncs, commit) before the kill.
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(child, &wstatus, 0), child);
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "child exited early: " << wstatus;
    // Reports written before the kill are still in the pipe.
    while (ReadReport(fds[0], &seq, 0)) reported.insert(seq);
    close(fds[0]);
  }

  auto store = OpenOrDie(tmp.path());
  ASSERT_TRUE(store);
  ASSERT_FALSE(reported.empty());
  for (uint64_t seq : reported) {
    FrameRecord probe;
    probe.device_id = "cam";
    probe.sequence = seq;
    auto bytes = store->LoadImage(probe);
    ASSERT_TRUE(bytes.ok()) << "reported frame " << seq << ": " << bytes.status().ToString();
    EXPECT_EQ(*bytes, FakeJpeg("cam", seq, 64 * 1024 + seq)) << "frame " << seq;
  }
  // Frames are stored in sequence order, so what is stored is exactly 1..LastSequence, and
  // every directory entry belongs to a row (the orphans of the kills are gone).
  const uint64_t last = store->LastSequence("cam");
  EXPECT_GE(last, *reported.rbegin());
  EXPECT_LE(last, *reported.rbegin() + 1);  // at most the one Put the kill interrupted after commit
  auto all = store->Since("cam", 0, 100000);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), last);
  for (size_t i = 0; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].sequence, i + 1);
    ExpectSameMetadata(MakeFrame("cam", i + 1, (i + 1) % 5 == 0), (*all)[i]);
  }
  std::set<std::string> files;
  for (const auto& entry : fs::directory_iterator(tmp.path() + "/frames/cam")) {
    files.insert(entry.path().filename().string());
  }
  EXPECT_EQ(files.size(), all->size()) << "stray files after reopening";
}

}  // namespace
}  // namespace sd
