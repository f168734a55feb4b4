#include "common/teacher/yolo_decode.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <opencv2/imgproc.hpp>

namespace sd {
namespace {

// std::nearbyint rounds half to even like Python's round(), which YOLOv8's LetterBox uses;
// matching it keeps our boxes identical to the exporter's own predictions.
int RoundHalfEven(double v) { return static_cast<int>(std::nearbyint(v)); }

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

float Clamp(float v, float hi) { return std::min(std::max(v, 0.0f), hi); }

}  // namespace

Letterbox ComputeLetterbox(int frame_width, int frame_height, int input_width, int input_height) {
  Letterbox g;
  g.frame_width = frame_width;
  g.frame_height = frame_height;
  g.input_width = input_width;
  g.input_height = input_height;
  g.scale = std::min(static_cast<float>(input_width) / frame_width,
                     static_cast<float>(input_height) / frame_height);
  g.resized_width = std::clamp(RoundHalfEven(frame_width * g.scale), 1, input_width);
  g.resized_height = std::clamp(RoundHalfEven(frame_height * g.scale), 1, input_height);
  // The -0.1 puts an odd leftover pixel on the right/bottom, as YOLOv8 does.
  g.pad_x = RoundHalfEven((input_width - g.resized_width) / 2.0 - 0.1);
  g.pad_y = RoundHalfEven((input_height - g.resized_height) / 2.0 - 0.1);
  return g;
}

cv::Mat ApplyLetterbox(const cv::Mat& bgr, const Letterbox& g) {
  cv::Mat resized = bgr;
  if (bgr.cols != g.resized_width || bgr.rows != g.resized_height) {
    cv::resize(bgr, resized, cv::Size(g.resized_width, g.resized_height), 0, 0, cv::INTER_LINEAR);
  }
  cv::Mat out;
  cv::copyMakeBorder(resized, out, g.pad_y, g.input_height - g.resized_height - g.pad_y, g.pad_x,
                     g.input_width - g.resized_width - g.pad_x, cv::BORDER_CONSTANT,
                     cv::Scalar::all(114));
  return out;
}

Status YoloDecodeOptions::Validate() const {
  if (!std::isfinite(score_threshold)) return Status::InvalidArgument("score_threshold: must be finite");
  if (!(nms_iou >= 0.0f && nms_iou <= 1.0f))
    return Status::InvalidArgument("nms_iou: must be in [0, 1], got " + std::to_string(nms_iou));
  for (int c : class_map)
    if (c < -1) return Status::InvalidArgument("class_map: entries must be >= -1, got " + std::to_string(c));
  return Status::Ok();
}

StatusOr<Detections> DecodeYoloOutput(const float* data, const std::vector<int64_t>& shape,
                                      const Letterbox& g, const YoloDecodeOptions& options) {
  if (shape.size() != 3 || shape[0] != 1 || shape[1] < 5 || shape[2] < 0) {
    return Status::InvalidArgument(
        "expected a detector output of shape [1, 4 + classes, candidates] (YOLOv8 export "
        "convention), got " + ShapeString(shape));
  }
  const int64_t num_classes = shape[1] - 4;
  const int64_t n = shape[2];
  if (!options.class_map.empty() && static_cast<int64_t>(options.class_map.size()) != num_classes) {
    return Status::InvalidArgument("class_map has " + std::to_string(options.class_map.size()) +
                                   " entries but the model outputs " + std::to_string(num_classes) +
                                   " classes");
  }
  Detections found;
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    float best_score = data[4 * n + i];
    for (int64_t c = 1; c < num_classes; ++c) {
      const float s = data[(4 + c) * n + i];
      if (s > best_score) best_score = s, best = c;
    }
    if (!(best_score >= options.score_threshold)) continue;  // also drops NaN
    const int class_id = options.class_map.empty() ? static_cast<int>(best) : options.class_map[best];
    if (class_id < 0) continue;
    const float cx = data[i], cy = data[n + i], w = data[2 * n + i], h = data[3 * n + i];
    Detection d;
    d.score = best_score;
    d.class_id = class_id;
    d.box.x1 = Clamp((cx - w / 2 - g.pad_x) / g.scale, g.frame_width);
    d.box.y1 = Clamp((cy - h / 2 - g.pad_y) / g.scale, g.frame_height);
    d.box.x2 = Clamp((cx + w / 2 - g.pad_x) / g.scale, g.frame_width);
    d.box.y2 = Clamp((cy + h / 2 - g.pad_y) / g.scale, g.frame_height);
    if (d.box.area() > 0) found.push_back(d);
  }
  return NonMaxSuppression(std::move(found), options.nms_iou);
}

}  // namespace sd
