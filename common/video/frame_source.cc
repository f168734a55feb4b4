#include "common/video/frame_source.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <utility>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>
#include <spdlog/spdlog.h>

#include "common/base/clock.h"
#include "common/video/synthetic_scene.h"

namespace sd {

FrameSource::~FrameSource() = default;

namespace {

namespace fs = std::filesystem;


bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool IsUrl(const std::string& uri) {
  return StartsWith(uri, "rtsp://") || StartsWith(uri, "http://") || StartsWith(uri, "https://");
}

// "rtsp://user:secret@cam/stream" -> "rtsp://***@cam/stream": URIs end up in logs.
std::string Redact(const std::string& uri) {
  if (!IsUrl(uri)) return uri;
  const size_t authority = uri.find("://") + 3;
  const size_t at = uri.find('@', authority);
  if (at == std::string::npos || at > uri.find('/', authority)) return uri;
  return uri.substr(0, authority) + "***" + uri.substr(at);
}

std::string FormatFps(double fps) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", fps);
  return text;
}

// Backends may hand out gray or BGRA frames; everything downstream expects BGR.
void EnsureBgr(cv::Mat* image) {
  if (image->channels() == 1) cv::cvtColor(*image, *image, cv::COLOR_GRAY2BGR);
  if (image->channels() == 4) cv::cvtColor(*image, *image, cv::COLOR_BGRA2BGR);
}

// ---------------------------------------------------------------------------------------
// Readers deliver a source's frames in order; RangedSource builds range, stride, looping and
// pacing on top of them.

class Reader {
 public:
  virtual ~Reader() = default;
  // Makes the next Read return frame `pos`. Ok with a pos past the end: Read says Ok(false).
  virtual Status Seek(int64_t pos) = 0;
  // Reads the next frame and moves past it. Ok(false): no more frames. Ok(true) with an
  // empty image: the frame exists but cannot be decoded, and is passed over.
  virtual StatusOr<bool> Read(cv::Mat* bgr, Detections* ground_truth) = 0;
  // Moves past the next frame, decoding as little as the source allows.
  virtual StatusOr<bool> Skip() = 0;
  virtual bool live() const { return false; }
  virtual double fps() const = 0;  // the source's own rate, or a default where it has none
  virtual int64_t frame_count() const = 0;
  virtual std::string description() const = 0;
};

// Video files, cameras and network streams through cv::VideoCapture.
class CaptureReader : public Reader {
 public:
  enum class Kind { kFile, kCamera, kStream };

  // `target` is the file path or URL; `camera` the index for kCamera.
  static StatusOr<std::unique_ptr<Reader>> Open(Kind kind, std::string target, int camera, double timeout_s = 0) {
    std::unique_ptr<CaptureReader> reader(new CaptureReader(kind, std::move(target), camera, timeout_s));
    SD_RETURN_IF_ERROR(reader->Reopen());
    return std::unique_ptr<Reader>(std::move(reader));
  }

  Status Seek(int64_t pos) override {
    if (pos == pos_) return Status::Ok();
    if (kind_ != Kind::kFile) {
      if (pos < pos_) return Status::FailedPrecondition(name_ + ": a live source cannot go back");
      return DiscardUntil(pos);
    }
    // No further than the last frame the container admits to; reading finds the real end.
    const int64_t target = frame_count_ > 0 ? std::min(pos, frame_count_ - 1) : pos;
    if (target > 0 && SeekByPosition(target)) return DiscardUntil(pos);
    // Position 0, or seeking is unsupported or imprecise here: decode from the start.
    SD_RETURN_IF_ERROR(Reopen());
    return DiscardUntil(pos);
  }

  StatusOr<bool> Read(cv::Mat* bgr, Detections*) override {
    try {
      if (!capture_.read(*bgr) || bgr->empty()) return EndOfFrames("read");
      EnsureBgr(bgr);
    } catch (const cv::Exception& e) {
      return Status::DataLoss(name_ + ": decoding frame " + std::to_string(pos_) + ": " + e.err);
    }
    ++pos_;
    return true;
  }

  StatusOr<bool> Skip() override {
    try {
      if (!capture_.grab()) return EndOfFrames("grab");
    } catch (const cv::Exception& e) {
      return Status::DataLoss(name_ + ": decoding frame " + std::to_string(pos_) + ": " + e.err);
    }
    ++pos_;
    return true;
  }

