#include "common/video/frame_source.h"
#include "tests/fake_clock.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "common/video/reopening_source.h"
#include "common/video/synthetic_scene.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

const char kVideo[] = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";  // 795 frames, 10 fps

std::unique_ptr<FrameSource> Open(const FrameSourceOptions& options, Clock* clock = Clock::Real()) {
  StatusOr<std::unique_ptr<FrameSource>> source = OpenFrameSource(options, clock);
  EXPECT_TRUE(source.ok()) << source.status().ToString();
  return source.ok() ? std::move(source).value() : nullptr;
}

FrameSourceOptions Uri(const std::string& uri) {
  FrameSourceOptions options;
  options.uri = uri;
  return options;
}

// Reads up to `max` frames; fails the test on an error.
std::vector<Frame> ReadAll(FrameSource* source, int max = 100000) {
  std::vector<Frame> frames;
  Frame frame;
  while (static_cast<int>(frames.size()) < max) {
    StatusOr<bool> more = source->Next(&frame);
    EXPECT_TRUE(more.ok()) << more.status().ToString();
    if (!more.ok() || !*more) break;
    frames.push_back(std::move(frame));
    frame = Frame();
  }
  return frames;
}

std::vector<int64_t> Indices(const std::vector<Frame>& frames) {
  std::vector<int64_t> indices;
  for (const Frame& f : frames) indices.push_back(f.index);
  return indices;
}

bool SamePixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("frame_source_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

TEST(FrameSourceTest, VideoFileReportsItsProperties) {
  std::unique_ptr<FrameSource> source = Open(Uri(kVideo));
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->frame_count(), 795);
  EXPECT_DOUBLE_EQ(source->fps(), 10);
  EXPECT_NE(source->description().find("vtest.avi"), std::string::npos);
  Frame frame;
  ASSERT_TRUE(*source->Next(&frame));
  EXPECT_EQ(frame.index, 0);
  EXPECT_EQ(frame.bgr.cols, 768);
  EXPECT_EQ(frame.bgr.rows, 576);
  EXPECT_EQ(frame.bgr.type(), CV_8UC3);
  EXPECT_TRUE(frame.ground_truth.empty());
}

TEST(FrameSourceTest, ReadsARangeWithStride) {
  FrameSourceOptions options = Uri(kVideo);
  options.start_frame = 100;
  options.end_frame = 130;
  options.stride = 3;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get());
  EXPECT_EQ(Indices(frames), (std::vector<int64_t>{100, 103, 106, 109, 112, 115, 118, 121, 124, 127}));
  Frame frame;
  EXPECT_FALSE(*source->Next(&frame));  // stays ended
  EXPECT_FALSE(*source->Next(&frame));
}

TEST(FrameSourceTest, StartFrameGivesTheSameFrameAsSequentialReading) {
  // Reference: the 600th and 605th frames decoded in order, without any seeking.
  cv::VideoCapture capture(kVideo);
  ASSERT_TRUE(capture.isOpened());
  cv::Mat frame600, frame605;
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(capture.grab());
  ASSERT_TRUE(capture.read(frame600));
  for (int i = 601; i < 605; ++i) ASSERT_TRUE(capture.grab());
  ASSERT_TRUE(capture.read(frame605));

  FrameSourceOptions options = Uri(kVideo);
  options.start_frame = 600;
  options.stride = 5;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get(), 2);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].index, 600);
  EXPECT_TRUE(SamePixels(frames[0].bgr, frame600));
  EXPECT_EQ(frames[1].index, 605);
  EXPECT_TRUE(SamePixels(frames[1].bgr, frame605));
}

TEST(FrameSourceTest, StopsAtTheEndOfTheFile) {
  FrameSourceOptions options = Uri(kVideo);
  options.start_frame = 790;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(Indices(ReadAll(source.get())), (std::vector<int64_t>{790, 791, 792, 793, 794}));
}

TEST(FrameSourceTest, StartPastTheEndGivesNoFrames) {
  FrameSourceOptions options = Uri(kVideo);
  options.start_frame = 5000;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  Frame frame;
  EXPECT_FALSE(*source->Next(&frame));

  options.loop = true;  // nothing to loop over: an error, not a spin
  source = Open(options);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->Next(&frame).status().code(), Status::Code::kInvalidArgument);
}

