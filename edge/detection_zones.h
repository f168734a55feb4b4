// Detection zones and ignore regions (edge.yaml `zones:`), as Frigate's users know them: a
// detection whose box's bottom centre (where an object stands) lies in an ignore zone is
// dropped (a poster, a TV screen); one in other zones is tagged with their names in the
// detections file.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "edge/frame_polygon.h"

namespace sd {

struct DetectionZone {
  std::string name;  // [A-Za-z0-9_.-]{1,64}
  FramePolygon polygon;
  bool ignore = false;  // true: its detections are dropped; false: tagged with the name
};

// Drops the detections whose bottom centre lies in an ignore zone and gives each one kept the
// names of the other zones it lies in (`tags`, parallel to `detections` afterwards), in a frame
// of `frame` size.
void ApplyZones(const std::vector<DetectionZone>& zones, cv::Size frame, Detections* detections,
                std::vector<std::vector<std::string>>* tags);

}  // namespace sd