  bool live() const override { return kind_ != Kind::kFile; }
  // A video that does not say is assumed PAL.
  double fps() const override { return native_fps_ > 0 ? native_fps_ : 25.0; }
  int64_t frame_count() const override { return frame_count_; }
  std::string description() const override {
    std::string d = (kind_ == Kind::kFile ? "video file " : kind_ == Kind::kCamera ? "camera " : "stream ") + name_;
    d += " (" + std::to_string(size_.width) + "x" + std::to_string(size_.height);
    if (frame_count_ >= 0) d += ", " + std::to_string(frame_count_) + " frames";
    if (native_fps_ > 0) d += ", " + FormatFps(native_fps_) + " fps";
    return d + ", " + backend_ + ")";
  }

 private:
  CaptureReader(Kind kind, std::string target, int camera, double timeout_s)
      : kind_(kind),
        target_(std::move(target)),
        camera_(camera),
        timeout_ms_(static_cast<int>(timeout_s * 1000)),
        name_(kind == Kind::kCamera ? "camera:" + std::to_string(camera) : Redact(target_)) {}

  Status Reopen() {
    try {
      capture_.release();
      bool opened = false;
      if (kind_ == Kind::kCamera) {
        opened = capture_.open(camera_, cv::CAP_ANY);
      } else if (kind_ == Kind::kStream && cv::videoio_registry::hasBackend(cv::CAP_FFMPEG)) {
        // FFmpeg alone: where it fails (the server is down) CAP_ANY would go on to GStreamer,
        // whose open can block for good, and a reopening edge would hang there. The timeouts:
        // without them a stalled stream blocks a read for FFmpeg's default of 30 s.
        std::vector<int> params;
        if (timeout_ms_ > 0)
          params = {cv::CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms_, cv::CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms_};
        opened = capture_.open(target_, cv::CAP_FFMPEG, params);
      } else {
        opened = capture_.open(target_, cv::CAP_ANY);
      }
      if (!opened || !capture_.isOpened()) {
        if (kind_ == Kind::kFile) {
          return Status::InvalidArgument(name_ + ": not a video that OpenCV can open");
        }
        return Status::Unavailable(name_ + ": cannot open");
      }
      pos_ = 0;
      backend_ = capture_.getBackendName();
      const double fps = capture_.get(cv::CAP_PROP_FPS);
      native_fps_ = std::isfinite(fps) && fps > 0 && fps < 1000 ? fps : 0;
      const double count = capture_.get(cv::CAP_PROP_FRAME_COUNT);
      frame_count_ = kind_ == Kind::kFile && count > 0 ? static_cast<int64_t>(count) : -1;
      size_ = cv::Size(static_cast<int>(capture_.get(cv::CAP_PROP_FRAME_WIDTH)),
                       static_cast<int>(capture_.get(cv::CAP_PROP_FRAME_HEIGHT)));
    } catch (const cv::Exception& e) {
      return Status::Unavailable(name_ + ": opening: " + e.err);
    }
    return Status::Ok();
  }

  // True when the backend reports landing exactly on `pos`; false leaves the position
  // unknown, for the caller to start over.
  bool SeekByPosition(int64_t pos) {
    try {
      if (!capture_.set(cv::CAP_PROP_POS_FRAMES, static_cast<double>(pos))) return false;
      if (capture_.get(cv::CAP_PROP_POS_FRAMES) != static_cast<double>(pos)) {
        spdlog::debug("{}: seek to frame {} imprecise, decoding from the start", name_, pos);
        return false;
      }
    } catch (const cv::Exception& e) {
      spdlog::debug("{}: seek to frame {} failed: {}", name_, pos, e.err);
      return false;
    }
    pos_ = pos;
    return true;
  }

  Status DiscardUntil(int64_t pos) {
    while (pos_ < pos) {
      SD_ASSIGN_OR_RETURN(bool more, Skip());
      if (!more) return Status::Ok();  // past the end: reads will say so
    }
    return Status::Ok();
  }

  // A file that runs out of frames has ended; a live source that does is broken.
  StatusOr<bool> EndOfFrames(const char* op) {
    if (kind_ == Kind::kFile) return false;
    return Status::Unavailable(name_ + ": " + op + " failed after " + std::to_string(pos_) +
                               " frames; the source disconnected or stalled");
  }

