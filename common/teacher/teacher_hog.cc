// The HOG + linear SVM people detector (Dalal-Triggs) that ships with OpenCV: no model file,
// CPU only, person class only.
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/objdetect.hpp>

#include "common/teacher/teacher_internal.h"

namespace sd {
namespace teacher_internal {
namespace {

class HogTeacher : public Teacher {
 public:
  // The detection window (64x128) with room for detectMultiScale's own border handling;
  // smaller frames made it read out of bounds.
  static inline const cv::Size kMinFrame{64, 128};

  explicit HogTeacher(const TeacherOptions& options) : options_(options) {
    hog_.setSVMDetector(cv::HOGDescriptor::getDefaultPeopleDetector());
  }

  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    SD_RETURN_IF_ERROR(CheckFrame(bgr));
    // Small frames (a thumbnail, a narrow crop) are padded to the detector's minimum rather
    // than refused: the frame is valid, it just cannot hold a detectable person.
    const cv::Mat image = PadToAtLeast(bgr, kMinFrame);
    std::vector<cv::Rect> rects;
    std::vector<double> weights;
    try {
      // Full resolution on purpose: people in our footage are as small as 128 px tall, the
      // detector window. groupThreshold 0 returns the raw windows with their SVM weights,
      // which our own NMS then merges (OpenCV's grouping would discard the weights).
      hog_.detectMultiScale(image, rects, weights, /*hitThreshold=*/0,
                            cv::Size(options_.hog_win_stride, options_.hog_win_stride),
                            /*padding=*/cv::Size(), options_.hog_scale, /*groupThreshold=*/0);
    } catch (const cv::Exception& e) {
      return Status::Internal(std::string("hog teacher: detectMultiScale failed: ") + e.err);
    }
    Detections found;
    for (size_t i = 0; i < rects.size() && i < weights.size(); ++i) {
      if (weights[i] < options_.score_threshold) continue;
      const cv::Rect r = rects[i] & cv::Rect(0, 0, bgr.cols, bgr.rows);
      if (r.empty()) continue;
      found.push_back({{static_cast<float>(r.x), static_cast<float>(r.y),
                        static_cast<float>(r.x + r.width), static_cast<float>(r.y + r.height)},
                       static_cast<float>(weights[i]),
                       /*class_id=*/0});
    }
    return NonMaxSuppression(std::move(found), options_.nms_iou);
  }

  std::string Fingerprint() const override {
    return std::string("hog opencv=") + CV_VERSION +
           " detector=default_people win_stride=" + std::to_string(options_.hog_win_stride) +
           " scale=" + FormatNumber(options_.hog_scale) +
           " min_weight=" + FormatNumber(options_.score_threshold) +
           " nms_iou=" + FormatNumber(options_.nms_iou);
  }

 private:
  const TeacherOptions options_;
  cv::HOGDescriptor hog_;
};

}  // namespace

StatusOr<std::unique_ptr<Teacher>> CreateHogTeacher(const TeacherOptions& options) {
  if (options.threads > 0) cv::setNumThreads(options.threads);
  return std::unique_ptr<Teacher>(new HogTeacher(options));
}

}  // namespace teacher_internal
}  // namespace sd
