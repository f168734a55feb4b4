// Shrinking a frame to a maximum width: the edge before it uploads a frame (upload.max_width)
// and the server before it labels and stores one (labeler.stored_image_max_width).
#pragma once

#include <opencv2/core.hpp>

namespace sd {

// `image` scaled down to `max_width` columns when it is wider, aspect kept (both axes by
// max_width / cols, rows rounded, at least 1), with INTER_AREA; otherwise `image` itself (its
// pixels shared, not copied). `max_width` <= 0: never shrinks.
cv::Mat ShrinkToWidth(const cv::Mat& image, int max_width);

}  // namespace sd
