#include "common/teacher/teacher.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <opencv2/imgproc.hpp>

#include "common/base/checksum.h"
#include "common/teacher/teacher_internal.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

constexpr TeacherKind kAllTeacherKinds[] = {TeacherKind::kHog, TeacherKind::kDpm, TeacherKind::kTorchScript,
                                            TeacherKind::kOnnx};

// Labels a narrow frame at `min_width` and maps the boxes back (TeacherOptions::min_width).
class EnlargingTeacher : public Teacher {
 public:
  EnlargingTeacher(std::unique_ptr<Teacher> inner, int min_width) : inner_(std::move(inner)), min_width_(min_width) {}

  StatusOr<Detections> Label(const cv::Mat& bgr) override {
    SD_RETURN_IF_ERROR(teacher_internal::CheckFrame(bgr));
    if (bgr.cols >= min_width_) return inner_->Label(bgr);
    const double scale = static_cast<double>(min_width_) / bgr.cols;
    cv::Mat enlarged;
    cv::resize(bgr, enlarged, cv::Size(min_width_, std::max(1, static_cast<int>(bgr.rows * scale + 0.5))), 0, 0,
               cv::INTER_LINEAR);
    SD_ASSIGN_OR_RETURN(Detections labels, inner_->Label(enlarged));
    const float sx = static_cast<float>(bgr.cols) / enlarged.cols, sy = static_cast<float>(bgr.rows) / enlarged.rows;
    ScaleDetections(&labels, sx, sy);
    return labels;
  }

  std::string Fingerprint() const override {
    return inner_->Fingerprint() + " min_width=" + std::to_string(min_width_);
  }

 private:
  std::unique_ptr<Teacher> inner_;
  const int min_width_;
};

StatusOr<std::unique_ptr<Teacher>> CreateTeacherOfKind(const TeacherOptions& options) {
  switch (options.kind) {
    case TeacherKind::kHog: return teacher_internal::CreateHogTeacher(options);
    case TeacherKind::kDpm: return teacher_internal::CreateDpmTeacher(options);
    case TeacherKind::kTorchScript: return teacher_internal::CreateTorchScriptTeacher(options);
    case TeacherKind::kOnnx: return teacher_internal::CreateOnnxTeacher(options);
  }
  return Status::InvalidArgument("unknown teacher kind " + std::to_string(static_cast<int>(options.kind)));
}

}  // namespace

Teacher::~Teacher() = default;

const char* TeacherKindName(TeacherKind kind) {
  switch (kind) {
    case TeacherKind::kHog: return "hog";
    case TeacherKind::kDpm: return "dpm";
    case TeacherKind::kTorchScript: return "torchscript";
    case TeacherKind::kOnnx: return "onnx";
  }
  return "unknown";
}

const std::vector<std::string>& TeacherKinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> names;
    for (TeacherKind kind : kAllTeacherKinds) names.push_back(TeacherKindName(kind));
    return names;
  }();
  return kinds;
}

StatusOr<TeacherKind> ParseTeacherKind(const std::string& name) {
  for (TeacherKind kind : kAllTeacherKinds)
    if (name == TeacherKindName(kind)) return kind;
  std::string valid;
  for (const std::string& k : TeacherKinds()) valid += (valid.empty() ? "" : ", ") + k;
  return Status::InvalidArgument("unknown teacher kind '" + name + "' (valid: " + valid + ")");
}

