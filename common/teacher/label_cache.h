// Teacher labels for whole videos, cached on disk. Teachers are slow (HOG ~130 ms/frame), so
// a video is labelled once per teacher configuration and later runs read the labels back.
//
// A cache entry is keyed by the video's content hash and the teacher's Fingerprint(); an
// entry that is truncated, corrupt or carries another key is never trusted, only relabelled.
//
// Label file format (text, one record per line; version 1):
//   streamdistill-labels 1 frames=<N> key=<key, to the end of the line>
//   frame <i> <count>                      for i = 0..N-1, each followed by <count> lines:
//   <class_id> <score> <x1> <y1> <x2> <y2>  floats in shortest round-trip form
//   end <N>
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/vision/detection.h"
#include "common/base/env.h"
#include "common/base/status.h"
#include "common/teacher/teacher.h"

namespace sd {

// (frames done, frames expected); expected is the container's estimate, -1 when unknown.
using LabelProgress = std::function<void(int64_t done, int64_t total)>;

// "video=<FileContentHash> teacher=<Fingerprint>".
StatusOr<std::string> LabelCacheKey(const std::string& video_path, const Teacher& teacher);

// <cache_dir>/<video file stem>.<16 hex digits of the key's hash>.labels: one file per
// (video, teacher) pair, so switching teachers back and forth keeps both entries.
std::string LabelCachePath(const std::string& cache_dir, const std::string& video_path,
                           const std::string& key);

// Writes `labels` (frame i -> labels[i]) under `key` durably and atomically
// (WriteFileDurably), so readers never see half a file. The key must be one line.
Status SaveLabels(const std::string& path, const std::string& key,
                  const std::vector<Detections>& labels, Env* env = Env::Default());

// Reads a file written by SaveLabels. NotFound when it does not exist, FailedPrecondition
// when its version or key differs from `expected_key`, DataLoss when it is truncated or
// malformed; errors name the file.
StatusOr<std::vector<Detections>> LoadLabels(const std::string& path, const std::string& expected_key,
                                             Env* env = Env::Default());

// Labels every frame of the video (decoded with cv::VideoCapture) with `teacher`, uncached.
StatusOr<std::vector<Detections>> LabelVideo(const std::string& video_path, Teacher& teacher,
                                             const LabelProgress& progress = {});

// LabelVideo through the cache in `cache_dir` (created if missing): returns the cached labels
// when a valid entry exists, else labels the video and stores the result. A bad entry is
// logged as a warning and replaced; failing to store is logged, not returned, since the labels
// themselves are fine.
StatusOr<std::vector<Detections>> LabelVideoCached(const std::string& video_path, Teacher& teacher,
                                                   const std::string& cache_dir,
                                                   const LabelProgress& progress = {},
                                                   Env* env = Env::Default());

}  // namespace sd
