#include "common/teacher/yolo_teacher.h"

#include "common/teacher/teacher_internal.h"

namespace sd {
namespace teacher_internal {

StatusOr<YoloDecodeOptions> YoloDecodeOptionsOf(const TeacherOptions& options) {
  YoloDecodeOptions decode;
  decode.score_threshold = options.score_threshold;
  decode.nms_iou = options.nms_iou;
  decode.class_map = options.class_map;
  SD_RETURN_IF_ERROR(decode.Validate());
  return decode;
}

YoloTeacher::YoloTeacher(const TeacherOptions& options, YoloDecodeOptions decode, std::string runtime,
                         std::string what, std::string model_hash)
    : options_(options),
      decode_(std::move(decode)),
      runtime_(std::move(runtime)),
      what_(std::move(what)),
      model_hash_(std::move(model_hash)) {}

StatusOr<Detections> YoloTeacher::Label(const cv::Mat& bgr) {
  SD_RETURN_IF_ERROR(CheckFrame(bgr));
  const Letterbox geometry = ComputeLetterbox(bgr.cols, bgr.rows, options_.input_width, options_.input_height);
  cv::Mat input;
  try {
    input = ApplyLetterbox(bgr, geometry);
  } catch (const cv::Exception& e) {  // a frame never takes the server down
    return Status::Internal(what_ + " " + options_.model_path + ": letterbox failed: " + e.err);
  }
  return Forward(input, geometry);
}

StatusOr<Detections> YoloTeacher::Decode(const float* data, const std::vector<int64_t>& shape,
                                         const Letterbox& geometry) const {
  StatusOr<Detections> decoded = DecodeYoloOutput(data, shape, geometry, decode_);
  if (!decoded.ok()) return decoded.status().WithContext(what_ + " " + options_.model_path);
  return decoded;
}

std::string YoloTeacher::Fingerprint() const {
  return runtime_ + " model=" + model_hash_ + " input=" + std::to_string(options_.input_width) + "x" +
         std::to_string(options_.input_height) + " min_score=" + FormatNumber(options_.score_threshold) +
         " nms_iou=" + FormatNumber(options_.nms_iou) + " class_map=" + FormatClassMap(options_.class_map);
}

}  // namespace teacher_internal
}  // namespace sd