TEST(FrameSourceTest, LoopsAtTheEndOfTheFileWithRisingIndices) {
  FrameSourceOptions options = Uri(kVideo);
  options.start_frame = 792;
  options.loop = true;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get(), 7);
  EXPECT_EQ(Indices(frames), (std::vector<int64_t>{792, 793, 794, 795, 796, 797, 798}));
  EXPECT_TRUE(SamePixels(frames[3].bgr, frames[0].bgr));  // 795 is frame 792 again
  EXPECT_TRUE(SamePixels(frames[6].bgr, frames[0].bgr));
  EXPECT_FALSE(SamePixels(frames[1].bgr, frames[0].bgr));
}

TEST(FrameSourceTest, LoopsOverARangeWithStride) {
  FrameSourceOptions options = Uri(kVideo);
  options.start_frame = 10;
  options.end_frame = 15;
  options.stride = 2;
  options.loop = true;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get(), 6);
  // Frames 10, 12, 14 of the file, then again 5 positions on.
  EXPECT_EQ(Indices(frames), (std::vector<int64_t>{10, 12, 14, 15, 17, 19}));
  EXPECT_TRUE(SamePixels(frames[3].bgr, frames[0].bgr));
  EXPECT_TRUE(SamePixels(frames[5].bgr, frames[2].bgr));
}

TEST(FrameSourceTest, LoopsFromTheFirstFrame) {
  FrameSourceOptions options = Uri(kVideo);
  options.end_frame = 3;
  options.loop = true;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get(), 7);
  EXPECT_EQ(Indices(frames), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(SamePixels(frames[3].bgr, frames[0].bgr));
  EXPECT_TRUE(SamePixels(frames[5].bgr, frames[2].bgr));
  EXPECT_NE(source->description().find("looping"), std::string::npos);
}

TEST(FrameSourceTest, RealtimePacesWithTheClock) {
  FakeClock clock(100.0);
  FrameSourceOptions options = Uri("synthetic:frames=20");  // 10 fps
  options.realtime = true;
  std::unique_ptr<FrameSource> source = Open(options, &clock);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get(), 4);
  ASSERT_EQ(frames.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(frames[i].capture_time_s, 100.0 + 0.1 * i, 1e-9);
  EXPECT_EQ(clock.sleeps(), 3);

  // A consumer that falls behind gets the next frame at once, then pacing resumes.
  clock.Advance(1.0);
  Frame frame;
  ASSERT_TRUE(*source->Next(&frame));
  EXPECT_DOUBLE_EQ(frame.capture_time_s, 101.3);
  EXPECT_EQ(clock.sleeps(), 3);
}

TEST(FrameSourceTest, RealtimePacesAStridedFileAtItsOwnRate) {
  FakeClock clock;
  FrameSourceOptions options = Uri(kVideo);
  options.realtime = true;
  options.stride = 2;
  std::unique_ptr<FrameSource> source = Open(options, &clock);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> frames = ReadAll(source.get(), 3);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_NEAR(frames[1].capture_time_s - frames[0].capture_time_s, 0.2, 1e-9);  // 2 frames at 10 fps
  EXPECT_NEAR(frames[2].capture_time_s - frames[1].capture_time_s, 0.2, 1e-9);

  options.fps_override = 40;
  source = Open(options, &clock);
  ASSERT_NE(source, nullptr);
  const std::vector<Frame> faster = ReadAll(source.get(), 2);
  ASSERT_EQ(faster.size(), 2u);
  EXPECT_NEAR(faster[1].capture_time_s - faster[0].capture_time_s, 0.05, 1e-9);
}

TEST(FrameSourceTest, WithoutRealtimeNeverSleeps) {
  FakeClock clock;
  std::unique_ptr<FrameSource> source = Open(Uri("synthetic:frames=10"), &clock);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(ReadAll(source.get()).size(), 10u);
  EXPECT_EQ(clock.sleeps(), 0);
}

