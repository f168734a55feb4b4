// Streams with changes of condition made from one real video (issue 13): the bench's `stream`
// section names conditions (dusk, a moved camera, rain, ...) as transforms of the source frames
// and lays out, in order, the segments the edge sees, the held-out blocks each scored
// condition is evaluated on, and the block the start student learns from. The bench writes
// that layout once into a lossless video (FFV1) under the cache directory, named by a hash of
// the spec, and then runs on it as on any video: the teacher labels the transformed frames
// (the papers' protocol: teacher labels, also for the held-out frames).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/config/config.h"
#include "common/base/status.h"
#include "common/config/yaml_reader.h"

namespace sd {

// One condition: geometry first (mirror, then zoom about the centre and shift, edges
// reflected as a moved camera would see more of the scene), then blur, then light (gamma, gain,
// haze), then weather (streaks) and sensor noise. Each key's default leaves the frame as it is.
struct Condition {
  std::string name;
  bool mirror = false;    // left-right flip
  double zoom = 1;        // > 1 enlarges about the centre (a longer focal length)
  int shift_x = 0, shift_y = 0;  // pixels the content moves right and down (a camera that was knocked)
  double blur = 0;        // Gaussian sigma in pixels (defocus, a wet lens)
  double gamma = 1;       // out = 255 (in / 255)^gamma: > 1 darkens the mid-tones (dusk, night)
  double gain = 1;        // then multiplied (exposure)
  double haze = 0;        // in [0, 1]: blend towards light grey (fog, a wet window)
  double streaks = 0;     // in [0, 1]: density of bright slanted rain streaks, new each frame
  double noise = 0;       // standard deviation of Gaussian sensor noise, grey levels, new each frame
  // A quiet camera: in each `empty_period` frames of the made file, a share `empty_share` shows
  // the scene with nobody in it (the source's background, under the same transforms) and one
  // stretch the source's frames. Where the stretch lies in each period is drawn from the spec's
  // seed, so that seeds give different streams. 0: every frame is the source's.
  double empty_share = 0;  // in [0, 1)
  int empty_period = 50;   // frames, >= 2

  std::string Describe() const;  // every key with its value, for the stream's hash
  // "<key>: <problem>" for a value out of range (shift_x and shift_y are the key `shift`).
  Status Validate() const;
};

struct ConditionBlock {
  FrameRange frames;  // of the source
  std::string condition;
};

struct ConditionStreamSpec {
  std::string source;                  // a video file
  uint64_t seed = 1;                   // noise and streaks
  std::vector<Condition> conditions;
  std::vector<ConditionBlock> segments;        // the stream the edge sees, in order
  FrameRange eval_frames;                      // of the source, under each of eval_conditions
  std::vector<std::string> eval_conditions;
  ConditionBlock pretrain;                     // the start student's frames; empty frames: none

  const Condition* Find(const std::string& name) const;
  // Every setting that changes the file's frames, one line (source by path and size).
  std::string Key() const;
};

// Where each part lies in the made video.
struct ConditionStreamLayout {
  std::string video;                   // the made file
  FrameRange train_frames;             // the segments
  struct EvalSet {
    std::string name;                  // the condition's
    FrameRange frames;
  };
  std::vector<EvalSet> eval_sets;
  FrameRange pretrain_frames;          // empty when the spec has no pretrain block
  int64_t frames = 0;
};

// The `stream` section of a bench config. Errors name the key (unknown condition, empty or
// out-of-order ranges, values out of range).
Status ReadConditionStreamSpec(const YamlReader& section, ConditionStreamSpec* spec);

// `bgr` under `condition`; `noise_seed` draws this frame's noise and streaks.
cv::Mat ApplyCondition(const cv::Mat& bgr, const Condition& condition, uint64_t noise_seed);

// Whether the frame at `position` of the made file shows the empty scene under `condition`
// (its empty_share), for the spec's `seed`.
bool ShowsEmptyScene(const Condition& condition, uint64_t seed, int64_t position);

// The scene with nobody in it: the per-pixel median of every `step`-th frame of `source`
// (people who pass are in few of them).
StatusOr<cv::Mat> SceneBackground(const std::string& source, int step = 8);

// Where `spec`'s parts lie in its video, <cache_dir>/conditions.<16 hex digits of Key()'s
// hash>.avi (a changed spec gives a new file, an unchanged one reuses it). Writes nothing.
ConditionStreamLayout LayOutConditionStream(const ConditionStreamSpec& spec, const std::string& cache_dir);

// Writes the layout's video unless it is already there (to a temporary name, then renamed, so a
// file under the final name is complete). The same spec gives the same frames: noise is drawn
// from the spec's seed and the frame's place.
Status WriteConditionStream(const ConditionStreamSpec& spec, const ConditionStreamLayout& layout);

// <dir>/<condition>.png for every condition: the same source frame (the first held-out one)
// under each, for a look at what the names stand for.
Status WriteConditionPreviews(const ConditionStreamSpec& spec, const std::string& dir);

}  // namespace sd