  const Kind kind_;
  const std::string target_;
  const int camera_;
  const int timeout_ms_;    // streams: open and read timeouts (0: the backend's own)
  const std::string name_;  // for messages: no credentials
  cv::VideoCapture capture_;
  int64_t pos_ = 0;
  double native_fps_ = 0;
  int64_t frame_count_ = -1;
  cv::Size size_;
  std::string backend_;
};

class FolderReader : public Reader {
 public:
  static StatusOr<std::unique_ptr<Reader>> Open(const std::string& folder) {
    std::vector<std::string> files;
    std::error_code error;
    for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
      if (!it->is_regular_file(error)) continue;
      std::string ext = it->path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp") {
        files.push_back(it->path().string());
      }
    }
    if (error) return Status::Unavailable(folder + ": listing the folder: " + error.message());
    if (files.empty()) return Status::NotFound(folder + ": no .jpg, .jpeg, .png or .bmp images");
    std::sort(files.begin(), files.end());  // same folder, so this sorts by file name
    return std::unique_ptr<Reader>(new FolderReader(folder, std::move(files)));
  }

  Status Seek(int64_t pos) override {
    pos_ = pos;
    return Status::Ok();
  }

  StatusOr<bool> Read(cv::Mat* bgr, Detections*) override {
    if (pos_ >= frame_count()) return false;
    const std::string& file = files_[pos_++];
    try {
      *bgr = cv::imread(file, cv::IMREAD_COLOR);
    } catch (const cv::Exception& e) {
      bgr->release();
      spdlog::warn("{}: skipping {}: {}", folder_, file, e.err);
      return true;
    }
    if (bgr->empty()) spdlog::warn("{}: skipping {}: unreadable or not an image", folder_, file);
    return true;
  }

  StatusOr<bool> Skip() override {
    if (pos_ >= frame_count()) return false;
    ++pos_;
    return true;
  }

  double fps() const override { return 10; }  // folders have no rate of their own
  int64_t frame_count() const override { return static_cast<int64_t>(files_.size()); }
  std::string description() const override {
    return "image folder " + folder_ + " (" + std::to_string(files_.size()) + " images)";
  }

 private:
  FolderReader(std::string folder, std::vector<std::string> files)
      : folder_(std::move(folder)), files_(std::move(files)) {}

  const std::string folder_;
  const std::vector<std::string> files_;
  int64_t pos_ = 0;
};

class SyntheticReader : public Reader {
 public:
  explicit SyntheticReader(SyntheticScene scene) : scene_(std::move(scene)) {}

  Status Seek(int64_t pos) override {
    pos_ = pos;
    return Status::Ok();
  }
  StatusOr<bool> Read(cv::Mat* bgr, Detections* ground_truth) override {
    if (pos_ >= frame_count()) return false;
    SyntheticFrame frame = scene_.Render(pos_++);
    *bgr = std::move(frame.bgr);
    *ground_truth = std::move(frame.ground_truth);
    return true;
  }
  StatusOr<bool> Skip() override {
    if (pos_ >= frame_count()) return false;
    ++pos_;
    return true;
  }
  double fps() const override { return scene_.options().fps; }
  int64_t frame_count() const override { return scene_.options().num_frames; }
  std::string description() const override {
    const SyntheticSceneOptions& o = scene_.options();
    std::string d = "synthetic scene (seed " + std::to_string(o.seed) + ", " +
                    std::to_string(o.width) + "x" + std::to_string(o.height) + ", " +
                    std::to_string(o.num_frames) + " frames, " + std::to_string(o.num_classes) +
                    " classes";
    if (o.drift_at_frame >= 0) d += ", drift at " + std::to_string(o.drift_at_frame);
    return d + ")";
  }

 private:
  const SyntheticScene scene_;
  int64_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------
// Parsing of "camera:N" and "synthetic:key=value,...".

template <typename T>
bool ParseInt(const std::string& s, T* out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

bool ParseDouble(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out);
}

Status ParseSyntheticSetting(const std::string& key, const std::string& value,
                             SyntheticSceneOptions* o) {
  bool ok = false;
  if (key == "seed") ok = ParseInt(value, &o->seed);
  else if (key == "frames") ok = ParseInt(value, &o->num_frames) && o->num_frames > 0;
  else if (key == "classes") ok = ParseInt(value, &o->num_classes);
  else if (key == "drift_at") ok = ParseInt(value, &o->drift_at_frame);
  else if (key == "width") ok = ParseInt(value, &o->width);
  else if (key == "height") ok = ParseInt(value, &o->height);
  else if (key == "objects") ok = ParseInt(value, &o->max_objects);
  else if (key == "fps") ok = ParseDouble(value, &o->fps);
  else if (key == "lighting") ok = ParseDouble(value, &o->lighting_drift);
  else if (key == "activity") ok = ParseDouble(value, &o->activity);
  else if (key == "occluder") {
    ok = value == "0" || value == "1";
    o->occluder = value == "1";
  }
  else return Status::InvalidArgument("unknown setting '" + key + "'");
  if (!ok) return Status::InvalidArgument("setting '" + key + "': bad value '" + value + "'");
  return Status::Ok();
}

StatusOr<SyntheticSceneOptions> ParseSyntheticUri(const std::string& uri) {
  SyntheticSceneOptions options;
  const std::string settings = uri.substr(std::string("synthetic:").size());
  size_t begin = 0;
  while (begin < settings.size()) {
    size_t end = settings.find(',', begin);
    if (end == std::string::npos) end = settings.size();
    const std::string item = settings.substr(begin, end - begin);
    begin = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument(uri + ": expected key=value, got '" + item + "'");
    }
    SD_RETURN_IF_ERROR(ParseSyntheticSetting(item.substr(0, eq), item.substr(eq + 1), &options)
                           .WithContext(uri));
  }
  return options;
}

