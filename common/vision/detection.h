// Plain detection types shared by teachers, the student, evaluation and the wire format.
// Boxes are in pixel coordinates of the frame they were found in: (x1, y1) top-left
// inclusive, (x2, y2) bottom-right, x2 > x1 and y2 > y1 for a valid box.
#pragma once

#include <vector>

namespace sd {

struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  float area() const { return width() > 0 && height() > 0 ? width() * height() : 0.0f; }
};

struct Detection {
  Box box;
  float score = 1.0f;  // higher is more confident; teachers may use their own scale
  int class_id = 0;
};

using Detections = std::vector<Detection>;

// Intersection over union; 0 when either box is empty.
float IoU(const Box& a, const Box& b);

// Greedy non-maximum suppression within each class: keeps the highest-scoring box and drops
// any box of the same class whose IoU with a kept one exceeds `iou_threshold`. Returns the
// kept detections sorted by descending score, at most `max_detections` (<= 0: no limit).
Detections NonMaxSuppression(Detections detections, float iou_threshold, int max_detections = 0);

// Maps boxes by x' = x * sx, y' = y * sy (e.g. from model input to source frame).
void ScaleDetections(Detections* detections, float sx, float sy);

}  // namespace sd
