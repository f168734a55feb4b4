// What the ONNX and TorchScript teachers share (not part of the public API): a frame
// letterboxed into the network's input, the output decoded back to frame boxes, and the
// fingerprint of the options that change labels. Each runtime only runs its network.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/teacher/teacher.h"
#include "common/teacher/yolo_decode.h"

namespace sd {
namespace teacher_internal {

// The decoding options of `options` (score_threshold, nms_iou, class_map), validated.
StatusOr<YoloDecodeOptions> YoloDecodeOptionsOf(const TeacherOptions& options);

class YoloTeacher : public Teacher {
 public:
  // CheckFrame, letterbox, Forward.
  StatusOr<Detections> Label(const cv::Mat& bgr) final;
  // "<runtime> model=<hash> input=WxH min_score=.. nms_iou=.. class_map=..".
  std::string Fingerprint() const final;

 protected:
  // `runtime` begins the fingerprint ("onnx opencv=4.6.0"); `what` names the model in errors
  // ("onnx model", followed by its path).
  YoloTeacher(const TeacherOptions& options, YoloDecodeOptions decode, std::string runtime, std::string what,
              std::string model_hash);
  // Runs the network on `input` (the frame letterboxed per `geometry`: input_width x
  // input_height, BGR, 8-bit) and returns Decode() of its output.
  virtual StatusOr<Detections> Forward(const cv::Mat& input, const Letterbox& geometry) = 0;
  // The output tensor (row-major float, `shape`) as frame detections; errors name the model.
  StatusOr<Detections> Decode(const float* data, const std::vector<int64_t>& shape, const Letterbox& geometry) const;

  const TeacherOptions options_;

 private:
  const YoloDecodeOptions decode_;
  const std::string runtime_;
  const std::string what_;
  const std::string model_hash_;
};

}  // namespace teacher_internal
}  // namespace sd
