#include "edge/privacy_filter.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

namespace sd {

bool IsValidMaskName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

Status FaceRedactionOptions::Validate() const {
  if (min_size < 8) return Status::InvalidArgument("min_size: must be >= 8 pixels");
  if (!(margin >= 0 && margin <= 1)) return Status::InvalidArgument("margin: must be within 0..1");
  if (!(scale_factor > 1.01 && scale_factor <= 2)) return Status::InvalidArgument("scale_factor: must be in (1.01, 2]");
  if (min_neighbors < 0) return Status::InvalidArgument("min_neighbors: must be >= 0");
  return Status::Ok();
}

StatusOr<std::unique_ptr<PrivacyFilter>> PrivacyFilter::Create(const PrivacyOptions& options) {
  std::unique_ptr<PrivacyFilter> filter(new PrivacyFilter(options));
  if (options.faces.enabled) {
    bool loaded = false;
    try {
      loaded = filter->cascade_.load(options.faces.cascade);
    } catch (const cv::Exception&) {
      loaded = false;  // OpenCV throws on some malformed files, returns false on others
    }
    if (!loaded || filter->cascade_.empty())
      return Status::FailedPrecondition("'" + options.faces.cascade +
                                        "' is unreadable or not an OpenCV cascade (Debian's opencv-data has them in "
                                        "/usr/share/opencv4/haarcascades/)");
  }
  return filter;
}

StatusOr<PrivacyApplied> PrivacyFilter::Apply(cv::Mat* bgr) {
  PrivacyApplied applied;
  const cv::Size size = bgr->size();
  // Check every mask before touching the frame: all or none.
  for (const PrivacyMask& mask : options_.masks) {
    Status fits = mask.polygon.Fits(size);
    if (!fits.ok()) return Status::FailedPrecondition("privacy mask '" + mask.name + "': " + fits.message());
  }
  for (const PrivacyMask& mask : options_.masks) {
    const std::vector<std::vector<cv::Point>> polygons = {mask.polygon.ToPixels(size)};
    cv::fillPoly(*bgr, polygons, cv::Scalar::all(0), cv::LINE_8);
    // The border too: fillPoly leaves out pixels the edge only grazes.
    cv::polylines(*bgr, polygons, true, cv::Scalar::all(0), 1, cv::LINE_8);
    applied.masks.push_back(mask.name);
  }
  if (options_.faces.enabled) {
    const FaceRedactionOptions& o = options_.faces;
    cv::cvtColor(*bgr, gray_, cv::COLOR_BGR2GRAY);
    cv::equalizeHist(gray_, gray_);
    std::vector<cv::Rect> faces;
    try {
      cascade_.detectMultiScale(gray_, faces, o.scale_factor, o.min_neighbors, 0, cv::Size(o.min_size, o.min_size));
    } catch (const cv::Exception& e) {
      return Status::Internal("face detection failed: " + e.err);
    }
    const cv::Rect frame(0, 0, size.width, size.height);
    for (const cv::Rect& face : faces) {
      const int grow_x = static_cast<int>(std::ceil(face.width * o.margin));
      const int grow_y = static_cast<int>(std::ceil(face.height * o.margin));
      const cv::Rect box =
          cv::Rect(face.x - grow_x, face.y - grow_y, face.width + 2 * grow_x, face.height + 2 * grow_y) & frame;
      if (box.empty()) continue;
      cv::Mat region = (*bgr)(box);
      if (o.redact == Redaction::kFill) {
        region.setTo(cv::Scalar::all(0));
      } else {
        // A kernel as wide as the face leaves no feature; applied twice it is close to the
        // region's mean colour.
        const int k = (std::max(box.width, box.height) / 2) * 2 + 1;
        cv::GaussianBlur(region, region, cv::Size(k, k), 0);
        cv::GaussianBlur(region, region, cv::Size(k, k), 0);
      }
    }
    applied.faces = true;
    applied.faces_found = static_cast<int>(faces.size());
  }
  return applied;
}

}  // namespace sd
