#include "edge/detection_zones.h"

namespace sd {

void ApplyZones(const std::vector<DetectionZone>& zones, cv::Size frame, Detections* detections,
                std::vector<std::vector<std::string>>* tags) {
  tags->clear();
  Detections kept;
  kept.reserve(detections->size());
  for (const Detection& d : *detections) {
    const cv::Point2f foot((d.box.x1 + d.box.x2) / 2, d.box.y2);
    std::vector<std::string> names;
    bool ignored = false;
    for (const DetectionZone& zone : zones) {
      if (!zone.polygon.Contains(foot, frame)) continue;
      if (zone.ignore) {
        ignored = true;
        break;
      }
      names.push_back(zone.name);
    }
    if (ignored) continue;
    kept.push_back(d);
    tags->push_back(std::move(names));
  }
  *detections = std::move(kept);
}

}  // namespace sd
