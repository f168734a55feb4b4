#include "edge/detection_sink.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/scoped_temp_dir.h"
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

namespace sd {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir : public testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("sd_detection_sink_test") {}
};

std::vector<nlohmann::json> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
    out.push_back(nlohmann::json::parse(line, nullptr, false));
  }
  return out;
}

std::unique_ptr<DetectionSink> OpenOrDie(const DetectionSinkOptions& options) {
  StatusOr<std::unique_ptr<DetectionSink>> s = DetectionSink::Open(options);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(DetectionSinkTest, WritesOneRoundedJsonObjectPerLine) {
  TempDir dir;
  DetectionSinkOptions options;
  options.path = dir.File("out/detections.jsonl");  // the parent is created
  std::unique_ptr<DetectionSink> sink = OpenOrDie(options);
  ASSERT_NE(sink, nullptr);
  const Detections two = {{{10.123f, 20.456f, 30.789f, 40.001f}, 0.91234f, 0},
                          {{1.0f, 2.0f, 3.5f, 4.25f}, 0.5f, 2}};
  ASSERT_TRUE(sink->Write(0, 0.0, 0, two, nullptr).ok());
  ASSERT_TRUE(sink->Write(1, 1.0 / 30, 3, {}, nullptr).ok());
  EXPECT_EQ(sink->lines_written(), 2);
  sink.reset();

  const std::vector<nlohmann::json> lines = ReadLines(options.path);
  ASSERT_EQ(lines.size(), 2u);
  const nlohmann::json& a = lines[0];
  EXPECT_EQ(a["frame"], 0);
  EXPECT_EQ(a["time"], 0.0);
  EXPECT_EQ(a["model_version"], 0);
  ASSERT_EQ(a["detections"].size(), 2u);
  EXPECT_EQ(a["detections"][0]["class"], 0);
  EXPECT_DOUBLE_EQ(a["detections"][0]["score"].get<double>(), 0.912);
  EXPECT_EQ(a["detections"][0]["box"], nlohmann::json({10.12, 20.46, 30.79, 40.0}));
  EXPECT_EQ(a["detections"][1]["class"], 2);
  EXPECT_DOUBLE_EQ(a["detections"][1]["score"].get<double>(), 0.5);
  EXPECT_EQ(a["detections"][1]["box"], nlohmann::json({1.0, 2.0, 3.5, 4.25}));
  const nlohmann::json& b = lines[1];
  EXPECT_EQ(b["frame"], 1);
  EXPECT_DOUBLE_EQ(b["time"].get<double>(), 0.033);
  EXPECT_EQ(b["model_version"], 3);
  EXPECT_TRUE(b["detections"].is_array());
  EXPECT_TRUE(b["detections"].empty());
}

TEST(DetectionSinkTest, LineFormatIsCompactAndOrdered) {
  const std::string line = DetectionJsonLine(12, 0.4, 3, {{{1, 2, 3, 4}, 0.91f, 0}});
  EXPECT_EQ(line,
            "{\"frame\":12,\"time\":0.4,\"model_version\":3,"
            "\"detections\":[{\"class\":0,\"score\":0.91,\"box\":[1.0,2.0,3.0,4.0]}]}");
  // A NaN score still gives valid JSON.
  EXPECT_TRUE(nlohmann::json::accept(DetectionJsonLine(1, 0, 0, {{{0, 0, 1, 1}, NAN, 0}})));
}

TEST(DetectionSinkTest, AppendsAcrossOpens) {
  TempDir dir;
  DetectionSinkOptions options;
  options.path = dir.File("d.jsonl");
  for (int run = 0; run < 2; ++run) {
    std::unique_ptr<DetectionSink> sink = OpenOrDie(options);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(sink->Write(run * 3 + i, i, 1, {}, nullptr).ok());
  }
  const std::vector<nlohmann::json> lines = ReadLines(options.path);
  ASSERT_EQ(lines.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(lines[i]["frame"], i);
}

TEST(DetectionSinkTest, LinesFromSeveralThreadsDoNotInterleave) {
  TempDir dir;
  DetectionSinkOptions options;
  options.path = dir.File("d.jsonl");
  std::unique_ptr<DetectionSink> sink = OpenOrDie(options);
  Detections many(20, Detection{{1, 2, 3, 4}, 0.5f, 0});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) EXPECT_TRUE(sink->Write(t * 1000 + i, 0, 0, many, nullptr).ok());
    });
  }
  for (std::thread& th : threads) th.join();
  sink.reset();
  const std::vector<nlohmann::json> lines = ReadLines(options.path);
  ASSERT_EQ(lines.size(), 800u);
  for (const nlohmann::json& l : lines) EXPECT_EQ(l["detections"].size(), 20u);
}

