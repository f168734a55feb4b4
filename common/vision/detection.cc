#include "common/vision/detection.h"

#include <algorithm>

namespace sd {

float IoU(const Box& a, const Box& b) {
  const float iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const float ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0.0f;
  const float inter = iw * ih;
  const float uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

Detections NonMaxSuppression(Detections detections, float iou_threshold, int max_detections) {
  std::stable_sort(detections.begin(), detections.end(),
                   [](const Detection& a, const Detection& b) { return a.score > b.score; });
  Detections kept;
  for (const Detection& candidate : detections) {
    if (max_detections > 0 && static_cast<int>(kept.size()) >= max_detections) break;
    const bool suppressed = std::any_of(kept.begin(), kept.end(), [&](const Detection& k) {
      return k.class_id == candidate.class_id && IoU(k.box, candidate.box) > iou_threshold;
    });
    if (!suppressed) kept.push_back(candidate);
  }
  return kept;
}

void ScaleDetections(Detections* detections, float sx, float sy) {
  for (Detection& d : *detections) {
    d.box.x1 *= sx;
    d.box.x2 *= sx;
    d.box.y1 *= sy;
    d.box.y2 *= sy;
  }
}

}  // namespace sd