StatusOr<std::unique_ptr<Reader>> OpenReader(const FrameSourceOptions& options) {
  const std::string& uri = options.uri;
  if (StartsWith(uri, "synthetic:")) {
    SD_ASSIGN_OR_RETURN(SyntheticSceneOptions options, ParseSyntheticUri(uri));
    StatusOr<SyntheticScene> scene = SyntheticScene::Create(options);
    if (!scene.ok()) return scene.status().WithContext(uri);
    return std::unique_ptr<Reader>(new SyntheticReader(std::move(scene).value()));
  }
  if (StartsWith(uri, "camera:")) {
    int index = -1;
    if (!ParseInt(uri.substr(7), &index) || index < 0) {
      return Status::InvalidArgument(uri + ": expected camera:N with N a device index");
    }
    return CaptureReader::Open(CaptureReader::Kind::kCamera, uri, index);
  }
  if (IsUrl(uri)) return CaptureReader::Open(CaptureReader::Kind::kStream, uri, 0, options.stream_timeout_s);
  if (uri.empty()) return Status::InvalidArgument("frame source: empty uri");

  std::error_code error;
  const fs::file_status status = fs::status(uri, error);
  if (!fs::exists(status)) return Status::NotFound(uri + ": no such file or folder");
  if (fs::is_directory(status)) return FolderReader::Open(uri);
  return CaptureReader::Open(CaptureReader::Kind::kFile, uri, 0);
}

}  // namespace

Status FrameSourceOptions::Validate() const {
  auto invalid = [](const std::string& what) { return Status::InvalidArgument(what); };
  if (stride < 1) return invalid("stride: must be >= 1, got " + std::to_string(stride));
  if (start_frame < 0) return invalid("start_frame: must be >= 0, got " + std::to_string(start_frame));
  if (end_frame < -1 || (end_frame >= 0 && end_frame <= start_frame)) {
    return invalid("end_frame: must be -1 or after start_frame " + std::to_string(start_frame) + ", got " +
                   std::to_string(end_frame));
  }
  if (!(fps_override >= 0)) return invalid("fps_override: must be >= 0");
  if (!(stream_timeout_s >= 0) || stream_timeout_s > 3600)
    return invalid("stream_timeout_s: must be between 0 (the backend's default) and 3600");
  return Status::Ok();
}

namespace {

// ---------------------------------------------------------------------------------------

class RangedSource : public FrameSource {
 public:
  RangedSource(std::unique_ptr<Reader> reader, const FrameSourceOptions& options, Clock* clock)
      : reader_(std::move(reader)), options_(options), name_(Redact(options.uri)), clock_(clock) {
    fps_ = options.fps_override > 0 ? options.fps_override : reader_->fps();
    pos_ = options.start_frame;
  }

  Status Start() { return reader_->Seek(options_.start_frame); }

  StatusOr<bool> Next(Frame* frame) override {
    for (;;) {
      SD_RETURN_IF_ERROR(SkipPending());
      if (at_end_) {
        if (!options_.loop || reader_->live()) return false;
        SD_RETURN_IF_ERROR(Rewind());
        continue;
      }
      cv::Mat bgr;
      Detections ground_truth;
      SD_ASSIGN_OR_RETURN(const bool more, reader_->Read(&bgr, &ground_truth));
      if (!more) {
        at_end_ = true;
        continue;
      }
      const int64_t pos = pos_++;
      pending_skip_ = options_.stride - 1;
      if (bgr.empty()) {
        ++skipped_;
        continue;
      }
      ++delivered_this_lap_;
      frame->bgr = std::move(bgr);
      frame->index = pos + lap_offset_;
      frame->ground_truth = std::move(ground_truth);
      Pace(frame->index);
      frame->capture_time_s = clock_->NowSeconds();
      return true;
    }
  }

