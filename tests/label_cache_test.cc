#include "common/teacher/label_cache.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/scoped_temp_dir.h"
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

namespace sd {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir : public testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("sd_label_cache_test") {}
};

// Solid grey frames whose levels differ, so the fake teacher's labels differ per frame.
void WriteVideo(const std::string& path, int frames, int level_offset = 0) {
  cv::VideoWriter writer(path, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, cv::Size(64, 48));
  ASSERT_TRUE(writer.isOpened()) << path;
  for (int i = 0; i < frames; ++i) {
    writer.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar::all(20 + 40 * i + level_offset)));
  }
}

// Labels a frame from its mean level: (level / 40) % 3 detections. Counts its calls.
class CountingTeacher : public Teacher {
 public:
  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    ++calls;
    if (fail_at_call == calls) return Status::Internal("fake failure");
    const float level = static_cast<float>(cv::mean(bgr)[0]);
    Detections out;
    for (int k = 0; k < static_cast<int>(level / 40) % 3; ++k) {
      out.push_back({{1.0f * k, 2.0f, 10.5f + k, 20.25f}, level / 255.0f, k});
    }
    return out;
  }
  std::string Fingerprint() const override { return "counting version=" + version; }

  int calls = 0;
  int fail_at_call = -1;
  std::string version = "1";
};

bool SameLabels(const std::vector<Detections>& a, const std::vector<Detections>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size()) return false;
    for (size_t k = 0; k < a[i].size(); ++k) {
      const Detection &x = a[i][k], &y = b[i][k];
      if (x.class_id != y.class_id || x.score != y.score || x.box.x1 != y.box.x1 ||
          x.box.y1 != y.box.y1 || x.box.x2 != y.box.x2 || x.box.y2 != y.box.y2) {
        return false;
      }
    }
  }
  return true;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<std::string> LabelFiles(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

const std::vector<Detections> kLabels = {
    {{{0.1f, 1e-7f, 123456.79f, 3.0f}, 0.333333343f, 0}, {{-1.5f, 2.0f, 3.25f, 4.0f}, -0.7f, 12}},
    {},
    {{{10.0f, 20.0f, 30.0f, 40.0f}, 1.0f, 1}},
};

// ---------------------------------------------------------------------------------------------
// Label files.

TEST(LabelFileTest, RoundTripIsExactAndReadable) {
  TempDir dir;
  const std::string path = dir.File("x.labels");
  ASSERT_TRUE(SaveLabels(path, "video=v teacher=t a=1", kLabels).ok());
  auto loaded = LoadLabels(path, "video=v teacher=t a=1");
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(SameLabels(*loaded, kLabels));
  const std::string text = ReadAll(path);
  EXPECT_EQ(text.rfind("streamdistill-labels 1 frames=3 key=video=v teacher=t a=1\nframe 0 2\n"
                       "0 0.33333334 0.1 1e-07 123456.79 3\n", 0), 0u) << text;
  EXPECT_EQ(LabelFiles(dir.path()).size(), 1u);  // no temp file left behind
}

TEST(LabelFileTest, MismatchedOrDamagedFilesAreRejected) {
  TempDir dir;
  const std::string path = dir.File("x.labels");
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(SaveLabels(path, "k", kLabels).ok());
  const std::string good = ReadAll(path);

  auto other_key = LoadLabels(path, "k2");
  EXPECT_EQ(other_key.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(other_key.status().message().find(path), std::string::npos);

  WriteAll(path, good.substr(0, good.size() - 6));  // cut off "end 3\n"
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kDataLoss);
  WriteAll(path, good.substr(0, good.size() / 2));  // cut mid-record
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kDataLoss);
  std::string bad_number = good;
  bad_number.replace(bad_number.find("0.33333334"), 10, "0.3333x334");
  WriteAll(path, bad_number);
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kDataLoss);
  std::string v2 = good;
  v2.replace(v2.find(" 1 "), 3, " 2 ");
  WriteAll(path, v2);
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kFailedPrecondition);
  WriteAll(path, "garbage\n");
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kDataLoss);
  WriteAll(path, good + "frame 3 0\n");
  EXPECT_EQ(LoadLabels(path, "k").status().code(), Status::Code::kDataLoss);
}