TEST(FrameSourceTest, ImageFolderSkipsCorruptImages) {
  TempDir dir;
  for (int i = 0; i < 5; ++i) {
    const std::string name = "img_" + std::to_string(i) + (i == 4 ? ".PNG" : i == 1 ? ".jpg" : ".png");
    if (i == 2) {
      WriteText(dir.file("img_2.png"), "not a png");
    } else {
      ASSERT_TRUE(cv::imwrite(dir.file(name), cv::Mat(24, 32, CV_8UC3, cv::Scalar::all(40 * i))));
    }
  }
  WriteText(dir.file("notes.txt"), "ignored");
  fs::create_directory(dir.file("sub.png"));  // a folder, not an image

  std::unique_ptr<FrameSource> source = Open(Uri(dir.path()));
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->frame_count(), 5);
  EXPECT_DOUBLE_EQ(source->fps(), 10);
  const std::vector<Frame> frames = ReadAll(source.get());
  EXPECT_EQ(Indices(frames), (std::vector<int64_t>{0, 1, 3, 4}));
  EXPECT_EQ(source->skipped_count(), 1);
  for (const Frame& f : frames) {
    ASSERT_EQ(f.bgr.type(), CV_8UC3);
    EXPECT_NEAR(cv::mean(f.bgr)[0], 40 * f.index, 2) << "frame " << f.index;  // jpeg is lossy
  }
}

TEST(FrameSourceTest, ImageFolderOfOnlyCorruptImagesDoesNotLoopForever) {
  TempDir dir;
  WriteText(dir.file("a.jpg"), "garbage");
  WriteText(dir.file("b.png"), "garbage");
  FrameSourceOptions options = Uri(dir.path());
  options.loop = true;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  Frame frame;
  const StatusOr<bool> next = source->Next(&frame);
  EXPECT_EQ(next.status().code(), Status::Code::kDataLoss);
  EXPECT_NE(next.status().message().find(dir.path()), std::string::npos);
}

TEST(FrameSourceTest, EmptyFolderIsNotFound) {
  TempDir dir;
  const auto source = OpenFrameSource(Uri(dir.path()));
  EXPECT_EQ(source.status().code(), Status::Code::kNotFound);
}

TEST(FrameSourceTest, MissingPathIsNotFound) {
  const std::string path = "/nonexistent/streamdistill/video.avi";
  const auto source = OpenFrameSource(Uri(path));
  EXPECT_EQ(source.status().code(), Status::Code::kNotFound);
  EXPECT_NE(source.status().message().find(path), std::string::npos);
}

TEST(FrameSourceTest, UnopenableFileIsInvalidArgument) {
  TempDir dir;
  const std::string path = dir.file("broken.avi");
  WriteText(path, "this is not a video file");
  const auto source = OpenFrameSource(Uri(path));
  EXPECT_EQ(source.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(source.status().message().find(path), std::string::npos);
}

TEST(FrameSourceTest, SyntheticSourceCarriesGroundTruth) {
  FrameSourceOptions options = Uri("synthetic:seed=3,frames=40,classes=2,drift_at=20");
  options.start_frame = 10;
  std::unique_ptr<FrameSource> source = Open(options);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->frame_count(), 40);
  EXPECT_DOUBLE_EQ(source->fps(), 10);
  const std::vector<Frame> frames = ReadAll(source.get());
  ASSERT_EQ(frames.size(), 30u);

  SyntheticSceneOptions scene_options;
  scene_options.seed = 3;
  scene_options.num_classes = 2;
  scene_options.drift_at_frame = 20;
  const SyntheticScene scene = SyntheticScene::Create(scene_options).value();
  size_t boxes = 0;
  for (const Frame& f : frames) {
    const SyntheticFrame expected = scene.Render(f.index);
    EXPECT_TRUE(SamePixels(f.bgr, expected.bgr)) << "frame " << f.index;
    EXPECT_EQ(f.ground_truth.size(), expected.ground_truth.size());
    for (const Detection& d : f.ground_truth) EXPECT_LT(d.class_id, 2);
    boxes += f.ground_truth.size();
  }
  EXPECT_GT(boxes, 0u);
}

