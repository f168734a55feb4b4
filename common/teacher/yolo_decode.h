// Pre- and post-processing for detectors that follow the YOLOv8 export convention, shared by
// the torchscript and onnx teachers so both decode identically. Torch-free on purpose.
#pragma once

#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/base/status.h"

namespace sd {

// Where a frame lands inside the network input: resized by `scale` (aspect kept) to
// resized_width x resized_height, then padded; pad_x/pad_y are the left/top padding.
struct Letterbox {
  int frame_width = 0, frame_height = 0;
  int input_width = 0, input_height = 0;
  float scale = 1.0f;  // network-input pixels per frame pixel
  int resized_width = 0, resized_height = 0;
  int pad_x = 0, pad_y = 0;
};

// The geometry YOLOv8's LetterBox uses (centred, padding split as evenly as rounding allows).
Letterbox ComputeLetterbox(int frame_width, int frame_height, int input_width, int input_height);

// Resizes `bgr` (8-bit, 3 channels) into an input_width x input_height image padded with 114,
// per `geometry`; channel order is unchanged.
cv::Mat ApplyLetterbox(const cv::Mat& bgr, const Letterbox& geometry);

struct YoloDecodeOptions {
  float score_threshold = 0.5f;  // minimum best-class score
  float nms_iou = 0.5f;
  std::vector<int> class_map;    // model class -> our class; -1 drops; empty = identity

  // "<field>: <problem>": a finite threshold, nms_iou in [0, 1], class_map entries >= -1.
  Status Validate() const;
};

// Decodes a row-major float tensor of shape [1, 4 + classes, N]: rows are centre-x, centre-y,
// width, height in network-input pixels, then per-class scores in 0..1. Each candidate takes
// its best class; candidates under the threshold or mapped to -1 are dropped. Boxes are
// mapped back through `geometry` to frame pixels, clipped to the frame (empty ones dropped),
// then per-class NMS is applied. InvalidArgument for any other shape or a class_map whose
// size differs from the model's class count.
StatusOr<Detections> DecodeYoloOutput(const float* data, const std::vector<int64_t>& shape,
                                      const Letterbox& geometry, const YoloDecodeOptions& options);

}  // namespace sd
