// A polygon over a camera's frame, as edge.yaml gives it (privacy masks, detection zones):
// its corners either normalised (0..1 of the frame's width and height, so that it holds
// whatever the resolution) or in pixels of the source's frames.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/status.h"
#include "common/config/yaml_reader.h"

namespace sd {

struct FramePolygon {
  std::vector<cv::Point2d> points;
  bool normalized = true;  // false: pixels of the source frame

  // At least 3 finite corners, normalised ones within [0, 1], pixel ones >= 0, and no two
  // edges crossing. The message starts with "polygon" (YamlReader::Check names the key).
  Status Validate() const;
  // FailedPrecondition when a pixel corner lies beyond a frame of `size` (normalised ones
  // always fit): the frame must not be used as if the polygon covered what it was meant to.
  Status Fits(cv::Size size) const;
  // The corners in pixels of a frame of `size` (pixel corners are scaled when the frame is the
  // source's frame resized: `source` is the size they were given in; empty: `size`).
  std::vector<cv::Point> ToPixels(cv::Size size, cv::Size source = {}) const;
  // Whether a point in pixels of a frame of `size` lies inside (or on the border).
  bool Contains(cv::Point2f point, cv::Size size) const;
};

// Reads `polygon: [[x, y], ...]` and `units: normalized | pixels` of one list item, validated;
// errors name the item's key.
Status ReadFramePolygon(const YamlReader& item, FramePolygon* polygon);

}  // namespace sd
