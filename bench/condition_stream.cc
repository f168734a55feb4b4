#include "bench/condition_stream.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "common/base/checksum.h"
#include "common/video/frame_source.h"

namespace sd {
namespace {

// Part of the file's name: raise it when a transform changes, so old files are not reused.
constexpr int kTransformVersion = 1;

// The grey that haze blends towards: fog and a wet window brighten and flatten the scene.
constexpr double kHazeGrey = 200;

Status ReadCondition(const YamlReader& c, const std::string& name, Condition* out) {
  out->name = name;
  SD_RETURN_IF_ERROR(c.Get("mirror", &out->mirror));
  SD_RETURN_IF_ERROR(c.Get("zoom", &out->zoom));
  std::vector<int> shift{out->shift_x, out->shift_y};
  SD_RETURN_IF_ERROR(c.Get("shift", &shift));
  if (shift.size() != 2) return c.Error("shift", "expected [right, down] in pixels");
  out->shift_x = shift[0];
  out->shift_y = shift[1];
  SD_RETURN_IF_ERROR(c.Get("blur", &out->blur));
  SD_RETURN_IF_ERROR(c.Get("gamma", &out->gamma));
  SD_RETURN_IF_ERROR(c.Get("gain", &out->gain));
  SD_RETURN_IF_ERROR(c.Get("haze", &out->haze));
  SD_RETURN_IF_ERROR(c.Get("streaks", &out->streaks));
  SD_RETURN_IF_ERROR(c.Get("noise", &out->noise));
  SD_RETURN_IF_ERROR(c.Get("empty_share", &out->empty_share));
  SD_RETURN_IF_ERROR(c.Get("empty_period", &out->empty_period));
  return c.Check(out->Validate());
}

Status ReadBlock(const YamlReader& b, const ConditionStreamSpec& spec, ConditionBlock* out) {
  if (!b.Has("frames")) return b.Error("frames", "missing required key");
  SD_RETURN_IF_ERROR(ReadFrameRange(b, "frames", &out->frames));
  SD_RETURN_IF_ERROR(b.Require("condition", &out->condition));
  if (!spec.Find(out->condition)) return b.Error("condition", "unknown condition '" + out->condition + "'");
  return Status::Ok();
}

std::string RangeText(const FrameRange& r) { return std::to_string(r.begin) + "-" + std::to_string(r.end); }

// 64 bits from the spec's seed and a frame's place in the made file: each frame its own noise.
uint64_t FrameSeed(uint64_t seed, int64_t position) {
  return Fnv1a64(std::to_string(position), Fnv1a64(std::to_string(seed)));
}

// The file's blocks in order: the segments, one eval block per eval condition, the pretrain block.
std::vector<ConditionBlock> Blocks(const ConditionStreamSpec& spec) {
  std::vector<ConditionBlock> blocks = spec.segments;
  for (const std::string& name : spec.eval_conditions) blocks.push_back({spec.eval_frames, name});
  if (spec.pretrain.frames.size() > 0) blocks.push_back(spec.pretrain);
  return blocks;
}

}  // namespace

std::string Condition::Describe() const {
  char text[256];
  std::snprintf(text, sizeof(text), "mirror=%d zoom=%.6g shift=%d,%d blur=%.6g gamma=%.6g gain=%.6g haze=%.6g "
                "streaks=%.6g noise=%.6g", mirror ? 1 : 0, zoom, shift_x, shift_y, blur, gamma, gain, haze, streaks,
                noise);
  std::string described = text;
  // Only where set, so that the streams made before these keys keep their files and labels.
  if (empty_share > 0) {
    std::snprintf(text, sizeof(text), " empty_share=%.6g empty_period=%d", empty_share, empty_period);
    described += text;
  }
  return described;
}

Status Condition::Validate() const {
  auto invalid = [](const std::string& key, const std::string& problem) {
    return Status::InvalidArgument(key + ": " + problem);
  };
  if (!(zoom >= 0.5 && zoom <= 4)) return invalid("zoom", "must be in [0.5, 4]");
  if (std::abs(shift_x) > 1000 || std::abs(shift_y) > 1000) return invalid("shift", "must be within 1000 pixels");
  if (!(blur >= 0 && blur <= 50)) return invalid("blur", "must be in [0, 50] pixels");
  if (!(gamma > 0 && gamma <= 10)) return invalid("gamma", "must be in (0, 10]");
  if (!(gain > 0 && gain <= 10)) return invalid("gain", "must be in (0, 10]");
  if (!(haze >= 0 && haze <= 1)) return invalid("haze", "must be in [0, 1]");
  if (!(streaks >= 0 && streaks <= 1)) return invalid("streaks", "must be in [0, 1]");
  if (!(noise >= 0 && noise <= 100)) return invalid("noise", "must be in [0, 100] grey levels");
  if (!(empty_share >= 0 && empty_share < 1)) return invalid("empty_share", "must be in [0, 1)");
  if (empty_period < 2 || empty_period > 100000) return invalid("empty_period", "must be in [2, 100000] frames");
  return Status::Ok();
}

const Condition* ConditionStreamSpec::Find(const std::string& name) const {
  for (const Condition& c : conditions)
    if (c.name == name) return &c;
  return nullptr;
}

std::string ConditionStreamSpec::Key() const {
  std::ostringstream key;
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(source, ec);
  key << "v" << kTransformVersion << " source=" << source << " bytes=" << (ec ? 0 : bytes) << " seed=" << seed;
  auto block = [&](const ConditionBlock& b) {
    key << " " << RangeText(b.frames) << ":" << b.condition << "{" << Find(b.condition)->Describe() << "}";
  };
  key << " segments";
  for (const ConditionBlock& b : segments) block(b);
  key << " eval";
  for (const std::string& c : eval_conditions) block({eval_frames, c});
  if (pretrain.frames.size() > 0) {
    key << " pretrain";
    block(pretrain);
  }
  return key.str();
}

Status ReadConditionStreamSpec(const YamlReader& s, ConditionStreamSpec* spec) {
  SD_RETURN_IF_ERROR(s.Require("source", &spec->source));
  SD_RETURN_IF_ERROR(s.Get("seed", &spec->seed));
  if (!s.Has("conditions")) return s.Error("conditions", "missing required key");
  SD_ASSIGN_OR_RETURN(YamlReader conditions, s.Child("conditions"));
  for (const std::string& name : conditions.Keys()) {
    SD_ASSIGN_OR_RETURN(YamlReader c, conditions.Child(name));
    Condition condition;
    SD_RETURN_IF_ERROR(ReadCondition(c, name, &condition));
    spec->conditions.push_back(condition);
  }
  if (spec->conditions.empty()) return s.Error("conditions", "name at least one condition");

  SD_ASSIGN_OR_RETURN(std::vector<YamlReader> segments, s.Items("segments"));
  if (segments.empty()) return s.Error("segments", "list at least one {frames: [first, end], condition: name}");
  for (const YamlReader& item : segments) {
    ConditionBlock block;
    SD_RETURN_IF_ERROR(ReadBlock(item, *spec, &block));
    spec->segments.push_back(block);
  }

  SD_ASSIGN_OR_RETURN(YamlReader eval, s.Child("eval"));
  if (!eval.Has("frames")) return eval.Error("frames", "missing required key");
  SD_RETURN_IF_ERROR(ReadFrameRange(eval, "frames", &spec->eval_frames));
  SD_RETURN_IF_ERROR(eval.Require("conditions", &spec->eval_conditions));
  if (spec->eval_conditions.empty()) return eval.Error("conditions", "name at least one condition");
  std::set<std::string> seen;
  for (const std::string& name : spec->eval_conditions) {
    if (!spec->Find(name)) return eval.Error("conditions", "unknown condition '" + name + "'");
    if (!seen.insert(name).second) return eval.Error("conditions", "'" + name + "' is listed twice");
  }
  // The held-out frames must be frames the stream never shows, under any condition.
  for (const ConditionBlock& b : spec->segments)
    if (b.frames.end > spec->eval_frames.begin && spec->eval_frames.end > b.frames.begin)
      return eval.Error("frames", "source frames " + RangeText(spec->eval_frames) + " overlap the segment of " +
                                      RangeText(b.frames) + " (held-out evaluation)");

  if (s.Has("pretrain")) {
    SD_ASSIGN_OR_RETURN(YamlReader pretrain, s.Child("pretrain"));
    SD_RETURN_IF_ERROR(ReadBlock(pretrain, *spec, &spec->pretrain));
    const FrameRange& p = spec->pretrain.frames;
    if (p.end > spec->eval_frames.begin && spec->eval_frames.end > p.begin)
      return pretrain.Error("frames", "must not overlap eval.frames (held-out evaluation)");
  }
  return Status::Ok();
}

cv::Mat ApplyCondition(const cv::Mat& bgr, const Condition& c, uint64_t noise_seed) {
  cv::Mat out = bgr.clone();
  if (c.mirror) cv::flip(out, out, 1);
  if (c.zoom != 1 || c.shift_x != 0 || c.shift_y != 0) {
    const double cx = out.cols / 2.0, cy = out.rows / 2.0;
    const cv::Mat m = (cv::Mat_<double>(2, 3) << c.zoom, 0, (1 - c.zoom) * cx + c.shift_x,  //
                       0, c.zoom, (1 - c.zoom) * cy + c.shift_y);
    cv::Mat moved;
    cv::warpAffine(out, moved, m, out.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT_101);
    out = moved;
  }
  if (c.blur > 0) cv::GaussianBlur(out, out, cv::Size(), c.blur);
  if (c.gamma != 1 || c.gain != 1 || c.haze > 0) {
    cv::Mat lut(1, 256, CV_8U);
    for (int i = 0; i < 256; ++i) {
      const double lit = 255 * std::pow(i / 255.0, c.gamma) * c.gain;
      lut.at<uint8_t>(i) = cv::saturate_cast<uint8_t>(lit * (1 - c.haze) + kHazeGrey * c.haze);
    }
    cv::LUT(out, lut, out);
  }
  cv::RNG rng(noise_seed);
  if (c.streaks > 0) {
    // Thin bright strokes, slanted like wind-driven rain, faint where they cross the scene.
    cv::Mat overlay = cv::Mat::zeros(out.size(), out.type());
    const int count = static_cast<int>(c.streaks * out.total() / 1500.0);
    for (int i = 0; i < count; ++i) {
      const cv::Point from(rng.uniform(0, out.cols), rng.uniform(0, out.rows));
      const int length = rng.uniform(12, 36);
      const cv::Point to(from.x + length / 4, from.y + length);
      cv::line(overlay, from, to, cv::Scalar::all(rng.uniform(120, 220)), 1, cv::LINE_AA);
    }
    cv::addWeighted(out, 1.0, overlay, 0.6, 0, out);
  }
  if (c.noise > 0) {
    cv::Mat noise(out.size(), CV_16SC3);
    rng.fill(noise, cv::RNG::NORMAL, 0, c.noise);
    cv::Mat wide;
    out.convertTo(wide, CV_16SC3);
    wide += noise;
    wide.convertTo(out, CV_8UC3);  // saturates at 0 and 255
  }
  return out;
}

bool ShowsEmptyScene(const Condition& c, uint64_t seed, int64_t position) {
  if (c.empty_share <= 0 || position < 0) return false;
  const int64_t period = c.empty_period;
  const int64_t busy = std::max<int64_t>(1, std::llround(period * (1 - c.empty_share)));
  const int64_t cycle = position / period;
  const int64_t start = static_cast<int64_t>(Fnv1a64("busy " + std::to_string(cycle), Fnv1a64(std::to_string(seed))) %
                                             static_cast<uint64_t>(period - busy + 1));
  const int64_t offset = position % period;
  return offset < start || offset >= start + busy;
}

StatusOr<cv::Mat> SceneBackground(const std::string& source, int step) {
  FrameSourceOptions options;
  options.uri = source;
  options.stride = std::max(1, step);  // the frames between are skipped, not decoded
  SD_ASSIGN_OR_RETURN(std::vector<cv::Mat> sampled, ReadFrames(options, std::numeric_limits<int>::max()));
  const cv::Mat& first = sampled.front();
  for (const cv::Mat& m : sampled)
    if (m.size() != first.size() || m.type() != CV_8UC3)
      return Status::InvalidArgument(source + ": frames change size; no background for the empty scene");
  cv::Mat median(first.size(), CV_8UC3);
  std::vector<uint8_t> values(sampled.size());
  const size_t mid = values.size() / 2;
  for (int y = 0; y < first.rows; ++y)
    for (int x = 0; x < first.cols * 3; ++x) {
      for (size_t i = 0; i < sampled.size(); ++i) values[i] = sampled[i].ptr<uint8_t>(y)[x];
      std::nth_element(values.begin(), values.begin() + mid, values.end());
      median.ptr<uint8_t>(y)[x] = values[mid];
    }
  return median;
}

ConditionStreamLayout LayOutConditionStream(const ConditionStreamSpec& spec, const std::string& cache_dir) {
  ConditionStreamLayout layout;
  layout.video = (std::filesystem::path(cache_dir) / ("conditions." + Hex64(Fnv1a64(spec.Key())) + ".avi")).string();
  int64_t at = 0;
  for (const ConditionBlock& b : spec.segments) at += b.frames.size();
  layout.train_frames = {0, at};
  for (const std::string& name : spec.eval_conditions) {
    layout.eval_sets.push_back({name, {at, at + spec.eval_frames.size()}});
    at += spec.eval_frames.size();
  }
  if (spec.pretrain.frames.size() > 0) {
    layout.pretrain_frames = {at, at + spec.pretrain.frames.size()};
    at += spec.pretrain.frames.size();
  }
  layout.frames = at;
  return layout;
}

Status WriteConditionStream(const ConditionStreamSpec& spec, const ConditionStreamLayout& layout) {
  std::error_code ec;
  if (std::filesystem::exists(layout.video, ec)) return Status::Ok();
  const std::string cache_dir = std::filesystem::path(layout.video).parent_path().string();
  if (!std::filesystem::is_regular_file(spec.source, ec))
    return Status::NotFound("stream.source: " + spec.source + ": video not found");
  std::filesystem::create_directories(cache_dir, ec);
  if (ec) return Status::IOError(cache_dir + ": cannot create: " + ec.message());

  // Written under a temporary name (FFmpeg picks the container by the extension) and renamed
  // when complete, so an interrupted run never leaves a short file that a later run would trust.
  const std::string partial = layout.video.substr(0, layout.video.size() - 4) + ".partial.avi";
  cv::Mat background;
  for (const ConditionBlock& block : Blocks(spec))
    if (spec.Find(block.condition)->empty_share > 0 && background.empty()) {
      SD_ASSIGN_OR_RETURN(background, SceneBackground(spec.source));
    }
  cv::VideoWriter writer;
  double fps = 10;
  int64_t position = 0;
  for (const ConditionBlock& block : Blocks(spec)) {
    FrameSourceOptions options;
    options.uri = spec.source;
    options.start_frame = block.frames.begin;
    options.end_frame = block.frames.end;
    SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(options));
    const Condition& condition = *spec.Find(block.condition);
    int64_t read = 0;
    Frame frame;
    while (true) {
      SD_ASSIGN_OR_RETURN(bool got, source->Next(&frame));
      if (!got) break;
      if (!writer.isOpened()) {
        if (source->fps() > 0) fps = source->fps();
        // FFV1 is lossless: the frames read back are the frames made, so the teacher labels and
        // the students see exactly the transform.
        if (!writer.open(partial, cv::CAP_FFMPEG, cv::VideoWriter::fourcc('F', 'F', 'V', '1'), fps, frame.bgr.size()))
          return Status::Unavailable(partial + ": OpenCV cannot write FFV1 video (its FFmpeg backend is needed)");
      }
      const bool empty = ShowsEmptyScene(condition, spec.seed, position);
      if (empty && background.size() != frame.bgr.size()) {
        writer.release();
        std::filesystem::remove(partial, ec);
        return Status::InvalidArgument("stream.source: " + spec.source + ": frame " + std::to_string(read) + " of " +
                                       RangeText(block.frames) + " differs in size from the scene's background");
      }
      writer.write(ApplyCondition(empty ? background : frame.bgr, condition, FrameSeed(spec.seed, position)));
      ++position;
      ++read;
    }
    if (read != block.frames.size()) {
      writer.release();
      std::filesystem::remove(partial, ec);
      return Status::InvalidArgument("stream.source: " + spec.source + " has no frames " + RangeText(block.frames) +
                                     " (read " + std::to_string(read) + " of them)");
    }
  }
  writer.release();
  std::filesystem::rename(partial, layout.video, ec);
  if (ec) return Status::IOError(layout.video + ": cannot rename from " + partial + ": " + ec.message());
  return Status::Ok();
}

Status WriteConditionPreviews(const ConditionStreamSpec& spec, const std::string& dir) {
  FrameSourceOptions options;
  options.uri = spec.source;
  options.start_frame = spec.eval_frames.begin;
  SD_ASSIGN_OR_RETURN(std::vector<cv::Mat> frames, ReadFrames(options, 1));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(dir + ": cannot create: " + ec.message());
  for (const Condition& c : spec.conditions) {
    const std::string path = dir + "/" + c.name + ".png";
    try {
      if (!cv::imwrite(path, ApplyCondition(frames[0], c, FrameSeed(spec.seed, 0))))
        return Status::IOError(path + ": cannot write");
    } catch (const cv::Exception& e) {
      return Status::IOError(path + ": cannot write: " + e.what());
    }
  }
  return Status::Ok();
}

}  // namespace sd
