// Trains a StudentModel on labelled frames: CenterNet targets (Gaussian heatmap, size and
// offset at stride 4), focal loss on the heatmap and L1 on log size and offset, Adam with a
// linear warm-up and cosine decay, and augmentation (horizontal flip, scale and crop jitter,
// brightness and contrast). Seeded: the same seed, data and thread count give the same
// weights.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/base/status.h"
#include "common/student/student.h"

namespace sd {

struct TrainingSample {
  cv::Mat bgr;       // any size; keep it modest (about 1.25x the student input) to save memory
  Detections boxes;  // in bgr's pixel coordinates; scores count only with soft targets
};

// `sample` scaled down (INTER_AREA, boxes with it) so that it is no larger than `scale` x the
// student's input on both sides; a smaller sample is returned as it is (same pixels). With
// scale = TrainerOptions::max_scale nothing a training step's augmentation uses is lost (it
// never magnifies a frame past that), and with scale 1 inference sees the very pixels it would
// have resized to itself. The server keeps its decoded frames this way: a 768x576 frame is
// 1.3 MB, its copy for a 384x288 student at max_scale 1.15 0.44 MB.
TrainingSample ShrinkForStudent(const TrainingSample& sample, const StudentArchitecture& arch, float scale);

struct TrainerOptions {
  int batch_size = 16;
  float learning_rate = 1.5e-3f;
  int warmup_steps = 100;
  int total_steps = 1000;           // horizon of the cosine decay; later steps keep the final rate
  float final_lr_fraction = 0.05f;  // the cosine ends at this fraction of learning_rate
  float weight_decay = 0.0f;
  float size_loss_weight = 1.0f;  // L1 on log size
  float offset_loss_weight = 1.0f;
  // Distillation targets. 0: hard targets, every teacher box a heatmap peak of 1. > 0: soft
  // targets weighted by the teacher's confidence: a box's peak (and the positive term of the
  // focal loss at its centre) is min(1, its score / soft_target_score), so a box the teacher
  // was unsure of teaches the student less than a sure one. Set it to the score a teacher gives
  // a box it is sure of (a probability teacher: 1; HOG's SVM weights: about 2).
  float soft_target_score = 0.0f;
  bool flip = true;
  float min_scale = 0.85f, max_scale = 1.15f;
  float brightness = 0.12f;  // +- fraction of the 0..255 range
  float contrast = 0.2f;     // gain in [1 - c, 1 + c]
  uint64_t seed = 1;
  ComputeDevice device = ComputeDevice::kCpu;

  Status Validate() const;
};

struct StepStats {
  int64_t step = 0;  // 1-based count of steps done
  double loss = 0, heatmap_loss = 0, size_loss = 0, offset_loss = 0;
  double learning_rate = 0;
};

class StudentTrainer {
 public:
  // `model` must outlive the trainer; the trainer updates its weights in place.
  static StatusOr<std::unique_ptr<StudentTrainer>> Create(StudentModel* model, const TrainerOptions& options);
  ~StudentTrainer();

  // One optimisation step on a batch drawn (with replacement) from `data`.
  StatusOr<StepStats> Step(const std::vector<TrainingSample>& data);
  int64_t steps_done() const;

  // The augmented input and targets of one sample, exposed for tests: the returned image is
  // the network input (student input size), boxes in its pixels.
  TrainingSample AugmentForTest(const TrainingSample& sample);

  struct Impl;

 private:
  explicit StudentTrainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sd