TEST(FrameSourceTest, RejectsBadUrisAndOptions) {
  for (const std::string uri : {"synthetic:bogus=1", "synthetic:classes=x", "synthetic:seed",
                                "synthetic:classes=5", "synthetic:activity=x", "synthetic:activity=1.5",
                                "camera:abc", ""}) {
    EXPECT_EQ(OpenFrameSource(Uri(uri)).status().code(), Status::Code::kInvalidArgument) << uri;
  }
  FrameSourceOptions options = Uri("synthetic:");
  options.stride = 0;
  EXPECT_EQ(OpenFrameSource(options).status().code(), Status::Code::kInvalidArgument);
  options = Uri("synthetic:");
  options.start_frame = 10;
  options.end_frame = 10;
  EXPECT_EQ(OpenFrameSource(options).status().code(), Status::Code::kInvalidArgument);
}

TEST(FrameSourceTest, UnreachableStreamIsUnavailableAndHidesCredentials) {
  const auto start = std::chrono::steady_clock::now();
  const auto source = OpenFrameSource(Uri("rtsp://user:secret@127.0.0.1:1/stream"));
  EXPECT_EQ(source.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(source.status().message().find("127.0.0.1:1/stream"), std::string::npos);
  EXPECT_EQ(source.status().message().find("secret"), std::string::npos);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5);
}

