// YOLOv8-style ONNX detectors run through OpenCV's dnn module on the CPU.
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>

#include "common/teacher/teacher_internal.h"
#include "common/teacher/yolo_teacher.h"

namespace sd {
namespace teacher_internal {
namespace {

class OnnxTeacher : public YoloTeacher {
 public:
  OnnxTeacher(const TeacherOptions& options, YoloDecodeOptions decode, std::string model_hash, cv::dnn::Net net)
      : YoloTeacher(options, std::move(decode), std::string("onnx opencv=") + CV_VERSION, "onnx model",
                    std::move(model_hash)),
        net_(std::move(net)) {}

 private:
  StatusOr<Detections> Forward(const cv::Mat& input, const Letterbox& geometry) override {
    cv::Mat output;
    try {
      // swapRB: the network expects RGB; scale 1/255 and NCHW as in YOLOv8's preprocessing.
      cv::Mat blob = cv::dnn::blobFromImage(input, 1.0 / 255.0, cv::Size(), cv::Scalar(), /*swapRB=*/true,
                                            /*crop=*/false, CV_32F);
      net_.setInput(blob);
      output = net_.forward();
    } catch (const cv::Exception& e) {
      return Status::Internal("onnx teacher (" + options_.model_path + "): inference failed: " + e.err);
    }
    if (output.type() != CV_32F || !output.isContinuous()) {
      return Status::Internal("onnx teacher (" + options_.model_path +
                              "): expected a continuous float32 output");
    }
    std::vector<int64_t> shape(output.size.p, output.size.p + output.dims);
    return Decode(output.ptr<float>(), shape, geometry);
  }

  cv::dnn::Net net_;
};

}  // namespace

StatusOr<std::unique_ptr<Teacher>> CreateOnnxTeacher(const TeacherOptions& options) {
  SD_RETURN_IF_ERROR(CheckModelFile("onnx model", options.model_path));
  SD_ASSIGN_OR_RETURN(YoloDecodeOptions decode, YoloDecodeOptionsOf(options));
  SD_ASSIGN_OR_RETURN(std::string hash, FileContentHash(options.model_path));
  cv::dnn::Net net;
  try {
    net = cv::dnn::readNetFromONNX(options.model_path);
  } catch (const cv::Exception& e) {
    return Status::InvalidArgument("onnx model " + options.model_path + ": cannot load: " + e.err);
  }
  if (net.empty()) {
    return Status::InvalidArgument("onnx model " + options.model_path + ": loaded an empty network");
  }
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  if (options.threads > 0) cv::setNumThreads(options.threads);
  std::unique_ptr<Teacher> teacher(new OnnxTeacher(options, std::move(decode), std::move(hash), std::move(net)));
  // dnn only builds layers at the first forward; fail here, not on the first real frame.
  SD_RETURN_IF_ERROR(WarmUp(teacher.get(), options));
  return teacher;
}

}  // namespace teacher_internal
}  // namespace sd
