// configs/fleet_*.yaml -> FleetConfig, validated: the simulated cameras of
// streamdistill-fleet and the daemon configs they are derived from. Keys: docs/fleet.md.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/config/config.h"
#include "common/base/status.h"

namespace sd {

// What one simulated camera sees: a video file or a synthetic scene, through a view.
struct CameraView {
  std::string device;                   // its device id: the key under `cameras`
  std::string configured;               // that key, also for a repetition "<key>-r<k>"
  std::string uri;                      // a video file or "synthetic:key=value,..." (frame_source.h)
  FrameRange train_frames{0, 600};      // the camera loops over these
  FrameRange holdout_frames{600, 795};  // never sent: its student is scored on them
  int holdout_stride = 5;               // every k-th held-out frame is scored
  int64_t start_offset = 0;             // the camera starts this many frames into train_frames
  cv::Rect crop;                        // empty: the whole frame (videos only)
  bool mirror = false;                  // flipped left to right (videos only)
  double brightness = 0;                // added to every channel, saturating
  cv::Scalar colour_shift{0, 0, 0};     // added to B, G, R, saturating
  int detect_every = 1;                 // the student runs on every k-th frame (default: the fleet's)

  bool synthetic() const { return uri.rfind("synthetic:", 0) == 0; }
  // "<key>: <problem>" for a value out of range or settings that do not go together (the
  // reader checks `crop`'s list itself: an empty cv::Rect is "no crop").
  Status Validate() const;
  // Names every setting that changes the pixels (not the timing): equal strings, equal frames.
  std::string PixelsFingerprint() const;
};

struct FleetConfig {
  double seconds = 600;    // wall-clock length of the fleet run (and of the lone run)
  double time_scale = 1;   // video seconds per wall second: 1 is real time, 4 four times faster
  std::string server_config = "configs/server.yaml";  // base of the run's server config
  std::string edge_config = "configs/edge.yaml";      // base of every camera's edge config
  std::string label_cache_dir = "cache/fleet";        // teacher labels of videos' held-out views
  double usage_every_s = 2;  // the server's CPU and memory are sampled this often
  int detect_every = 1;      // every camera's, unless it sets its own
  int lone_camera = 0;       // the camera run alone after the fleet, by position in `cameras`
  std::vector<CameraView> cameras;
  // Shared students (server.yaml `groups`): group name -> cameras that share one student.
  std::map<std::string, std::vector<std::string>> groups;

  // "<key>: <problem>" for the fleet's own values; each camera has its Validate() (the reader
  // checks that groups name cameras).
  Status Validate() const;
};

StatusOr<FleetConfig> LoadFleetConfig(const std::string& path);
StatusOr<FleetConfig> ParseFleetConfig(const std::string& yaml_text, const std::string& name);

// `count` cameras from the configured ones, taken in turn. The k-th repetition (k >= 1) of a
// camera is device "<device>-r<k+1>" and starts k * 97 frames later in its train range, so
// repeated views do not move in lockstep.
std::vector<CameraView> ReplicateCameras(const std::vector<CameraView>& cameras, int count);

// The server's groups for `cameras` (after ReplicateCameras): each configured group with its
// cameras' repetitions too; a group left with fewer than 2 of `cameras` is dropped.
std::map<std::string, std::vector<std::string>> GroupsOf(const std::map<std::string, std::vector<std::string>>& groups,
                                                         const std::vector<CameraView>& cameras);

}  // namespace sd
