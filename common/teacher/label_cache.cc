#include "common/teacher/label_cache.h"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>
#include <spdlog/spdlog.h>

#include "common/base/checksum.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[] = "streamdistill-labels";
constexpr int kVersion = 1;

// Shortest form that reads back to the identical float: cached labels equal fresh ones.
std::string FloatText(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// Splits on single spaces; the writer never emits anything else.
std::vector<std::string> Fields(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

template <typename T>
bool ParseNumber(const std::string& s, T* v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool ParseDetection(const std::string& line, Detection* d) {
  const std::vector<std::string> f = Fields(line);
  return f.size() == 6 && ParseNumber(f[0], &d->class_id) && ParseNumber(f[1], &d->score) &&
         ParseNumber(f[2], &d->box.x1) && ParseNumber(f[3], &d->box.y1) &&
         ParseNumber(f[4], &d->box.x2) && ParseNumber(f[5], &d->box.y2);
}

// Parses the header; on success sets *frames. Returns the key mismatch or format error.
Status ParseHeader(const std::string& line, const std::string& expected_key, int64_t* frames) {
  const std::string prefix = std::string(kMagic) + " ";
  if (line.compare(0, prefix.size(), prefix) != 0) return Status::DataLoss("not a label file");
  const size_t key_at = line.find(" key=");
  if (key_at == std::string::npos) return Status::DataLoss("header has no key");
  const std::vector<std::string> f = Fields(line.substr(0, key_at));
  int version = 0;
  if (f.size() != 3 || !ParseNumber(f[1], &version)) return Status::DataLoss("malformed header");
  if (version != kVersion) {
    return Status::FailedPrecondition("format version " + f[1] + ", expected " + std::to_string(kVersion));
  }
  if (f[2].rfind("frames=", 0) != 0 || !ParseNumber(f[2].substr(7), frames) || *frames < 0) {
    return Status::DataLoss("malformed frame count in header");
  }
  if (line.substr(key_at + 5) != expected_key) {
    return Status::FailedPrecondition("key differs (written for another video or teacher)");
  }
  return Status::Ok();
}

// The body after the header: `frames` frame records then the end marker.
Status ParseBody(std::istream& in, int64_t frames, std::vector<Detections>* labels) {
  std::string line;
  for (int64_t i = 0; i < frames; ++i) {
    if (!std::getline(in, line)) return Status::DataLoss("truncated at frame " + std::to_string(i));
    const std::vector<std::string> f = Fields(line);
    int64_t index = -1, count = -1;
    if (f.size() != 3 || f[0] != "frame" || !ParseNumber(f[1], &index) || index != i ||
        !ParseNumber(f[2], &count) || count < 0) {
      return Status::DataLoss("bad record for frame " + std::to_string(i) + ": '" + line + "'");
    }
    Detections& frame = labels->emplace_back();
    for (int64_t k = 0; k < count; ++k) {
      Detection d;
      if (!std::getline(in, line) || !ParseDetection(line, &d)) {
        return Status::DataLoss("bad or missing detection " + std::to_string(k) + " of frame " +
                                std::to_string(i));
      }
      frame.push_back(d);
    }
  }
  if (!std::getline(in, line) || line != "end " + std::to_string(frames)) {
    return Status::DataLoss("missing end marker (truncated file)");
  }
  if (std::getline(in, line)) return Status::DataLoss("unexpected data after the end marker");
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> LabelCacheKey(const std::string& video_path, const Teacher& teacher) {
  SD_ASSIGN_OR_RETURN(std::string video_hash, FileContentHash(video_path));
  return "video=" + video_hash + " teacher=" + teacher.Fingerprint();
}

std::string LabelCachePath(const std::string& cache_dir, const std::string& video_path,
                           const std::string& key) {
  const std::string stem = fs::path(video_path).stem().string();
  return (fs::path(cache_dir) / (stem + "." + Hex64(Fnv1a64(key)) + ".labels")).string();
}

Status SaveLabels(const std::string& path, const std::string& key,
                  const std::vector<Detections>& labels, Env* env) {
  if (key.find_first_of("\r\n") != std::string::npos) {
    return Status::InvalidArgument("label cache key must be a single line");
  }
  std::ostringstream out;
  out << kMagic << " " << kVersion << " frames=" << labels.size() << " key=" << key << "\n";
  for (size_t i = 0; i < labels.size(); ++i) {
    out << "frame " << i << " " << labels[i].size() << "\n";
    for (const Detection& d : labels[i]) {
      out << d.class_id << " " << FloatText(d.score) << " " << FloatText(d.box.x1) << " "
          << FloatText(d.box.y1) << " " << FloatText(d.box.x2) << " " << FloatText(d.box.y2) << "\n";
    }
  }
  out << "end " << labels.size() << "\n";
  return WriteFileDurably(env, path, out.str());
}

StatusOr<std::vector<Detections>> LoadLabels(const std::string& path, const std::string& expected_key, Env* env) {
  StatusOr<std::string> text = env->ReadFile(path);
  if (!text.ok()) {
    if (text.status().code() == Status::Code::kNotFound) return Status::NotFound(path + ": no such label file");
    return text.status();
  }
  std::istringstream in(std::move(text).value());
  std::string header;
  if (!std::getline(in, header)) return Status::DataLoss(path + ": empty label file");
  int64_t frames = 0;
  SD_RETURN_IF_ERROR(ParseHeader(header, expected_key, &frames).WithContext(path));
  std::vector<Detections> labels;
  SD_RETURN_IF_ERROR(ParseBody(in, frames, &labels).WithContext(path));
  return labels;
}

StatusOr<std::vector<Detections>> LabelVideo(const std::string& video_path, Teacher& teacher,
                                             const LabelProgress& progress) {
  std::error_code ec;
  if (!fs::is_regular_file(video_path, ec)) return Status::NotFound(video_path + ": no such video");
  std::vector<Detections> labels;
  try {
    // FFmpeg first: the other backends would take a non-video for an image-sequence pattern
    // or a GStreamer URI and log noise before failing.
    cv::VideoCapture capture(video_path, cv::CAP_FFMPEG);
    if (!capture.isOpened()) capture.open(video_path, cv::CAP_ANY);
    if (!capture.isOpened()) return Status::InvalidArgument(video_path + ": cannot open as a video");
    const double estimate = capture.get(cv::CAP_PROP_FRAME_COUNT);
    const int64_t total = estimate > 0 ? static_cast<int64_t>(estimate) : -1;
    // Read until the decoder stops: the container's frame count is only an estimate.
    for (cv::Mat frame; capture.read(frame);) {
      StatusOr<Detections> found = teacher.Label(frame);
      if (!found.ok()) {
        return found.status().WithContext(video_path + " frame " + std::to_string(labels.size()));
      }
      labels.push_back(std::move(found).value());
      if (progress) progress(static_cast<int64_t>(labels.size()), total);
    }
  } catch (const cv::Exception& e) {
    return Status::DataLoss(video_path + " frame " + std::to_string(labels.size()) +
                            ": decoding failed: " + e.err);
  }
  if (labels.empty()) return Status::InvalidArgument(video_path + ": no frames could be decoded");
  return labels;
}

StatusOr<std::vector<Detections>> LabelVideoCached(const std::string& video_path, Teacher& teacher,
                                                   const std::string& cache_dir,
                                                   const LabelProgress& progress, Env* env) {
  SD_ASSIGN_OR_RETURN(const std::string key, LabelCacheKey(video_path, teacher));
  const std::string path = LabelCachePath(cache_dir, video_path, key);
  StatusOr<std::vector<Detections>> cached = LoadLabels(path, key, env);
  if (cached.ok()) {
    const auto n = static_cast<int64_t>(cached->size());
    spdlog::info("label cache hit: {} ({} frames)", path, n);
    if (progress) progress(n, n);
    return cached;
  }
  if (cached.status().code() != Status::Code::kNotFound) {
    spdlog::warn("label cache entry ignored, relabelling: {}", cached.status().ToString());
  }
  SD_ASSIGN_OR_RETURN(std::vector<Detections> labels, LabelVideo(video_path, teacher, progress));
  Status saved = env->CreateDir(cache_dir);
  if (saved.ok()) saved = SaveLabels(path, key, labels, env);
  if (!saved.ok()) spdlog::warn("label cache not written: {}", saved.ToString());
  return labels;
}

}  // namespace sd
