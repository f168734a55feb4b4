// Shared by the daemon tests: configs for a tiny student on synthetic video, and an oracle
// teacher that labels synthetic frames with their exact ground truth.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "common/video/synthetic_scene.h"
#include "common/teacher/teacher.h"
#include "edge/edge_config.h"
#include "server/server_config.h"

namespace sd::testing {

// Multiplies the wall-clock deadlines of the daemon tests (training rounds must finish in
// time): SD_TEST_TIME_SCALE, default 1. scripts/sanitize.sh sets it, since sanitizer builds run
// slower; what the tests check stays the same.
inline double TimeScale() {
  const char* value = std::getenv("SD_TEST_TIME_SCALE");
  const double scale = value ? std::atof(value) : 1.0;
  return scale >= 1.0 ? scale : 1.0;
}

// A fresh directory for one test. ctest runs every test (each value of a parameterized one,
// too) as its own process, two at a time, so the directory is named after the running test as
// well: two tests that ask for the same name must not delete each other's files.
inline std::string TempDir(const std::string& name) {
  std::string test_name;
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    test_name = std::string(info->test_suite_name()) + "." + info->name();
    for (char& c : test_name) {
      if (c == '/') c = '_';
    }
  }
  const auto dir = std::filesystem::path(SD_BINARY_DIR) / "test_tmp" / test_name / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

constexpr char kTinyStudent[] = R"(
student:
  input_width: 128
  input_height: 96
  classes: 1
  channels: [8, 16, 32, 32, 64]
  block: separable
)";

inline std::string SyntheticUri(int seed) {
  return "synthetic:seed=" + std::to_string(seed) + ",frames=300,classes=1,width=256,height=192,fps=25,objects=4";
}

// The scene SyntheticUri(seed) shows, for an oracle teacher or frames sent by hand; with
// `drift_at_frame` >= 0 its background and lighting change from that frame on.
inline SyntheticScene TestScene(int seed, int64_t drift_at_frame = -1) {
  SyntheticSceneOptions o;
  o.seed = seed;
  o.width = 256;
  o.height = 192;
  o.num_classes = 1;
  o.max_objects = 4;
  o.num_frames = 300;
  o.fps = 25;
  o.drift_at_frame = drift_at_frame;
  auto scene = SyntheticScene::Create(o);
  return std::move(scene).value();  // the options are valid: Create cannot fail
}

// Which frame of the scene an image shows, found by its thumbnail (robust to JPEG), and that
// frame's exact ground truth scaled to the image.
class SyntheticOracleTeacher : public Teacher {
 public:
  SyntheticOracleTeacher(std::vector<SyntheticScene> scenes, int frames) {
    for (const SyntheticScene& scene : scenes)
      for (int i = 0; i < frames; ++i) {
        SyntheticFrame f = scene.Render(i);
        thumbs_.push_back(Thumb(f.bgr));
        truth_.push_back(f.ground_truth);
        widths_.push_back(f.bgr.cols);
      }
  }
  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    const cv::Mat thumb = Thumb(bgr);
    size_t best = 0;
    double best_distance = 1e300;
    for (size_t i = 0; i < thumbs_.size(); ++i) {
      const double d = cv::norm(thumb, thumbs_[i], cv::NORM_L2SQR);
      if (d < best_distance) best_distance = d, best = i;
    }
    Detections labels = truth_[best];
    const float scale = static_cast<float>(bgr.cols) / widths_[best];
    for (Detection& d : labels) {
      d.box = {d.box.x1 * scale, d.box.y1 * scale, d.box.x2 * scale, d.box.y2 * scale};
    }
    return labels;
  }
  std::string Fingerprint() const override { return "synthetic-oracle"; }

 private:
  static cv::Mat Thumb(const cv::Mat& bgr) {
    cv::Mat small;
    cv::resize(bgr, small, cv::Size(32, 24), 0, 0, cv::INTER_AREA);
    small.convertTo(small, CV_32FC3);
    return small;
  }
  std::vector<cv::Mat> thumbs_;
  std::vector<Detections> truth_;
  std::vector<int> widths_;
};

// Labels every frame with the same box, instantly: rounds get something to learn at no cost,
// for tests about devices and storage rather than accuracy.
class OneBoxTeacher : public Teacher {
 public:
  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    Detection d;
    d.score = 0.9f;
    d.box = {bgr.cols * 0.25f, bgr.rows * 0.2f, bgr.cols * 0.45f, bgr.rows * 0.8f};
    return Detections{d};
  }
  std::string Fingerprint() const override { return "one-box"; }
};

inline std::string ServerYaml(const std::string& storage_dir, const std::string& extra = "") {
  return std::string(R"(
listen: 127.0.0.1:0
http: {port: 0}  # a free port: tests run side by side and beside a running daemon
storage_dir: )") + storage_dir + R"(
update_encoding: full_fp16
update_chunk_bytes: 16384
threads: 2
devices:
  # Each camera its own update encoding (AMS's sparse rounds, int8 deltas): after the first
  # full model every update is a delta that must apply bit-exactly on the edge.
  cam1: {token: secret-token-1, update_encoding: sparse, update_fraction: 0.1}
  cam2: {token: secret-token-2, update_encoding: int8}
teacher:
  kind: onnx
  model: )" + SD_SOURCE_DIR + R"(/tests/data/tiny_yolo.onnx
labeler: {workers: 1, queue: 8}
training:
  trigger_frames: 8
  trigger_seconds: 3
  iterations: 40
  replay_frames: 200
  validation_every: 4
  validation_frames: 40
  max_map50_drop: 0.05
  min_validation_frames: 4
  optimizer: {batch_size: 8, learning_rate: 0.004, warmup_steps: 5, final_lr_fraction: 0.5}
)" + kTinyStudent + extra;
}

// A server config for tests of what rounds do rather than what they learn: every round
// publishes (the fixture teacher's labels are not learnable, so only an open gate keeps versions
// rising) and a round is 10 steps, not 40. A sanitizer build trains several times slower, and
// these tests wait for several rounds (CI's ASan run: 117 s a round of 40 steps).
inline std::string QuickOpenRounds(std::string yaml) {
  // A key ServerYaml no longer writes would leave the gate closed or the rounds long, and the
  // tests would fail far from the cause: say so here instead.
  const auto replace = [&yaml](const std::string& from, const std::string& to) {
    const size_t at = yaml.find(from);
    if (at == std::string::npos) {
      ADD_FAILURE() << "QuickOpenRounds: no '" << from << "' in the server config";
      return;
    }
    yaml.replace(at, from.size(), to);
  };
  replace("max_map50_drop: 0.05", "max_map50_drop: 1.0");
  replace("iterations: 40", "iterations: 10");
  return yaml;
}

inline std::string EdgeYaml(const std::string& device, const std::string& token, int port, const std::string& state_dir,
                            const std::string& uri, const std::string& extra = "") {
  return "device_id: " + device + "\ntoken: " + token + "\nserver: 127.0.0.1:" + std::to_string(port) +
         "\nlink: {backoff_initial_s: 0.2, backoff_max_s: 1.0}\nsource:\n  uri: " + uri +
         "\n  loop: true\n  realtime: true\n" + kTinyStudent + "model_seed: 3\nthreads: 1\n" +
         "detections: {path: " + state_dir + "/detections.jsonl}\n" +
         "sampling: {strategy: uniform, uniform_probability: 1.0, budget_per_minute: 240}\n" +
         "upload: {jpeg_quality: 85}\nstate_dir: " + state_dir + "\n" + extra;
}

}  // namespace sd::testing
