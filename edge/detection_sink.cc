#include "edge/detection_sink.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace sd {
namespace {

namespace fs = std::filesystem;

// Rounded in double: a float like 0.91f would otherwise print as 0.9100000262260437.
double Round(double v, int decimals) {
  if (!std::isfinite(v)) return v;  // nlohmann writes null; the line stays valid JSON
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

// A few well-separated BGR colours, by class.
cv::Scalar ClassColor(int class_id) {
  static const cv::Scalar kColors[] = {{0, 255, 0}, {0, 128, 255}, {255, 0, 255}, {255, 255, 0},
                                       {0, 0, 255}, {255, 0, 0},   {0, 255, 255}, {128, 0, 128}};
  const int n = static_cast<int>(sizeof(kColors) / sizeof(kColors[0]));
  return kColors[((class_id % n) + n) % n];
}

nlohmann::ordered_json BoxJson(const Box& box) {
  return {Round(box.x1, 2), Round(box.y1, 2), Round(box.x2, 2), Round(box.y2, 2)};
}

// Replace, not throw, on invalid UTF-8 (a camera id is checked, but no exception may escape).
std::string Dump(const nlohmann::ordered_json& line) {
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

std::string ObjectEventJsonLine(const ObjectEvent& event, uint64_t seq, const std::string& camera) {
  nlohmann::ordered_json line;
  line["event"] = ObjectEventKindName(event.kind);
  line["seq"] = seq;
  line["camera"] = camera;
  line["id"] = event.track_id;
  line["class"] = event.class_id;
  line["score"] = Round(event.score, 3);
  line["top_score"] = Round(event.top_score, 3);
  line["box"] = BoxJson(event.box);
  line["zones"] = event.zones;
  line["model_version"] = event.model_version;
  line["frame"] = event.frame;
  line["time"] = Round(event.time_s, 3);
  line["start_time"] = Round(event.start_time_s, 3);
  return Dump(line);
}

std::string DetectionJsonLine(int64_t frame_index, double time_s, uint64_t model_version,
                              const Detections& detections, const ZoneTags* zones) {
  // ordered_json keeps the documented key order, which people reading the log expect.
  nlohmann::ordered_json line;
  line["frame"] = frame_index;
  line["time"] = Round(time_s, 3);
  line["model_version"] = model_version;
  nlohmann::ordered_json dets = nlohmann::ordered_json::array();
  for (size_t i = 0; i < detections.size(); ++i) {
    const Detection& d = detections[i];
    nlohmann::ordered_json j;
    j["class"] = d.class_id;
    j["score"] = Round(d.score, 3);
    j["box"] = BoxJson(d.box);
    if (zones != nullptr && i < zones->size() && !(*zones)[i].empty()) j["zones"] = (*zones)[i];
    dets.push_back(std::move(j));
  }
  line["detections"] = std::move(dets);
  return Dump(line);
}

DetectionSink::DetectionSink(DetectionSinkOptions options, std::FILE* out, bool owns_out)
    : options_(std::move(options)), out_(out), owns_out_(owns_out) {}

DetectionSink::~DetectionSink() {
  if (owns_out_) std::fclose(out_);
  else std::fflush(out_);
}

Status DetectionSinkOptions::Validate() const {
  if (path.empty()) return Status::InvalidArgument("path: is empty (use \"-\" for stdout)");
  if (annotate_every < 1)
    return Status::InvalidArgument("annotate_every: must be >= 1, got " + std::to_string(annotate_every));
  return Status::Ok();
}

StatusOr<std::unique_ptr<DetectionSink>> DetectionSink::Open(const DetectionSinkOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("detections"));
  std::error_code ec;
  if (!options.annotated_dir.empty()) {
    fs::create_directories(options.annotated_dir, ec);
    if (ec) {
      return Status::IOError("detections: cannot create annotated_dir " + options.annotated_dir + ": " +
                             ec.message());
    }
  }
  if (options.path == "-") {
    return std::unique_ptr<DetectionSink>(new DetectionSink(options, stdout, false));
  }
  const fs::path parent = fs::path(options.path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return Status::IOError("detections: cannot create directory " + parent.string() + ": " + ec.message());
  }
  std::FILE* f = std::fopen(options.path.c_str(), "a");
  if (f == nullptr) {
    return Status::IOError("detections: cannot open " + options.path + " for appending: " + std::strerror(errno));
  }
  return std::unique_ptr<DetectionSink>(new DetectionSink(options, f, true));
}

Status DetectionSink::WriteLine(const std::string& json_line) {
  const std::string line = json_line + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  if (std::fwrite(line.data(), 1, line.size(), out_) != line.size() || std::fflush(out_) != 0) {
    return Status::IOError("detections: cannot write to " + options_.path + ": " + std::strerror(errno));
  }
  ++lines_written_;
  return Status::Ok();
}

Status DetectionSink::Write(int64_t frame_index, double time_s, uint64_t model_version, const Detections& detections,
                            const cv::Mat* frame_for_annotation, const ZoneTags* zones) {
  SD_RETURN_IF_ERROR(WriteLine(DetectionJsonLine(frame_index, time_s, model_version, detections, zones)));
  if (options_.annotated_dir.empty() || frame_for_annotation == nullptr ||
      frame_index % options_.annotate_every != 0) {
    return Status::Ok();
  }
  // Outside the lock: encoding a JPEG takes milliseconds.
  SD_RETURN_IF_ERROR(Annotate(frame_index, model_version, detections, *frame_for_annotation));
  std::lock_guard<std::mutex> lock(mu_);
  ++frames_annotated_;
  return Status::Ok();
}

Status DetectionSink::Annotate(int64_t frame_index, uint64_t model_version, const Detections& detections,
                               const cv::Mat& frame) const {
  const std::string path =
      (fs::path(options_.annotated_dir) / ("frame_" + std::to_string(frame_index) + ".jpg")).string();
  if (frame.empty()) return Status::InvalidArgument("detections: " + path + ": frame is empty");
  if (frame.depth() != CV_8U || (frame.channels() != 1 && frame.channels() != 3 && frame.channels() != 4)) {
    return Status::InvalidArgument("detections: " + path + ": expected an 8-bit grey, BGR or BGRA frame");
  }
  try {
    cv::Mat canvas;
    if (frame.channels() == 1) {
      cv::cvtColor(frame, canvas, cv::COLOR_GRAY2BGR);
    } else if (frame.channels() == 4) {
      cv::cvtColor(frame, canvas, cv::COLOR_BGRA2BGR);
    } else {
      canvas = frame.clone();  // the caller's frame goes on to the sampler untouched
    }
    const int thickness = std::max(1, std::min(canvas.cols, canvas.rows) / 300);
    const double font = std::max(0.4, std::min(canvas.cols, canvas.rows) / 900.0);
    for (const Detection& d : detections) {
      const cv::Point p1(static_cast<int>(std::lround(d.box.x1)), static_cast<int>(std::lround(d.box.y1)));
      const cv::Point p2(static_cast<int>(std::lround(d.box.x2)), static_cast<int>(std::lround(d.box.y2)));
      const cv::Scalar color = ClassColor(d.class_id);
      cv::rectangle(canvas, p1, p2, color, thickness);
      char label[48];
      std::snprintf(label, sizeof(label), "%d %.2f", d.class_id, d.score);
      cv::putText(canvas, label, cv::Point(p1.x, std::max(10, p1.y - 3)), cv::FONT_HERSHEY_SIMPLEX, font, color,
                  thickness);
    }
    const std::string banner = "frame " + std::to_string(frame_index) + "  model v" + std::to_string(model_version);
    // Bottom left: box labels sit above their boxes, often near the top.
    cv::putText(canvas, banner, cv::Point(4, canvas.rows - 6), cv::FONT_HERSHEY_SIMPLEX, font,
                cv::Scalar(255, 255, 255), thickness);
    if (!cv::imwrite(path, canvas, {cv::IMWRITE_JPEG_QUALITY, 85})) {
      return Status::IOError("detections: cannot write " + path);
    }
  } catch (const cv::Exception& e) {
    return Status::Internal("detections: " + path + ": " + e.what());
  }
  return Status::Ok();
}

int64_t DetectionSink::lines_written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_written_;
}

int64_t DetectionSink::frames_annotated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return frames_annotated_;
}

}  // namespace sd