TEST(LabelFileTest, KeyMustBeOneLine) {
  TempDir dir;
  EXPECT_EQ(SaveLabels(dir.File("x.labels"), "a\nb", kLabels).code(), Status::Code::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Labelling videos through the cache.

TEST(LabelVideoCachedTest, SecondCallReadsTheCache) {
  TempDir dir;
  const std::string video = dir.File("clip.avi");
  WriteVideo(video, 6);
  const std::string cache = dir.File("cache");  // created on demand
  CountingTeacher teacher;
  std::vector<std::pair<int64_t, int64_t>> progress;
  auto first = LabelVideoCached(video, teacher, cache,
                                [&](int64_t done, int64_t total) { progress.emplace_back(done, total); });
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(teacher.calls, 6);
  ASSERT_EQ(first->size(), 6u);
  EXPECT_EQ((*first)[0].size(), 0u);  // level 20
  EXPECT_EQ((*first)[1].size(), 1u);  // level 60
  EXPECT_EQ((*first)[2].size(), 2u);  // level 100
  ASSERT_EQ(progress.size(), 6u);
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{6}, int64_t{6}));

  auto second = LabelVideoCached(video, teacher, cache);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(teacher.calls, 6);  // not relabelled
  EXPECT_TRUE(SameLabels(*first, *second));
  const std::vector<std::string> files = LabelFiles(cache);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].rfind("clip.", 0), 0u);
  EXPECT_NE(files[0].find(".labels"), std::string::npos);
}

TEST(LabelVideoCachedTest, ChangedFingerprintRelabelsAndKeepsBothEntries) {
  TempDir dir;
  const std::string video = dir.File("clip.avi");
  WriteVideo(video, 3);
  CountingTeacher teacher;
  ASSERT_TRUE(LabelVideoCached(video, teacher, dir.path()).ok());
  EXPECT_EQ(teacher.calls, 3);
  teacher.version = "2";
  ASSERT_TRUE(LabelVideoCached(video, teacher, dir.path()).ok());
  EXPECT_EQ(teacher.calls, 6);
  teacher.version = "1";
  ASSERT_TRUE(LabelVideoCached(video, teacher, dir.path()).ok());
  EXPECT_EQ(teacher.calls, 6);
}

TEST(LabelVideoCachedTest, ChangedVideoContentRelabels) {
  TempDir dir;
  const std::string video = dir.File("clip.avi");
  WriteVideo(video, 3);
  CountingTeacher teacher;
  ASSERT_TRUE(LabelVideoCached(video, teacher, dir.path()).ok());
  WriteVideo(video, 3, /*level_offset=*/40);
  auto relabelled = LabelVideoCached(video, teacher, dir.path());
  ASSERT_TRUE(relabelled.ok());
  EXPECT_EQ(teacher.calls, 6);
  EXPECT_EQ((*relabelled)[0].size(), 1u);  // level 60 now
}

TEST(LabelVideoCachedTest, DamagedEntryIsRelabelledAndRewritten) {
  TempDir dir;
  const std::string video = dir.File("clip.avi");
  WriteVideo(video, 4);
  CountingTeacher teacher;
  auto first = LabelVideoCached(video, teacher, dir.File("cache"));
  ASSERT_TRUE(first.ok());
  auto key = LabelCacheKey(video, teacher);
  ASSERT_TRUE(key.ok());
  const std::string entry = LabelCachePath(dir.File("cache"), video, *key);
  const std::string good = ReadAll(entry);
  WriteAll(entry, good.substr(0, good.size() - 10));

  auto second = LabelVideoCached(video, teacher, dir.File("cache"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(teacher.calls, 8);
  EXPECT_TRUE(SameLabels(*first, *second));
  EXPECT_EQ(ReadAll(entry), good);
}

TEST(LabelVideoCachedTest, ErrorsNameTheVideoAndFrame) {
  TempDir dir;
  CountingTeacher teacher;
  auto missing = LabelVideoCached(dir.File("none.avi"), teacher, dir.path());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_NE(missing.status().message().find("none.avi"), std::string::npos);

  const std::string not_video = dir.File("text.avi");
  WriteAll(not_video, "not a video\n");
  EXPECT_FALSE(LabelVideoCached(not_video, teacher, dir.path()).ok());

  const std::string video = dir.File("clip.avi");
  WriteVideo(video, 3);
  teacher.fail_at_call = teacher.calls + 2;
  auto failed = LabelVideoCached(video, teacher, dir.File("cache"));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), Status::Code::kInternal);
  EXPECT_NE(failed.status().message().find("clip.avi frame 1: fake failure"), std::string::npos)
      << failed.status().ToString();
  EXPECT_FALSE(fs::exists(dir.File("cache")));  // nothing cached for a failed run
}

}  // namespace
}  // namespace sd
