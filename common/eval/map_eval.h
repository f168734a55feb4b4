// COCO-style mean average precision (the numbers pycocotools reports for area "all"), used
// to compare a student with its teacher or with exact ground truth over many frames.
//
// Per class and IoU threshold t, the predictions of all frames are ranked by descending score
// (ties keep the order they were added in). Each one is matched, within its own frame, to the
// not yet matched reference box of its class with the highest IoU >= t; a prediction left
// without one is a false positive, so duplicates of one object count once. Precision is made
// non-increasing in recall and read at the 101 recalls 0, 0.01, ..., 1 (the precision of the
// first point whose recall reaches r, 0 where recall never does); AP is their mean.
//
// Differences from pycocotools: no per-frame cap on detections (apply NMS / a top-k first),
// no crowd or area-range handling, and IoU is compared in float, IoU()'s own precision, so a
// box that hits a threshold exactly (e.g. IoU 3/4 at t = 0.75) counts.
#pragma once

#include <vector>

#include "common/vision/detection.h"

namespace sd {

struct ClassAP {
  int class_id = 0;
  // -1 when the class has no reference boxes at all (COCO's "undefined"): its predictions can
  // only be false positives, and the class is left out of the means.
  double ap50 = 0;
  double ap50_95 = 0;  // mean AP over IoU thresholds 0.50, 0.55, ..., 0.95
  int num_ground_truth = 0;
  int num_predictions = 0;
};

struct EvalResult {
  double map50 = 0;     // mean ap50 over the classes with reference boxes
  double map50_95 = 0;  // mean ap50_95 over the same classes
  // Every class seen in predictions or references, sorted by class_id. A class with reference
  // boxes but no predictions has AP 0 and is in the means.
  std::vector<ClassAP> per_class;
  int num_frames = 0;
  int num_ground_truth = 0;
  int num_predictions = 0;
  // Without any reference box there is nothing to measure: both means are then 0.
  bool valid() const { return num_ground_truth > 0; }
};

class DetectionEvaluator {
 public:
  // Adds one frame: the model's predictions and the reference boxes (teacher labels or exact
  // ground truth; their scores are ignored).
  void AddFrame(const Detections& predictions, const Detections& ground_truth);
  // Evaluates all frames added so far; may be called again after adding more.
  EvalResult Compute() const;

 private:
  std::vector<Detections> predictions_;
  std::vector<Detections> ground_truth_;
};

}  // namespace sd
