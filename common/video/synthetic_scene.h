// A deterministic synthetic street scene with exact ground truth, for tests and benchmarks
// that must not depend on video files or a teacher model.
//
// Objects of up to three classes (0: upright figure with a head, 1: wide car-like box,
// 2: bouncing round disc) cross a procedurally textured background. Their size follows a
// perspective-like dependence on how low in the frame they stand; nearer objects hide
// farther ones and a static foreground pillar hides both. The global lighting drifts slowly,
// and an optional drift event swaps background and lighting abruptly.
//
// Every frame is a pure function of (options, index): object trajectories are closed-form
// in the frame index, so Render(i) is the same whatever was rendered before.
#pragma once

#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/base/status.h"

namespace sd {

struct SyntheticSceneOptions {
  int width = 384;
  int height = 288;
  double fps = 10;
  int64_t num_frames = 1000;  // length used by frame sources; Render accepts any index >= 0
  int num_classes = 3;        // 1..3: classes [0, num_classes) appear
  int max_objects = 6;        // objects on screen at once, at most; 0 renders background only
  // Share of each object slot's episodes (9-16 s) in which an object crosses: lower is a quiet
  // camera (a corridor, a car park at night) whose frames are mostly empty.
  double activity = 0.85;
  uint64_t seed = 1;
  double lighting_drift = 0.15;  // amplitude of the slow relative brightness/contrast change
  bool occluder = true;          // a static foreground pillar objects pass behind
  int64_t drift_at_frame = -1;   // from this frame on background and lighting differ; -1: never
  double min_visible_fraction = 0.4;  // less visible objects are left out of the ground truth
  Status Validate() const;  // the ranges above; SyntheticScene::Create calls it
};

// One object of a frame, including those left out of the ground truth.
struct SyntheticObject {
  int64_t track_id = 0;  // the same while the object crosses the scene
  int class_id = 0;
  Box full_box;              // where the whole object is; may extend past the frame
  Box visible_box;           // bounding box of its visible pixels; empty when none are
  float visible_fraction = 0;  // visible pixels / all its pixels (off-frame ones count as hidden)
  bool in_ground_truth = false;
};

struct SyntheticFrame {
  cv::Mat bgr;                   // CV_8UC3, height x width
  Detections ground_truth;       // visible boxes of objects visible enough, score 1
  std::vector<SyntheticObject> objects;  // every object overlapping the frame, far to near
};

class SyntheticScene {
 public:
  // Checks the options and builds the background textures (a few milliseconds).
  static StatusOr<SyntheticScene> Create(const SyntheticSceneOptions& options);

  // Frame `index` (>= 0). Deterministic; about a millisecond at 384x288.
  SyntheticFrame Render(int64_t index) const;

  const SyntheticSceneOptions& options() const { return options_; }

 private:
  explicit SyntheticScene(const SyntheticSceneOptions& options) : options_(options) {}

  SyntheticSceneOptions options_;
  cv::Mat background_[2];  // before and after the drift event
  cv::Rect occluder_rect_;  // empty without occluder
  cv::Mat occluder_bgr_;    // occluder_rect_-sized patch
};

}  // namespace sd
