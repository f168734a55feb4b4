// streamdistill-fleet: its config and camera views, and the real binary on the smoke config
// for a few seconds against a real server on loopback.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon_test_util.h"
#include "fleet/camera_view.h"
#include "fleet/fleet_config.h"
#include "fleet/fleet_run.h"
#include "fleet/server_metrics_text.h"

namespace sd {
namespace {

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream in(line);
  std::string field;
  while (std::getline(in, field, ',')) fields.push_back(field);
  if (!line.empty() && line.back() == ',') fields.push_back("");
  return fields;
}

TEST(FleetConfigTest, ReplicatedCamerasGetTheirOwnDeviceAndALaterStart) {
  auto config = ParseFleetConfig(R"(
detect_every: 3
cameras:
  a: {uri: video.avi, start_offset: 10, detect_every: 2}
  b: {uri: "synthetic:seed=3", brightness: 20}
)", "fleet.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::vector<CameraView> cameras = ReplicateCameras(config->cameras, 5);
  ASSERT_EQ(cameras.size(), 5u);
  EXPECT_EQ(cameras[0].device, "a");
  EXPECT_EQ(cameras[1].device, "b");
  EXPECT_EQ(cameras[2].device, "a-r2");
  EXPECT_EQ(cameras[4].device, "a-r3");
  EXPECT_EQ(cameras[2].start_offset, 10 + 97);
  EXPECT_EQ(cameras[4].start_offset, 10 + 2 * 97);
  EXPECT_EQ(cameras[3].brightness, 20);
  EXPECT_EQ(cameras[2].detect_every, 2);  // its own
  EXPECT_EQ(cameras[3].detect_every, 3);  // the fleet's
}

TEST(FleetConfigTest, HeldOutFramesMayNotBeSentAndSyntheticScenesAreNotCropped) {
  auto overlapping = ParseFleetConfig("cameras:\n  a: {uri: v.avi, train_frames: [0, 600], holdout_frames: [500, 700]}\n",
                                      "fleet.yaml");
  ASSERT_FALSE(overlapping.ok());
  EXPECT_NE(overlapping.status().message().find("holdout_frames"), std::string::npos);
  auto cropped = ParseFleetConfig("cameras:\n  a: {uri: \"synthetic:seed=1\", crop: [0, 0, 10, 10]}\n", "fleet.yaml");
  ASSERT_FALSE(cropped.ok());
  auto typo = ParseFleetConfig("cameras:\n  a: {uri: v.avi, mirorr: true}\n", "fleet.yaml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("mirorr"), std::string::npos);
}

// CameraView and FleetConfig validate themselves; the reader names the key and its line.
TEST(FleetConfigTest, ValuesOutOfRangeNameTheirKey) {
  CameraView view;
  view.holdout_stride = 0;
  EXPECT_EQ(view.Validate().message().rfind("holdout_stride: must be >= 1", 0), 0u) << view.Validate().message();
  auto stride = ParseFleetConfig("cameras:\n  a: {uri: v.avi, holdout_stride: 0}\n", "fleet.yaml");
  ASSERT_FALSE(stride.ok());
  EXPECT_EQ(stride.status().message(), "fleet.yaml: key 'cameras.a.holdout_stride' (line 2): must be >= 1");
  auto lone = ParseFleetConfig("lone_camera: 3\ncameras:\n  a: {uri: v.avi}\n", "fleet.yaml");
  ASSERT_FALSE(lone.ok());
  EXPECT_EQ(lone.status().message().rfind("fleet.yaml: key 'lone_camera' (line 1): ", 0), 0u) << lone.status().message();
}

TEST(CameraViewTest, CropMirrorAndShiftMoveThePixels) {
  cv::Mat frame(4, 6, CV_8UC3, cv::Scalar(100, 100, 100));
  frame.at<cv::Vec3b>(1, 2) = cv::Vec3b(250, 0, 10);
  CameraView view;
  view.crop = cv::Rect(2, 1, 3, 2);
  view.mirror = true;
  view.brightness = 10;
  view.colour_shift = cv::Scalar(0, 5, -20);
  auto out = ApplyView(view, frame);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), cv::Size(3, 2));
  // The crop's top-left pixel lands top-right after the mirror; blue saturates at 255.
  EXPECT_EQ(out->at<cv::Vec3b>(0, 2), cv::Vec3b(255, 15, 0));
  EXPECT_EQ(out->at<cv::Vec3b>(1, 0), cv::Vec3b(110, 115, 90));
  EXPECT_EQ(frame.at<cv::Vec3b>(1, 2), cv::Vec3b(250, 0, 10));  // the source is untouched
  view.crop = cv::Rect(4, 0, 3, 2);
  EXPECT_FALSE(ApplyView(view, frame).ok());
}

