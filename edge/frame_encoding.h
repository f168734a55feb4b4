// The SampledFrame message an edge sends for a frame the sampler chose: the frame resized and
// JPEG-encoded as configured, with the student's image score and embedding. The benchmark
// builds the same message to count uplink bytes.
#pragma once

#include <cstdint>
#include <string>

#include <opencv2/core.hpp>

#include "common/base/status.h"
#include "common/student/student.h"
#include "edge/privacy_filter.h"
#include "edge/sampler.h"

namespace sd {

struct FrameEncodingOptions {
  int jpeg_quality = 80;
  int max_width = 0;                  // wider frames are shrunk (aspect kept); 0: source size
  int max_message_bytes = 8 << 20;    // the link's message limit
  ScoreAggregate aggregate = ScoreAggregate::kMax;  // how the image score is formed
  // jpeg_quality in 10..100; the message starts with the field's name (YamlReader::Check).
  Status Validate() const;
};

// The edge's sampling budget when the frame was chosen (edge/budget_controller.h).
struct SampledBudget {
  double per_minute = 0;  // 0: not said
  const char* reason = "";
};

// The student's most confident detections sent with a frame, at most (the server scores them
// against the teacher's labels; a frame with more is rare and its first ones tell enough).
constexpr int kMaxStudentDetections = 100;

// The serialized message, its sequence unset (the spool assigns it), with the student's
// detections as fractions of the frame. ResourceExhausted when it would not fit the link's
// limit (with room for the stream's framing). `privacy`: what the caller already did to `bgr`
// (PrivacyFilter::Apply), declared in the message; null: nothing.
StatusOr<std::string> EncodeSampledFrame(const cv::Mat& bgr, int64_t frame_index, double capture_time_s,
                                         const StudentOutput& student, uint64_t model_version,
                                         const FrameEncodingOptions& options, const SampledBudget& budget = {},
                                         const PrivacyApplied* privacy = nullptr);

}  // namespace sd