TEST(DetectionSinkTest, AnnotatedFramesAreJpegsWithBoxesDrawn) {
  TempDir dir;
  DetectionSinkOptions options;
  options.path = dir.File("d.jsonl");
  options.annotated_dir = dir.File("annotated");
  options.annotate_every = 2;
  std::unique_ptr<DetectionSink> sink = OpenOrDie(options);
  ASSERT_TRUE(fs::is_directory(options.annotated_dir));
  const cv::Mat frame(120, 160, CV_8UC3, cv::Scalar::all(0));
  const cv::Mat original = frame.clone();
  const Detections dets = {{{40, 30, 120, 90}, 0.8f, 0}};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(sink->Write(i, i / 30.0, 1, dets, &frame).ok());
  // Without a frame there is nothing to annotate, but the line is written.
  ASSERT_TRUE(sink->Write(6, 0.2, 1, dets, nullptr).ok());
  EXPECT_EQ(sink->frames_annotated(), 3);  // 0, 2, 4
  EXPECT_EQ(sink->lines_written(), 6);
  EXPECT_EQ(cv::norm(frame, original, cv::NORM_INF), 0);  // the caller's frame is untouched

  for (int i : {0, 2, 4}) EXPECT_TRUE(fs::exists(dir.File("annotated/frame_" + std::to_string(i) + ".jpg"))) << i;
  for (int i : {1, 3, 6}) EXPECT_FALSE(fs::exists(dir.File("annotated/frame_" + std::to_string(i) + ".jpg"))) << i;
  const cv::Mat jpeg = cv::imread(dir.File("annotated/frame_2.jpg"));
  ASSERT_FALSE(jpeg.empty());
  EXPECT_EQ(jpeg.size(), frame.size());
  // The box's left edge is drawn (bright on black); the inside of the box is not filled.
  EXPECT_GT(cv::mean(jpeg(cv::Rect(40, 50, 1, 30)))[1], 120);
  EXPECT_LT(cv::mean(jpeg(cv::Rect(60, 50, 40, 30)))[1], 30);

  // Grey frames work too.
  const cv::Mat grey(60, 80, CV_8UC1, cv::Scalar(128));
  ASSERT_TRUE(sink->Write(8, 0, 1, dets, &grey).ok());
  EXPECT_FALSE(cv::imread(dir.File("annotated/frame_8.jpg")).empty());
  // A frame that cannot be annotated gives an error (after its line was written).
  const cv::Mat floats(10, 10, CV_32FC3);
  EXPECT_EQ(sink->Write(10, 0, 1, dets, &floats).code(), Status::Code::kInvalidArgument);
  const cv::Mat empty;
  EXPECT_FALSE(sink->Write(12, 0, 1, dets, &empty).ok());
  EXPECT_EQ(sink->lines_written(), 9);
}

TEST(DetectionSinkTest, BadOptionsAndUnwritablePaths) {
  TempDir dir;
  DetectionSinkOptions o;
  o.annotate_every = 0;
  EXPECT_EQ(DetectionSink::Open(o).status().code(), Status::Code::kInvalidArgument);
  o = DetectionSinkOptions();
  o.path = "";
  EXPECT_EQ(DetectionSink::Open(o).status().code(), Status::Code::kInvalidArgument);
  // A directory where the file should be.
  o.path = dir.File("");
  StatusOr<std::unique_ptr<DetectionSink>> s = DetectionSink::Open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(o.path), std::string::npos) << s.status().ToString();
  // A file where the annotation directory should be.
  std::ofstream(dir.File("file")) << "x";
  o = DetectionSinkOptions();
  o.annotated_dir = dir.File("file");
  EXPECT_FALSE(DetectionSink::Open(o).ok());
  // stdout works.
  o = DetectionSinkOptions();
  StatusOr<std::unique_ptr<DetectionSink>> out = DetectionSink::Open(o);
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE((*out)->Write(0, 0, 0, {}, nullptr).ok());
}

}  // namespace
}  // namespace sd