TEST(FleetRunTest, TheGroupsOfTheServerLogAreItsLastDecision) {
  const std::string log =
      "[info] grouping: units now: a b c\n"
      "[info] grouping: now group auto1 (members a+b) from version 3 of device a\n"
      "[info] grouping: units now: c auto1=a+b\n"
      "[info] device a: version 4\n";
  const std::map<std::string, std::string> groups = GroupsFromServerLog(log);
  EXPECT_EQ(groups, (std::map<std::string, std::string>{{"a", "auto1"}, {"b", "auto1"}}));
  EXPECT_TRUE(GroupsFromServerLog("no grouping here\n").empty());
}

// A /metrics text as the server renders it (common/obs/metrics.cc): cumulative buckets.
constexpr char kWaitMetrics[] = R"(# TYPE streamdistill_server_label_queue_wait_seconds histogram
streamdistill_server_label_queue_wait_seconds_bucket{le="0.5"} 40
streamdistill_server_label_queue_wait_seconds_bucket{le="1"} 80
streamdistill_server_label_queue_wait_seconds_bucket{le="2"} 90
streamdistill_server_label_queue_wait_seconds_bucket{le="+Inf"} 100
streamdistill_server_label_queue_wait_seconds_sum 123.5
streamdistill_server_label_queue_wait_seconds_count 100
streamdistill_server_labeler_busy_seconds_total 61.25
streamdistill_server_frames_acked_total{device="a"} 7
)";

TEST(ServerMetricsTextTest, SamplesAndBucketsAreReadByTheirExactSeries) {
  EXPECT_DOUBLE_EQ(MetricSample(kWaitMetrics, "streamdistill_server_labeler_busy_seconds_total"), 61.25);
  EXPECT_DOUBLE_EQ(MetricSample(kWaitMetrics, "streamdistill_server_frames_acked_total{device=\"a\"}"), 7);
  EXPECT_TRUE(std::isnan(MetricSample(kWaitMetrics, "streamdistill_server_frames_acked_total")));
  EXPECT_TRUE(std::isnan(MetricSample(kWaitMetrics, "streamdistill_server_labeler_busy_seconds")));
  const std::vector<HistogramBucket> buckets =
      MetricHistogram(kWaitMetrics, "streamdistill_server_label_queue_wait_seconds");
  ASSERT_EQ(buckets.size(), 4u);
  EXPECT_DOUBLE_EQ(buckets[0].le, 0.5);
  EXPECT_DOUBLE_EQ(buckets[2].count, 90);
  EXPECT_TRUE(std::isinf(buckets[3].le));
  EXPECT_DOUBLE_EQ(buckets[3].count, 100);
  EXPECT_TRUE(MetricHistogram(kWaitMetrics, "streamdistill_server_label_seconds").empty());
}

// As Prometheus' histogram_quantile(): linear within the bucket where the rank falls, from 0
// in the first; the largest finite bound past it; nothing without observations.
TEST(ServerMetricsTextTest, QuantilesInterpolateWithinTheirBucket) {
  const std::vector<HistogramBucket> buckets =
      MetricHistogram(kWaitMetrics, "streamdistill_server_label_queue_wait_seconds");
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.2, buckets), 0.25);   // rank 20 of the first 40 in [0, 0.5]
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, buckets), 0.625);  // rank 50: 10 of 40 into (0.5, 1]
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.85, buckets), 1.5);   // rank 85: 5 of 10 into (1, 2]
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.95, buckets), 2);     // rank 95: the +Inf bucket
  EXPECT_DOUBLE_EQ(HistogramQuantile(1, buckets), 2);
  // Empty buckets are skipped: no rank falls in a bucket that holds nothing new.
  const std::vector<HistogramBucket> gap = {{0.1, 0}, {0.5, 10}, {1, 10}, {2, 20}, {INFINITY, 20}};
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, gap), 0.5);
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.75, gap), 1.5);
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.25, gap), 0.3);
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {})));
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {{1, 0}, {INFINITY, 0}})));
  EXPECT_TRUE(std::isnan(HistogramQuantile(1.5, buckets)));
}