// Each message starts with the field's name (YamlReader::Check maps model_path to `model`).
Status TeacherOptions::Validate() const {
  const TeacherOptions& o = *this;
  auto invalid = [](const std::string& problem) { return Status::InvalidArgument(problem); };
  if (!std::isfinite(o.score_threshold)) return invalid("score_threshold: must be finite");
  if (!(o.nms_iou >= 0.0f && o.nms_iou <= 1.0f))
    return invalid("nms_iou: must be in [0, 1], got " + teacher_internal::FormatNumber(o.nms_iou));
  if (o.kind == TeacherKind::kHog) {
    if (!(o.hog_scale > 1.0 && o.hog_scale < 10.0))
      return invalid("hog_scale: must be in (1, 10), got " + teacher_internal::FormatNumber(o.hog_scale));
    // HOGDescriptor asserts (throws) on a stride that is not a multiple of its 8-px block stride.
    if (o.hog_win_stride <= 0 || o.hog_win_stride % 8 != 0)
      return invalid("hog_win_stride: must be a positive multiple of 8, got " + std::to_string(o.hog_win_stride));
  }
  if (o.min_width < 0 || o.min_width > 8192)
    return invalid("min_width: must be in 0..8192, got " + std::to_string(o.min_width));
  if (o.kind == TeacherKind::kTorchScript || o.kind == TeacherKind::kOnnx) {
    const bool width_ok = o.input_width > 0 && o.input_width <= 8192;
    if (!width_ok || o.input_height <= 0 || o.input_height > 8192) {
      return invalid(std::string(width_ok ? "input_height" : "input_width") +
                     ": teacher input size must be in 1..8192, got " + std::to_string(o.input_width) + "x" +
                     std::to_string(o.input_height));
    }
    for (int c : o.class_map)
      if (c < -1) return invalid("class_map: entries must be >= -1, got " + std::to_string(c));
  }
  return Status::Ok();
}


StatusOr<std::unique_ptr<Teacher>> CreateTeacher(const TeacherOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("teacher"));
  SD_ASSIGN_OR_RETURN(std::unique_ptr<Teacher> teacher, CreateTeacherOfKind(options));
  if (options.min_width == 0) return teacher;
  return std::unique_ptr<Teacher>(std::make_unique<EnlargingTeacher>(std::move(teacher), options.min_width));
}

StatusOr<std::string> FileContentHash(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return Status::NotFound(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(path + ": cannot open for reading");
  uint64_t hash = kFnv1a64Basis;
  uint64_t size = 0;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    hash = Fnv1a64(std::string_view(buffer.data(), static_cast<size_t>(got)), hash);
    size += static_cast<uint64_t>(got);
  }
  if (in.bad()) return Status::IOError(path + ": read error");
  return "fnv1a64=" + Hex64(hash) + ",size=" + std::to_string(size);
}

namespace teacher_internal {

Status CheckModelFile(const std::string& what, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument(what + ": model_path is empty");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return Status::NotFound(what + " " + path + ": no such file");
  return Status::Ok();
}

Status CheckFrame(const cv::Mat& bgr) {
  if (bgr.empty()) return Status::InvalidArgument("teacher: empty frame");
  if (bgr.type() != CV_8UC3) {
    return Status::InvalidArgument("teacher: expected an 8-bit BGR frame (CV_8UC3), got type " +
                                   std::to_string(bgr.type()) + " with " +
                                   std::to_string(bgr.channels()) + " channels");
  }
  return Status::Ok();
}

cv::Mat PadToAtLeast(const cv::Mat& bgr, cv::Size min_size) {
  const int bottom = std::max(0, min_size.height - bgr.rows);
  const int right = std::max(0, min_size.width - bgr.cols);
  if (bottom == 0 && right == 0) return bgr;
  cv::Mat padded;
  cv::copyMakeBorder(bgr, padded, 0, bottom, 0, right, cv::BORDER_CONSTANT, cv::Scalar(114, 114, 114));
  return padded;
}

Status WarmUp(Teacher* teacher, const TeacherOptions& options) {
  const cv::Mat blank(options.input_height, options.input_width, CV_8UC3, cv::Scalar::all(114));
  StatusOr<Detections> result = teacher->Label(blank);
  if (!result.ok()) {
    // Label's errors already name the model file.
    return result.status().WithContext("trial inference on a blank frame failed");
  }
  return Status::Ok();
}

std::string FormatNumber(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string FormatNumber(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string FormatClassMap(const std::vector<int>& class_map) {
  if (class_map.empty()) return "identity";
  std::string s;
  for (size_t i = 0; i < class_map.size(); ++i) s += (i ? "," : "") + std::to_string(class_map[i]);
  return s;
}

}  // namespace teacher_internal
}  // namespace sd
