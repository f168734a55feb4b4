#include "edge/frame_encoding.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "common/vision/resize.h"
#include "streamdistill.pb.h"

namespace sd {

Status FrameEncodingOptions::Validate() const {
  if (jpeg_quality < 10 || jpeg_quality > 100) return Status::InvalidArgument("jpeg_quality: must be in 10..100");
  return Status::Ok();
}

StatusOr<std::string> EncodeSampledFrame(const cv::Mat& bgr, int64_t frame_index, double capture_time_s,
                                         const StudentOutput& student, uint64_t model_version,
                                         const FrameEncodingOptions& options, const SampledBudget& budget,
                                         const PrivacyApplied* privacy) {
  const cv::Mat image = ShrinkToWidth(bgr, options.max_width);
  std::vector<uchar> jpeg;
  if (!cv::imencode(".jpg", image, jpeg, {cv::IMWRITE_JPEG_QUALITY, options.jpeg_quality}))
    return Status::Internal("JPEG encoding failed for frame " + std::to_string(frame_index));
  streamdistill::v1::SampledFrame message;
  message.set_frame_index(frame_index);
  message.set_capture_time_s(capture_time_s);
  message.set_jpeg(jpeg.data(), jpeg.size());
  message.set_source_width(bgr.cols);
  message.set_source_height(bgr.rows);
  message.set_image_score(ImageScore(student.detections, options.aggregate).value_or(0.0f));
  for (float v : student.embedding) message.add_embedding(v);
  message.set_model_version(model_version);
  if (privacy != nullptr) {
    streamdistill::v1::PrivacyDeclaration* declaration = message.mutable_privacy();
    for (const std::string& mask : privacy->masks) declaration->add_masks(mask);
    declaration->set_faces(privacy->faces);
    declaration->set_faces_found(static_cast<uint32_t>(privacy->faces_found));
  }
  // Fractions of the source frame, whatever size the JPEG is sent at; detections come sorted
  // by score (NMS), so the first are the most confident.
  const float width = static_cast<float>(std::max(1, bgr.cols)), height = static_cast<float>(std::max(1, bgr.rows));
  auto unit = [](float v) { return std::clamp(v, 0.0f, 1.0f); };
  for (const Detection& d : student.detections) {
    if (message.student_detections_size() >= kMaxStudentDetections) break;
    auto* out = message.add_student_detections();
    out->set_x1(unit(d.box.x1 / width));
    out->set_y1(unit(d.box.y1 / height));
    out->set_x2(unit(d.box.x2 / width));
    out->set_y2(unit(d.box.y2 / height));
    out->set_score(std::isfinite(d.score) ? d.score : 0.0f);
    out->set_class_id(d.class_id);
  }
  message.set_budget_per_minute(budget.per_minute);
  message.set_budget_reason(budget.reason);
  // A frame the link can never carry would sit at the head of the spool forever.
  const size_t limit = static_cast<size_t>(options.max_message_bytes) - 1024;
  if (message.ByteSizeLong() > limit)
    return Status::ResourceExhausted("frame " + std::to_string(frame_index) + " encodes to " +
                                     std::to_string(message.ByteSizeLong()) + " bytes, over the link's limit of " +
                                     std::to_string(limit) + " (lower upload.max_width or jpeg_quality)");
  return message.SerializeAsString();
}

}  // namespace sd
