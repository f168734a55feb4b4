// What every run of streamdistill-bench's grids starts from: the reference labels of the
// stream (the teacher's, or the ground truth of a made stream) and the common start student.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_config.h"
#include "common/base/status.h"
#include "common/vision/detection.h"

namespace sd {

// The labels runs are trained and scored against: the made stream's ground truth
// (`labels: ground_truth`), else the config's teacher on the video (cached, tools/job_labels.h).
StatusOr<std::vector<Detections>> ReferenceLabels(const BenchConfig& config);

// The common start: the student trained from random weights on a few evenly spaced frames
// (as the papers' students start pretrained). Kept in DIR/start.sdw and reused while its
// settings (DIR/start.key) are the same. Returns the serialized weights.
StatusOr<std::string> StartWeights(const BenchConfig& c, const std::vector<Detections>& labels, const std::string& dir);

}  // namespace sd
