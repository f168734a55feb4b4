// The student against the teacher on the same frames, timed so that runs can be compared:
// one thread each, calls alternating frame by frame (both see the same machine state), after
// warm-up calls (a fresh TorchScript snapshot profiles and optimises itself on its first
// calls, which are up to 20x slower), medians rather than means.
#pragma once

#include <vector>

#include <opencv2/core.hpp>

#include "common/base/status.h"
#include "common/student/student.h"
#include "common/teacher/teacher.h"

namespace sd {

struct TimeDistribution {
  int frames = 0;
  double median_ms = 0, p95_ms = 0, max_ms = 0, mean_ms = 0;  // nearest-rank percentiles
};
TimeDistribution DistributionOf(std::vector<double> ms);

struct DetectorTiming {
  TimeDistribution student, teacher;
  double student_detections_per_frame = 0;
  double speedup_median() const { return teacher.median_ms / student.median_ms; }
};

// Sets libtorch and OpenCV to one thread for the measurement and to `threads_after` at the
// end (both are process-wide). InvalidArgument for no frames; a detector's error otherwise.
StatusOr<DetectorTiming> TimeStudentAndTeacher(const StudentDetector& student, Teacher& teacher,
                                               const std::vector<cv::Mat>& frames, int threads_after);

}  // namespace sd
