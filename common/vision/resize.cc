#include "common/vision/resize.h"

#include <opencv2/imgproc.hpp>

namespace sd {

cv::Mat ShrinkToWidth(const cv::Mat& image, int max_width) {
  if (max_width <= 0 || image.cols <= max_width) return image;
  const double scale = static_cast<double>(max_width) / image.cols;
  cv::Mat shrunk;
  if (cvRound(image.rows * scale) >= 1) {
    // OpenCV sizes the result from the scale (both axes by the same factor).
    cv::resize(image, shrunk, cv::Size(), scale, scale, cv::INTER_AREA);
  } else {
    // A strip so flat that its height would round to 0 rows keeps one.
    cv::resize(image, shrunk, cv::Size(max_width, 1), 0, 0, cv::INTER_AREA);
  }
  return shrunk;
}

}  // namespace sd
