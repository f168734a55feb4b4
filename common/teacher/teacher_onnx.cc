// YOLOv8-style ONNX detectors run through OpenCV's dnn module on the CPU.
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>

#include "common/teacher/teacher_internal.h"
#include "common/teacher/yolo_decode.h"

namespace sd {
namespace teacher_internal {
namespace {

class OnnxTeacher : public Teacher {
 public:
  OnnxTeacher(const TeacherOptions& options, std::string model_hash, cv::dnn::Net net)
      : options_(options), model_hash_(std::move(model_hash)), net_(std::move(net)) {
    decode_.score_threshold = options.score_threshold;
    decode_.nms_iou = options.nms_iou;
    decode_.class_map = options.class_map;
  }

  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    SD_RETURN_IF_ERROR(CheckFrame(bgr));
    const Letterbox geometry =
        ComputeLetterbox(bgr.cols, bgr.rows, options_.input_width, options_.input_height);
    cv::Mat output;
    try {
      // swapRB: the network expects RGB; scale 1/255 and NCHW as in YOLOv8's preprocessing.
      cv::Mat blob = cv::dnn::blobFromImage(ApplyLetterbox(bgr, geometry), 1.0 / 255.0, cv::Size(),
                                            cv::Scalar(), /*swapRB=*/true, /*crop=*/false, CV_32F);
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
    StatusOr<Detections> decoded =
        DecodeYoloOutput(output.ptr<float>(), shape, geometry, decode_);
    if (!decoded.ok()) return decoded.status().WithContext("onnx model " + options_.model_path);
    return decoded;
  }

  std::string Fingerprint() const override {
    return std::string("onnx opencv=") + CV_VERSION + " model=" + model_hash_ +
           " input=" + std::to_string(options_.input_width) + "x" +
           std::to_string(options_.input_height) +
           " min_score=" + FormatNumber(options_.score_threshold) +
           " nms_iou=" + FormatNumber(options_.nms_iou) +
           " class_map=" + FormatClassMap(options_.class_map);
  }

 private:
  const TeacherOptions options_;
  const std::string model_hash_;
  cv::dnn::Net net_;
  YoloDecodeOptions decode_;
};

}  // namespace

StatusOr<std::unique_ptr<Teacher>> CreateOnnxTeacher(const TeacherOptions& options) {
  SD_RETURN_IF_ERROR(CheckModelFile("onnx model", options.model_path));
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
  std::unique_ptr<Teacher> teacher(new OnnxTeacher(options, std::move(hash), std::move(net)));
  // dnn only builds layers at the first forward; fail here, not on the first real frame.
  SD_RETURN_IF_ERROR(WarmUp(teacher.get(), options));
  return teacher;
}

}  // namespace teacher_internal
}  // namespace sd
