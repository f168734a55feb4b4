// The values the frame store keeps and returns, apart from any storage engine: a frame, a
// model version, retention bounds and what pruning reports. Every FrameStore implementation
// (server/frame_store.h) stores and returns these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/vision/detection.h"

namespace sd {

struct FrameRecord {  // what the server stores per received frame
  std::string device_id;
  uint64_t sequence = 0;  // per device, assigned by the edge, starting at 1; (device_id, sequence) is unique
  int64_t frame_index = 0;
  double capture_time_s = 0;
  int source_width = 0, source_height = 0;
  float image_score = 0;
  bool validation = false;  // held-out validation frame (every k-th) vs training frame
  Detections labels;        // teacher labels in the stored image's pixel coordinates
  std::vector<float> embedding;  // AppearanceEmbedding of the stored image; empty if stored before it existed
  // The masks the edge declared it applied before encoding (server/edge_session.cc):
  // "masks=window,tv;faces=2"; empty: the frame came without a declaration.
  std::string privacy;
  std::string jpeg;         // on Put: the bytes to store; on reads: filled only by LoadImage
  std::string image_path;   // filled on reads
};

struct VersionRecord {
  std::string device_id;
  uint64_t version = 0;  // starts at 1
  uint64_t base_version = 0;
  std::string encoding;
  std::string weights_checksum;
  double val_map50 = -1;
  int64_t created_ms = 0;
  std::string checkpoint_path;  // filled on reads
};

// Per-device bounds on stored frames (`retention:` in server.yaml); 0 means no bound.
struct RetentionBounds {
  int64_t max_frames = 0;
  int64_t max_bytes = 0;  // of stored images
  double max_age_s = 0;   // capture time before the device's newest frame
  bool any() const { return max_frames > 0 || max_bytes > 0 || max_age_s > 0; }
  // Each bound >= 0; the message starts with the field's name (YamlReader::Check).
  Status Validate() const;
};

// The frames training reads, which pruning deletes only when the bounds cannot hold without.
struct PruneKeep {
  int replay_frames = 0;      // the newest training frames (a round's replay window)
  int validation_frames = 0;  // the newest validation frames (the gate's held-out set)
};

struct PruneResult {
  int64_t deleted = 0, deleted_bytes = 0;
  int64_t replay_deleted = 0, validation_deleted = 0;  // of the kept windows: the bounds were too tight
  int64_t frames_left = 0, bytes_left = 0;
};

// What a device's stored frames take: both kinds, their image files' bytes.
struct StoredUsage {
  int64_t frames = 0, bytes = 0;
};

// Device ids become directory names, so every store call that takes one checks it against
// [A-Za-z0-9_.-]{1,64} (and rejects "." and "..").
// True when `id` is usable as a device id (and hence as a directory name).
bool IsValidDeviceId(const std::string& id);
// InvalidArgument naming the id when IsValidDeviceId is false.
Status CheckDeviceId(const std::string& id);

}  // namespace sd
