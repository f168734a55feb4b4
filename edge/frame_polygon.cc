#include "edge/frame_polygon.h"

#include <cmath>

#include <opencv2/imgproc.hpp>

namespace sd {
namespace {

// >0: c lies left of a->b, <0: right, 0: on the line.
double Cross(const cv::Point2d& a, const cv::Point2d& b, const cv::Point2d& c) {
  return (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
}

bool OnSegment(const cv::Point2d& a, const cv::Point2d& b, const cv::Point2d& p) {
  return std::min(a.x, b.x) <= p.x && p.x <= std::max(a.x, b.x) && std::min(a.y, b.y) <= p.y &&
         p.y <= std::max(a.y, b.y);
}

// Whether segments ab and cd share any point, touching and overlapping included.
bool SegmentsMeet(const cv::Point2d& a, const cv::Point2d& b, const cv::Point2d& c, const cv::Point2d& d) {
  const double d1 = Cross(c, d, a), d2 = Cross(c, d, b), d3 = Cross(a, b, c), d4 = Cross(a, b, d);
  if (((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0))) return true;
  return (d1 == 0 && OnSegment(c, d, a)) || (d2 == 0 && OnSegment(c, d, b)) || (d3 == 0 && OnSegment(a, b, c)) ||
         (d4 == 0 && OnSegment(a, b, d));
}

std::string Corner(const cv::Point2d& p) {
  char text[64];
  std::snprintf(text, sizeof(text), "(%g, %g)", p.x, p.y);
  return text;
}

}  // namespace

Status FramePolygon::Validate() const {
  const size_t n = points.size();
  if (n < 3) return Status::InvalidArgument("polygon: needs at least 3 corners, got " + std::to_string(n));
  for (const cv::Point2d& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) return Status::InvalidArgument("polygon: a corner is not finite");
    if (normalized && (p.x < 0 || p.x > 1 || p.y < 0 || p.y > 1))
      return Status::InvalidArgument("polygon: corner " + Corner(p) +
                                     " lies outside the frame (normalised corners are within 0..1; "
                                     "units: pixels for pixel corners)");
    if (!normalized && (p.x < 0 || p.y < 0))
      return Status::InvalidArgument("polygon: corner " + Corner(p) + " lies outside the frame (negative pixels)");
  }
  // Every pair of edges that are not neighbours must not meet; neighbours share only their
  // corner (unless one folds back onto the other).
  for (size_t i = 0; i < n; ++i) {
    const cv::Point2d &a = points[i], &b = points[(i + 1) % n];
    if (a == b) return Status::InvalidArgument("polygon: corner " + Corner(a) + " is repeated");
    for (size_t j = i + 1; j < n; ++j) {
      const cv::Point2d &c = points[j], &d = points[(j + 1) % n];
      const bool neighbours = j == i + 1 || (i == 0 && j == n - 1);
      if (neighbours) {
        // Adjacent edges folding back on each other overlap along a stretch.
        const cv::Point2d& shared = j == i + 1 ? b : a;
        const cv::Point2d& far_i = j == i + 1 ? a : b;
        const cv::Point2d& far_j = j == i + 1 ? d : c;
        if (Cross(far_i, shared, far_j) == 0 && (far_j - shared).dot(far_i - shared) > 0)
          return Status::InvalidArgument("polygon: edges at corner " + Corner(shared) + " fold back on each other");
        continue;
      }
      if (SegmentsMeet(a, b, c, d))
        return Status::InvalidArgument("polygon: self-intersecting: edge " + Corner(a) + "-" + Corner(b) +
                                       " crosses edge " + Corner(c) + "-" + Corner(d));
    }
  }
  return Status::Ok();
}

Status FramePolygon::Fits(cv::Size size) const {
  if (normalized) return Status::Ok();
  for (const cv::Point2d& p : points)
    if (p.x > size.width || p.y > size.height)
      return Status::FailedPrecondition("polygon: corner " + Corner(p) + " lies outside the " +
                                        std::to_string(size.width) + "x" + std::to_string(size.height) + " frame");
  return Status::Ok();
}

std::vector<cv::Point> FramePolygon::ToPixels(cv::Size size, cv::Size source) const {
  if (source.empty()) source = size;
  const double sx = normalized ? size.width : static_cast<double>(size.width) / source.width;
  const double sy = normalized ? size.height : static_cast<double>(size.height) / source.height;
  std::vector<cv::Point> pixels;
  pixels.reserve(points.size());
  for (const cv::Point2d& p : points)
    pixels.emplace_back(static_cast<int>(std::lround(p.x * sx)), static_cast<int>(std::lround(p.y * sy)));
  return pixels;
}

bool FramePolygon::Contains(cv::Point2f point, cv::Size size) const {
  const std::vector<cv::Point> pixels = ToPixels(size);
  return cv::pointPolygonTest(pixels, point, false) >= 0;
}

Status ReadFramePolygon(const YamlReader& item, FramePolygon* polygon) {
  std::vector<std::vector<double>> corners;
  SD_RETURN_IF_ERROR(item.Require("polygon", &corners));
  std::string units = "normalized";
  SD_RETURN_IF_ERROR(item.Get("units", &units));
  if (units != "normalized" && units != "pixels") return item.Error("units", "must be normalized or pixels");
  polygon->normalized = units == "normalized";
  polygon->points.clear();
  for (const std::vector<double>& corner : corners) {
    if (corner.size() != 2) return item.Error("polygon", "each corner is [x, y]");
    polygon->points.emplace_back(corner[0], corner[1]);
  }
  return item.Check(polygon->Validate());
}

}  // namespace sd
