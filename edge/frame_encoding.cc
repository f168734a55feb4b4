#include "edge/frame_encoding.h"

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
                                         const FrameEncodingOptions& options, const PrivacyApplied* privacy) {
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
  // A frame the link can never carry would sit at the head of the spool forever.
  const size_t limit = static_cast<size_t>(options.max_message_bytes) - 1024;
  if (message.ByteSizeLong() > limit)
    return Status::ResourceExhausted("frame " + std::to_string(frame_index) + " encodes to " +
                                     std::to_string(message.ByteSizeLong()) + " bytes, over the link's limit of " +
                                     std::to_string(limit) + " (lower upload.max_width or jpeg_quality)");
  return message.SerializeAsString();
}

}  // namespace sd