  double fps() const override { return fps_; }
  int64_t frame_count() const override { return reader_->frame_count(); }
  int64_t skipped_count() const override { return skipped_; }
  std::string description() const override {
    std::string d = reader_->description();
    if (options_.start_frame > 0 || options_.end_frame >= 0) {
      d += " frames [" + std::to_string(options_.start_frame) + ", " +
           (options_.end_frame >= 0 ? std::to_string(options_.end_frame) : std::string("end")) + ")";
    }
    if (options_.stride > 1) d += " every " + std::to_string(options_.stride);
    if (options_.loop && !reader_->live()) d += ", looping";
    if (options_.realtime && !reader_->live()) d += ", paced at " + FormatFps(fps_) + " fps";
    return d;
  }

 private:
  bool RangeEnded() const { return options_.end_frame >= 0 && pos_ >= options_.end_frame; }

  // Moves past the frames the stride leaves out, stopping at the end of the range.
  Status SkipPending() {
    while (!at_end_ && pending_skip_ > 0 && !RangeEnded()) {
      SD_ASSIGN_OR_RETURN(const bool more, reader_->Skip());
      if (!more) {
        at_end_ = true;
        break;
      }
      ++pos_;
      --pending_skip_;
    }
    if (RangeEnded()) at_end_ = true;
    return Status::Ok();
  }

  Status Rewind() {
    if (delivered_this_lap_ == 0) {
      // Looping would spin forever.
      if (skipped_ > 0) return Status::DataLoss(name_ + ": no frame in the range could be decoded");
      return Status::InvalidArgument(name_ + ": no frames from start_frame " +
                                     std::to_string(options_.start_frame) + " on");
    }
    lap_offset_ += pos_ - options_.start_frame;
    pos_ = options_.start_frame;
    pending_skip_ = 0;
    delivered_this_lap_ = 0;
    at_end_ = false;
    return reader_->Seek(options_.start_frame);
  }

  // Holds frame `index` back until its time at fps_ since the first frame.
  void Pace(int64_t index) {
    if (!options_.realtime || reader_->live()) return;
    if (!pacing_started_) {
      pacing_started_ = true;
      pace_origin_s_ = clock_->NowSeconds();
      pace_origin_index_ = index;
      return;
    }
    const double due = pace_origin_s_ + static_cast<double>(index - pace_origin_index_) / fps_;
    if (clock_->NowSeconds() < due) clock_->SleepUntil(due);
  }

  std::unique_ptr<Reader> reader_;
  const FrameSourceOptions options_;
  const std::string name_;
  Clock* const clock_;
  double fps_ = 0;

  int64_t pos_ = 0;           // source position of the next frame
  int64_t pending_skip_ = 0;  // frames to pass over before the next read
  bool at_end_ = false;       // of the range or the source
  int64_t lap_offset_ = 0;    // added to positions so that indices rise across loops
  int64_t delivered_this_lap_ = 0;
  int64_t skipped_ = 0;

  bool pacing_started_ = false;
  double pace_origin_s_ = 0;
  int64_t pace_origin_index_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<FrameSource>> OpenFrameSource(const FrameSourceOptions& options,
                                                       Clock* clock) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext(Redact(options.uri)));
  SD_ASSIGN_OR_RETURN(std::unique_ptr<Reader> reader, OpenReader(options));
  auto source = std::make_unique<RangedSource>(std::move(reader), options, clock);
  SD_RETURN_IF_ERROR(source->Start());
  return std::unique_ptr<FrameSource>(std::move(source));
}

Status ForEachFrame(FrameSource& source, const std::function<Status(Frame&)>& visit) {
  Frame frame;
  while (true) {
    SD_ASSIGN_OR_RETURN(bool got, source.Next(&frame));
    if (!got) return Status::Ok();
    SD_RETURN_IF_ERROR(visit(frame));
  }
}

StatusOr<std::vector<cv::Mat>> ReadFrames(FrameSourceOptions options, int max_frames) {
  options.realtime = false;
  SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(options));
  std::vector<cv::Mat> frames;
  Frame frame;
  while (static_cast<int>(frames.size()) < max_frames) {
    SD_ASSIGN_OR_RETURN(bool got, source->Next(&frame));
    if (!got) break;
    frames.push_back(frame.bgr.clone());
  }
  if (frames.empty()) return Status::InvalidArgument(options.uri + ": no frames");
  return frames;
}

}  // namespace sd
