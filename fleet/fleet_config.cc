#include "fleet/fleet_config.h"

#include <algorithm>

#include <cstdio>

#include "common/config/yaml_reader.h"

namespace sd {
namespace {

bool Overlap(const FrameRange& a, const FrameRange& b) { return a.begin < b.end && b.begin < a.end; }

// A Validate() message: the field first, named as its YAML key, for YamlReader::Check.
Status Invalid(const std::string& key, const std::string& problem) {
  return Status::InvalidArgument(key + ": " + problem);
}

Status ReadCamera(const YamlReader& cameras, const std::string& device, int detect_every, CameraView* view) {
  SD_ASSIGN_OR_RETURN(YamlReader c, cameras.Child(device));
  view->device = device;
  view->configured = device;
  view->detect_every = detect_every;
  SD_RETURN_IF_ERROR(c.Require("uri", &view->uri));
  SD_RETURN_IF_ERROR(ReadFrameRange(c, "train_frames", &view->train_frames));
  SD_RETURN_IF_ERROR(ReadFrameRange(c, "holdout_frames", &view->holdout_frames));
  SD_RETURN_IF_ERROR(c.Get("holdout_stride", &view->holdout_stride));
  SD_RETURN_IF_ERROR(c.Get("start_offset", &view->start_offset));
  std::vector<int> crop;
  SD_RETURN_IF_ERROR(c.Get("crop", &crop));
  if (!crop.empty()) {
    if (crop.size() != 4 || crop[0] < 0 || crop[1] < 0 || crop[2] < 1 || crop[3] < 1)
      return c.Error("crop", "expected [x, y, width, height] with x, y >= 0 and a positive size");
    view->crop = cv::Rect(crop[0], crop[1], crop[2], crop[3]);
  }
  SD_RETURN_IF_ERROR(c.Get("mirror", &view->mirror));
  SD_RETURN_IF_ERROR(c.Get("brightness", &view->brightness));
  std::vector<double> shift{0, 0, 0};
  SD_RETURN_IF_ERROR(c.Get("colour_shift", &shift));
  if (shift.size() != 3) return c.Error("colour_shift", "expected [blue, green, red]");
  view->colour_shift = cv::Scalar(shift[0], shift[1], shift[2]);
  SD_RETURN_IF_ERROR(c.Get("detect_every", &view->detect_every));
  return c.Check(view->Validate());
}

Status Parse(const YamlReader& root, FleetConfig* c) {
  SD_RETURN_IF_ERROR(root.Get("seconds", &c->seconds));
  SD_RETURN_IF_ERROR(root.Get("time_scale", &c->time_scale));
  SD_RETURN_IF_ERROR(root.Get("server_config", &c->server_config));
  SD_RETURN_IF_ERROR(root.Get("edge_config", &c->edge_config));
  SD_RETURN_IF_ERROR(root.Get("label_cache_dir", &c->label_cache_dir));
  SD_RETURN_IF_ERROR(root.Get("usage_every_s", &c->usage_every_s));
  SD_RETURN_IF_ERROR(root.Get("lone_camera", &c->lone_camera));
  SD_RETURN_IF_ERROR(root.Get("detect_every", &c->detect_every));
  if (!root.Has("cameras")) return root.Error("cameras", "missing required key");
  SD_ASSIGN_OR_RETURN(YamlReader cameras, root.Child("cameras"));
  for (const std::string& device : cameras.Keys()) {
    CameraView view;
    SD_RETURN_IF_ERROR(ReadCamera(cameras, device, c->detect_every, &view));
    c->cameras.push_back(std::move(view));
  }
  SD_RETURN_IF_ERROR(root.Check(c->Validate()));
  SD_ASSIGN_OR_RETURN(YamlReader groups, root.Child("groups"));
  for (const std::string& name : groups.Keys()) {
    std::vector<std::string> members;
    SD_RETURN_IF_ERROR(groups.Require(name, &members));
    for (const std::string& member : members)
      if (std::none_of(c->cameras.begin(), c->cameras.end(), [&](const CameraView& v) { return v.device == member; }))
        return groups.Error(name, "'" + member + "' is not a camera under `cameras`");
    c->groups[name] = members;  // the server checks the rest (sizes, a camera in two groups)
  }
  return root.CheckAllKeysUsed();
}

}  // namespace

Status CameraView::Validate() const {
  if (Overlap(train_frames, holdout_frames))
    return Invalid("holdout_frames", "must not overlap train_frames: held-out frames are never sent");
  if (holdout_stride < 1) return Invalid("holdout_stride", "must be >= 1");
  if (start_offset < 0) return Invalid("start_offset", "must be >= 0");
  if (synthetic() && (!crop.empty() || mirror))
    return Invalid("crop", "crop and mirror are for videos: a synthetic scene's ground truth would not follow them");
  if (detect_every < 1) return Invalid("detect_every", "must be >= 1");
  return Status::Ok();
}

Status FleetConfig::Validate() const {
  if (!(seconds > 0)) return Invalid("seconds", "must be > 0");
  if (!(time_scale > 0)) return Invalid("time_scale", "must be > 0");
  if (!(usage_every_s > 0)) return Invalid("usage_every_s", "must be > 0");
  if (detect_every < 1) return Invalid("detect_every", "must be >= 1");
  if (cameras.empty()) return Invalid("cameras", "needs at least one camera");
  if (lone_camera < 0 || lone_camera >= static_cast<int>(cameras.size()))
    return Invalid("lone_camera", "must be the position of a camera under `cameras`");
  return Status::Ok();
}

std::string CameraView::PixelsFingerprint() const {
  char text[160];
  std::snprintf(text, sizeof(text), "crop=%d,%d,%d,%d mirror=%d brightness=%g shift=%g,%g,%g", crop.x, crop.y,
                crop.width, crop.height, mirror ? 1 : 0, brightness, colour_shift[0], colour_shift[1],
                colour_shift[2]);
  return text;
}

StatusOr<FleetConfig> ParseFleetConfig(const std::string& yaml_text, const std::string& name) {
  return LoadYamlConfig<FleetConfig>(YamlReader::FromString(yaml_text, name), &Parse);
}

StatusOr<FleetConfig> LoadFleetConfig(const std::string& path) {
  return LoadYamlConfig<FleetConfig>(YamlReader::FromFile(path), &Parse);
}

std::vector<CameraView> ReplicateCameras(const std::vector<CameraView>& cameras, int count) {
  std::vector<CameraView> out;
  for (int i = 0; i < count; ++i) {
    CameraView view = cameras[i % cameras.size()];
    const int repetition = i / static_cast<int>(cameras.size());
    if (repetition > 0) {
      view.device += "-r" + std::to_string(repetition + 1);
      view.start_offset = (view.start_offset + 97 * repetition) % view.train_frames.size();
    }
    out.push_back(std::move(view));
  }
  return out;
}

std::map<std::string, std::vector<std::string>> GroupsOf(const std::map<std::string, std::vector<std::string>>& groups,
                                                         const std::vector<CameraView>& cameras) {
  std::map<std::string, std::vector<std::string>> present;
  for (const auto& [name, members] : groups) {
    std::vector<std::string> devices;
    for (const CameraView& view : cameras)
      for (const std::string& member : members)
        if (view.configured == member) devices.push_back(view.device);  // repetitions too
    if (devices.size() >= 2) present[name] = devices;
  }
  return present;
}

}  // namespace sd