// The smoke config for a few seconds, with its lone run: every output file, the summary line,
// and frames acked by the real server.
TEST(FleetBinaryTest, SmokeRunWritesEveryReportAndItsFramesAreAcked) {
  const std::string out = testing::TempDir("fleet_smoke");
  const std::string command = std::string("cd ") + SD_SOURCE_DIR + " && timeout -s KILL 120 " + SD_BINARY_DIR +
                              "/streamdistill-fleet --config configs/fleet_smoke.yaml --seconds 4 --budget-mode fixed "
                              "--out " + out +
                              " 2>" + out + "/stderr.txt";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string stdout_text;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) stdout_text.append(buffer.data(), n);
  const int status = pclose(pipe);
  std::ifstream stderr_file(out + "/stderr.txt");
  const std::string stderr_text((std::istreambuf_iterator<char>(stderr_file)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << stderr_text;

  // stdout is one JSON line.
  ASSERT_FALSE(stdout_text.empty());
  EXPECT_EQ(stdout_text.find('\n'), stdout_text.size() - 1) << stdout_text;
  const nlohmann::json summary = nlohmann::json::parse(stdout_text, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(summary.is_object()) << stdout_text;
  for (const char* key : {"cameras", "seconds", "first_update_s_max", "updates_min", "updates_mean", "map50_final_mean",
                          "map50_final_min", "lone_map50_final", "server_rss_mb_max", "server_cpu_mean"})
    EXPECT_TRUE(summary.contains(key)) << key;
  EXPECT_EQ(summary["cameras"], 2);
  EXPECT_TRUE(summary["lone_map50_final"].is_number()) << stdout_text;
  EXPECT_GT(summary["server_rss_mb_max"].get<double>(), 10);
  // --budget-mode reaches every camera; the labeller's figures come from the server's /metrics.
  EXPECT_EQ(summary["budget_mode"], "fixed") << stdout_text;
  EXPECT_GT(summary["frames_sent_total"].get<int64_t>(), 0) << stdout_text;
  EXPECT_TRUE(summary["labeler_busy_share"].is_number()) << stdout_text;
  EXPECT_GE(summary["labeler_busy_share"].get<double>(), 0) << stdout_text;
  EXPECT_TRUE(summary["label_queue_waits"].is_number()) << stdout_text;
  EXPECT_GT(summary["label_queue_waits"].get<double>(), 0) << stdout_text;
  EXPECT_TRUE(summary["label_queue_wait_p95_s"].is_number()) << stdout_text;
  // So do the decoded-frame cache's (issue 24): a number each, even when no round ran.
  for (const char* key : {"decoded_cache_mb", "decoded_cache_hits", "decoded_cache_misses", "decoded_cache_evictions"})
    EXPECT_TRUE(summary[key].is_number()) << key << ": " << stdout_text;

  const std::vector<std::string> csv = ReadLines(out + "/fleet.csv");
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_EQ(csv[0],
            "device,first_update_s,updates,frames_sent,frames_acked,map50_initial,map50_final,uplink_kbps,downlink_kbps,"
            "group");
  for (size_t row = 1; row < csv.size(); ++row) {
    const std::vector<std::string> fields = SplitCsv(csv[row]);
    ASSERT_EQ(fields.size(), 10u) << csv[row];
    EXPECT_EQ(fields[9], "") << csv[row];  // the smoke config groups no camera
    EXPECT_EQ(fields[0], row == 1 ? "street" : "drift");
    EXPECT_GT(std::stoi(fields[3]), 0) << csv[row];  // frames sent
    EXPECT_GT(std::stoi(fields[4]), 0) << csv[row];  // frames acked
    EXPECT_GT(std::stod(fields[7]), 0) << csv[row];  // uplink kbit/s
  }
  EXPECT_GE(ReadLines(out + "/server_usage.csv").size(), 2u);
  const std::vector<std::string> budget = ReadLines(out + "/budget.csv");
  ASSERT_GE(budget.size(), 3u);
  EXPECT_EQ(budget[0], "device,t_s,frame,budget_per_minute,reason");
  // Fixed: the smoke edge's budget_per_minute (60), or less where the server's share bounds it.
  for (size_t row = 1; row < budget.size(); ++row) {
    const std::vector<std::string> fields = SplitCsv(budget[row]);
    ASSERT_EQ(fields.size(), 5u) << budget[row];
    EXPECT_GT(std::stod(fields[3]), 0) << budget[row];
    EXPECT_LE(std::stod(fields[3]), 60) << budget[row];
    EXPECT_TRUE(fields[4] == "start" || fields[4] == "server") << budget[row];
  }
  // map50.csv: a header, then per camera at least the start and the end.
  EXPECT_GE(ReadLines(out + "/map50.csv").size(), 5u);
  EXPECT_FALSE(ReadLines(out + "/fleet.md").empty());
}

}  // namespace
}  // namespace sd
