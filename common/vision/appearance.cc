#include "common/vision/appearance.h"

#include <algorithm>
#include <limits>

#include <opencv2/imgproc.hpp>

namespace sd {

std::vector<float> AppearanceEmbedding(const cv::Mat& bgr) {
  if (bgr.empty()) return {};
  cv::Mat grey, thumb;
  if (bgr.channels() == 3) {
    cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
  } else {
    grey = bgr;
  }
  cv::resize(grey, thumb, cv::Size(16, 12), 0, 0, cv::INTER_AREA);
  std::vector<float> out;
  out.reserve(kAppearanceDims);
  for (int y = 0; y < thumb.rows; ++y)
    for (int x = 0; x < thumb.cols; ++x) out.push_back(thumb.at<uchar>(y, x) / 255.0f);
  cv::Scalar mean, stddev;
  cv::meanStdDev(bgr, mean, stddev);
  for (int c = 0; c < 3; ++c) out.push_back(static_cast<float>(mean[std::min(c, bgr.channels() - 1)] / 255.0));
  for (int c = 0; c < 3; ++c) out.push_back(static_cast<float>(stddev[std::min(c, bgr.channels() - 1)] / 255.0));
  return out;
}

float SquaredDistance(const std::vector<float>& a, const std::vector<float>& b) {
  const size_t n = std::min(a.size(), b.size());
  float sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const float d = a[i] - b[i];
    sum += d * d;
  }
  return sum;
}

std::vector<size_t> KCenterGreedy(const std::vector<const std::vector<float>*>& points,
                                  const std::vector<const std::vector<float>*>& covered, size_t k) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  // nearest[i]: squared distance of point i to the nearest covered or chosen point; -1 for a
  // point that cannot be chosen (empty, or chosen already).
  std::vector<float> nearest(points.size(), kInf);
  for (size_t i = 0; i < points.size(); ++i) {
    if (points[i]->empty()) {
      nearest[i] = -1;
      continue;
    }
    for (const std::vector<float>* c : covered)
      if (!c->empty()) nearest[i] = std::min(nearest[i], SquaredDistance(*points[i], *c));
  }
  std::vector<size_t> chosen;
  while (chosen.size() < k) {
    size_t best = points.size();
    for (size_t i = 0; i < points.size(); ++i)
      if (nearest[i] >= 0 && (best == points.size() || nearest[i] > nearest[best])) best = i;
    if (best == points.size()) break;
    chosen.push_back(best);
    nearest[best] = -1;
    for (size_t i = 0; i < points.size(); ++i)
      if (nearest[i] >= 0) nearest[i] = std::min(nearest[i], SquaredDistance(*points[i], *points[best]));
  }
  return chosen;
}

}  // namespace sd
