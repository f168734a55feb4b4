// Evaluation of a student snapshot against reference labels (the papers' protocol: the
// teacher's labels on held-out frames serve as ground truth), and the frame loading that
// the tools and the benchmark share.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/eval/map_eval.h"
#include "common/base/status.h"
#include "common/student/student.h"
#include "common/student/student_trainer.h"

namespace sd {

struct LabelledFrame {
  int64_t index = 0;
  cv::Mat bgr;
  Detections labels;
};

// Runs `detector` on every frame and scores its detections against the frames' labels.
StatusOr<EvalResult> EvaluateDetector(const StudentDetector& detector, const std::vector<LabelledFrame>& frames);

// Reads frames [begin, end) of a video or other source and attaches labels[index] to each.
// `max_width` > 0 shrinks larger frames (keeping aspect) and scales their labels with them,
// which keeps training sets small in memory.
StatusOr<std::vector<LabelledFrame>> LoadLabelledFrames(const std::string& uri, int64_t begin, int64_t end,
                                                        const std::vector<Detections>& labels, int max_width = 0);

std::vector<TrainingSample> ToTrainingSamples(const std::vector<LabelledFrame>& frames);

}  // namespace sd
