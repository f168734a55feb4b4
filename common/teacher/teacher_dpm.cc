// Felzenszwalb's deformable part model cascade from opencv_contrib (e.g. inriaperson.xml).
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/dpm.hpp>

#include "common/teacher/teacher_internal.h"

namespace sd {
namespace teacher_internal {
namespace {

class DpmTeacher : public Teacher {
 public:
  DpmTeacher(const TeacherOptions& options, std::string model_hash, cv::Ptr<cv::dpm::DPMDetector> d)
      : options_(options), model_hash_(std::move(model_hash)), detector_(std::move(d)) {}

  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    SD_RETURN_IF_ERROR(CheckFrame(bgr));
    std::vector<cv::dpm::DPMDetector::ObjectDetection> objects;
    try {
      // detect() takes a non-const Mat; the header copy keeps ours intact. Tiny frames are
      // padded, as for HOG: the cascade's pyramid assumes room for its root filter.
      cv::Mat image = PadToAtLeast(bgr, cv::Size(64, 128));
      detector_->detect(image, objects);
    } catch (const cv::Exception& e) {
      return Status::Internal("dpm teacher (" + options_.model_path + "): detect failed: " + e.err);
    }
    Detections found;
    for (const auto& o : objects) {
      if (!(o.score >= options_.score_threshold)) continue;
      const cv::Rect r = o.rect & cv::Rect(0, 0, bgr.cols, bgr.rows);
      if (r.empty()) continue;
      // One model file means one class; its index is ours (person = 0 for inriaperson).
      found.push_back({{static_cast<float>(r.x), static_cast<float>(r.y),
                        static_cast<float>(r.x + r.width), static_cast<float>(r.y + r.height)},
                       o.score,
                       /*class_id=*/0});
    }
    return NonMaxSuppression(std::move(found), options_.nms_iou);
  }

  std::string Fingerprint() const override {
    return std::string("dpm opencv=") + CV_VERSION + " model=" + model_hash_ +
           " min_score=" + FormatNumber(options_.score_threshold) +
           " nms_iou=" + FormatNumber(options_.nms_iou);
  }

 private:
  const TeacherOptions options_;
  const std::string model_hash_;
  cv::Ptr<cv::dpm::DPMDetector> detector_;
};

}  // namespace

StatusOr<std::unique_ptr<Teacher>> CreateDpmTeacher(const TeacherOptions& options) {
  SD_RETURN_IF_ERROR(CheckModelFile("dpm model", options.model_path));
  SD_ASSIGN_OR_RETURN(std::string hash, FileContentHash(options.model_path));
  cv::Ptr<cv::dpm::DPMDetector> detector;
  try {
    detector = cv::dpm::DPMDetector::create({options.model_path});
  } catch (const cv::Exception& e) {
    return Status::InvalidArgument("dpm model " + options.model_path + ": cannot load: " + e.err);
  }
  if (detector.empty() || detector->isEmpty()) {
    return Status::InvalidArgument("dpm model " + options.model_path +
                                   ": not a DPM cascade model (nothing loaded)");
  }
  if (options.threads > 0) cv::setNumThreads(options.threads);
  return std::unique_ptr<Teacher>(new DpmTeacher(options, std::move(hash), std::move(detector)));
}

}  // namespace teacher_internal
}  // namespace sd