TEST(FrameSourceTest, MissingCameraIsUnavailable) {
  const auto source = OpenFrameSource(Uri("camera:63"));
  EXPECT_EQ(source.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(source.status().message().find("camera:63"), std::string::npos);
}

// A live source that plays a script: `frames` frames of `size`, then fails as a dropped stream
// does (or with `final_error`, or ends when that is Ok).
class ScriptedLiveSource : public FrameSource {
 public:
  ScriptedLiveSource(int frames, cv::Size size, Status final_error = Status::Unavailable("stream: read failed"))
      : frames_(frames), size_(size), final_error_(std::move(final_error)) {}
  StatusOr<bool> Next(Frame* frame) override {
    if (next_ >= frames_) {
      if (final_error_.ok()) return false;
      return final_error_;
    }
    frame->bgr = cv::Mat(size_, CV_8UC3, cv::Scalar::all(next_));
    frame->index = next_++;
    return true;
  }
  double fps() const override { return 25; }
  int64_t frame_count() const override { return -1; }
  std::string description() const override { return "scripted " + std::to_string(size_.width); }

 private:
  const int frames_;
  const cv::Size size_;
  const Status final_error_;
  int next_ = 0;
};

TEST(ReopeningSourceTest, ReopensADroppedSourceWithBackOffAndCountsTheOutage) {
  FakeClock clock(100);
  std::vector<double> attempts;  // clock times of the reopen attempts
  auto opener = [&]() -> StatusOr<std::unique_ptr<FrameSource>> {
    attempts.push_back(clock.NowSeconds());
    if (attempts.size() <= 3) return Status::Unavailable("stream: cannot open");
    // It comes back at another resolution.
    return std::unique_ptr<FrameSource>(new ScriptedLiveSource(4, cv::Size(32, 24)));
  };
  ReopenOptions options;
  options.backoff_initial_s = 0.5;
  options.backoff_max_s = 1.5;
  ReopeningSource source(std::make_unique<ScriptedLiveSource>(3, cv::Size(64, 48)), opener, options, &clock);
  std::vector<Frame> frames = ReadAll(&source, 5);
  ASSERT_EQ(frames.size(), 5u);
  // The indices go on across the outage; the new frames have the new size.
  EXPECT_EQ(Indices(frames), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(frames[2].bgr.cols, 64);
  EXPECT_EQ(frames[3].bgr.cols, 32);
  ASSERT_EQ(attempts.size(), 4u);
  // Waits double from 0.5 s up to the 1.5 s ceiling, each jittered into [half, whole).
  const double ceilings[] = {0.5, 1.0, 1.5, 1.5};
  double previous = 100;
  for (size_t i = 0; i < attempts.size(); ++i) {
    const double wait = attempts[i] - previous;
    EXPECT_GE(wait, ceilings[i] * 0.5 - 1e-9) << "attempt " << i;
    EXPECT_LT(wait, ceilings[i] + 1e-9) << "attempt " << i;
    previous = attempts[i];
  }
  const SourceHealth health = source.health();
  EXPECT_TRUE(health.up);
  EXPECT_EQ(health.drops, 1);
  EXPECT_EQ(health.reconnects, 1);
  EXPECT_EQ(health.failed_opens, 3);
  EXPECT_NEAR(health.outage_s, attempts.back() - 100, 1e-9);
  EXPECT_EQ(source.description(), "scripted 32");
}

TEST(ReopeningSourceTest, ASourceThatOpensButGivesNoFrameStaysInTheSameOutage) {
  // A stream that opens and fails at once (a camera still booting) must not reset the back-off
  // nor count as a new drop each time.
  FakeClock clock(0);
  std::vector<double> attempts;
  auto opener = [&]() -> StatusOr<std::unique_ptr<FrameSource>> {
    attempts.push_back(clock.NowSeconds());
    return std::unique_ptr<FrameSource>(new ScriptedLiveSource(attempts.size() < 3 ? 0 : 2, cv::Size(8, 8)));
  };
  ReopenOptions options;
  options.backoff_initial_s = 1;
  options.backoff_max_s = 8;
  ReopeningSource source(std::make_unique<ScriptedLiveSource>(1, cv::Size(8, 8)), opener, options, &clock);
  EXPECT_EQ(ReadAll(&source, 3).size(), 3u);
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_GE(attempts[2] - attempts[1], 2.0 - 1e-9) << "the third wait must be the doubled one";
  const SourceHealth health = source.health();
  EXPECT_TRUE(health.up);
  EXPECT_EQ(health.drops, 1);
  EXPECT_EQ(health.reconnects, 1);
  EXPECT_DOUBLE_EQ(health.outage_s, attempts.back());
}

TEST(ReopeningSourceTest, OutageCountsWhileItLastsAndInterruptEndsTheWait) {
  FakeClock clock(0);
  int attempts = 0;
  ReopeningSource* self = nullptr;
  auto opener = [&]() -> StatusOr<std::unique_ptr<FrameSource>> {
    if (++attempts == 5) self->Interrupt();  // Stop() from another thread, as the edge does
    return Status::Unavailable("camera:0: cannot open");
  };
  ReopenOptions options;
  options.backoff_initial_s = 1;
  options.backoff_max_s = 2;
  ReopeningSource source(std::make_unique<ScriptedLiveSource>(1, cv::Size(8, 8)), opener, options, &clock);
  self = &source;
  Frame frame;
  ASSERT_TRUE(*source.Next(&frame));
  StatusOr<bool> next = source.Next(&frame);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_FALSE(*next);  // interrupted, not an error
  EXPECT_EQ(attempts, 5);
  const SourceHealth health = source.health();
  EXPECT_FALSE(health.up);
  EXPECT_EQ(health.drops, 1);
  EXPECT_EQ(health.reconnects, 0);
  EXPECT_EQ(health.failed_opens, 5);
  EXPECT_GT(health.outage_s, 0);
  EXPECT_DOUBLE_EQ(health.outage_s, clock.NowSeconds());  // the outage is still going on
}

TEST(ReopeningSourceTest, EndsAndOtherErrorsAreNotReopened) {
  FakeClock clock;
  int attempts = 0;
  auto opener = [&]() -> StatusOr<std::unique_ptr<FrameSource>> {
    ++attempts;
    return Status::Unavailable("unused");
  };
  ReopeningSource ended(std::make_unique<ScriptedLiveSource>(2, cv::Size(8, 8), Status::Ok()), opener, {}, &clock);
  EXPECT_EQ(ReadAll(&ended).size(), 2u);
  ReopeningSource broken(std::make_unique<ScriptedLiveSource>(0, cv::Size(8, 8), Status::DataLoss("corrupt")), opener,
                         {}, &clock);
  Frame frame;
  EXPECT_EQ(broken.Next(&frame).status().code(), Status::Code::kDataLoss);
  EXPECT_EQ(attempts, 0);
  EXPECT_EQ(broken.health().drops, 0);
}

TEST(ReopeningSourceTest, BackOffMustBeOrdered) {
  ReopenOptions options;
  options.backoff_initial_s = 2;
  options.backoff_max_s = 1;
  EXPECT_EQ(options.Validate().code(), Status::Code::kInvalidArgument);
  options.backoff_initial_s = 0;
  EXPECT_EQ(options.Validate().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(ReopenOptions().Validate().ok());
}

}  // namespace
}  // namespace sd
