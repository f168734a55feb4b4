// YOLOv8-style TorchScript detectors (e.g. `yolo export format=torchscript`) run on the CPU.
#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/version.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "common/teacher/teacher_internal.h"
#include "common/teacher/yolo_teacher.h"

namespace sd {
namespace teacher_internal {
namespace {

// Letterboxed, RGB, 0..1, NCHW: what YOLOv8 models are trained on.
torch::Tensor ToInputTensor(const cv::Mat& letterboxed_bgr) {
  cv::Mat rgb;
  cv::cvtColor(letterboxed_bgr, rgb, cv::COLOR_BGR2RGB);
  cv::Mat scaled;
  rgb.convertTo(scaled, CV_32FC3, 1.0 / 255.0);
  // from_blob borrows `scaled`; contiguous() after permute makes the copy that outlives it.
  return torch::from_blob(scaled.data, {1, scaled.rows, scaled.cols, 3}, torch::kFloat32)
      .permute({0, 3, 1, 2})
      .contiguous();
}

// Exports return either the prediction tensor or a tuple/list whose first element it is.
StatusOr<torch::Tensor> PredictionTensor(const torch::IValue& out) {
  if (out.isTensor()) return out.toTensor();
  if (out.isTuple() && !out.toTupleRef().elements().empty()) {
    const torch::IValue& first = out.toTupleRef().elements()[0];
    if (first.isTensor()) return first.toTensor();
  }
  if (out.isList() && out.toListRef().size() > 0 && out.toListRef()[0].isTensor()) {
    return out.toListRef()[0].toTensor();
  }
  return Status::InvalidArgument("forward() returned " + out.tagKind() +
                                 ", expected a tensor or a tuple/list starting with one");
}

class TorchScriptTeacher : public YoloTeacher {
 public:
  TorchScriptTeacher(const TeacherOptions& options, YoloDecodeOptions decode, std::string model_hash,
                     torch::jit::Module m)
      : YoloTeacher(options, std::move(decode), std::string("torchscript torch=") + TORCH_VERSION,
                    "torchscript model", std::move(model_hash)),
        module_(std::move(m)) {}

 private:
  StatusOr<Detections> Forward(const cv::Mat& input, const Letterbox& geometry) override {
    torch::Tensor prediction;
    try {
      torch::NoGradGuard no_grad;
      const torch::IValue out = module_.forward({ToInputTensor(input)});
      StatusOr<torch::Tensor> tensor = PredictionTensor(out);
      if (!tensor.ok()) return tensor.status().WithContext("torchscript model " + options_.model_path);
      prediction = tensor->to(torch::kCPU, torch::kFloat32).contiguous();
    } catch (const c10::Error& e) {
      return Status::Internal("torchscript model " + options_.model_path +
                              ": forward failed: " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      return Status::Internal("torchscript model " + options_.model_path + ": forward failed: " + e.what());
    }
    return Decode(prediction.data_ptr<float>(), prediction.sizes().vec(), geometry);
  }

  torch::jit::Module module_;
};

}  // namespace

StatusOr<std::unique_ptr<Teacher>> CreateTorchScriptTeacher(const TeacherOptions& options) {
  SD_RETURN_IF_ERROR(CheckModelFile("torchscript model", options.model_path));
  SD_ASSIGN_OR_RETURN(YoloDecodeOptions decode, YoloDecodeOptionsOf(options));
  SD_ASSIGN_OR_RETURN(std::string hash, FileContentHash(options.model_path));
  torch::jit::Module module;
  try {
    module = torch::jit::load(options.model_path, torch::kCPU);
  } catch (const c10::Error& e) {
    return Status::InvalidArgument("torchscript model " + options.model_path +
                                   ": cannot load: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::InvalidArgument("torchscript model " + options.model_path + ": cannot load: " + e.what());
  }
  module.eval();
  if (options.threads > 0) at::set_num_threads(options.threads);
  std::unique_ptr<Teacher> teacher(new TorchScriptTeacher(options, std::move(decode), std::move(hash), std::move(module)));
  SD_RETURN_IF_ERROR(WarmUp(teacher.get(), options));
  return teacher;
}

}  // namespace teacher_internal
}  // namespace sd
