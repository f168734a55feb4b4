// Objects over time from per-frame detections (issue 27, item 4): a track is one object seen on
// consecutive detected frames, and it makes events as Frigate's users know them: `new` when it
// first appears, `update` when its box, score or zones change enough, `end` when it has been
// unseen for a while. The edge records the events in its detections file and publishes them
// over MQTT (edge/mqtt_publisher.h).
//
// Deliberately simple and deterministic (tests and consumers can predict it): per class, greedy
// IoU matching between the open tracks and the frame's detections, best pair first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/vision/detection.h"

namespace sd {

struct TrackerOptions {
  float match_iou = 0.3f;        // a detection continues a track of its class at this IoU or more
  int end_after_frames = 5;      // unseen on this many detected frames in a row: ended (0: not by frames)
  double end_after_s = 2.0;      // unseen this many seconds: ended (0: not by time)
  double update_interval_s = 1;  // at most one `update` a track in this time (a zone change excepted)
  float update_box_iou = 0.8f;   // an `update` when the box's IoU with the last one sent falls below this
  float update_score_change = 0.1f;  // ... or the score moved this much from the last one sent
  // Each message starts with the field's name (YamlReader::Check maps it to the key).
  Status Validate() const;
};

enum class ObjectEventKind { kNew, kUpdate, kEnd };
const char* ObjectEventKindName(ObjectEventKind kind);  // new, update, end

struct ObjectEvent {
  ObjectEventKind kind = ObjectEventKind::kNew;
  uint64_t track_id = 0;  // from 1, per tracker (per run of the edge)
  int class_id = 0;
  Box box;                 // the box last seen (for `end`: where it was last)
  float score = 0;         // the score last seen
  float top_score = 0;     // the highest score of the track so far
  std::vector<std::string> zones;  // the zones its box's bottom centre lies in (edge.yaml `zones:`)
  uint64_t model_version = 0;      // the student version that saw it last
  int64_t frame = 0;        // the frame the event was made on
  double time_s = 0;        // that frame's time (as in the detections file)
  double start_time_s = 0;  // when the track began
};

class ObjectTracker {
 public:
  explicit ObjectTracker(TrackerOptions options) : options_(options) {}

  // One detected frame; appends its events to `events`: the tracks that end first (by id), then
  // for each detection in order its track's `update` (when due) or a `new` track. `zones` is
  // null or parallel to `detections` (ApplyZones). Frame times must not go back.
  void Observe(int64_t frame, double time_s, uint64_t model_version, const Detections& detections,
               const std::vector<std::vector<std::string>>* zones, std::vector<ObjectEvent>* events);
  // Ends every open track (the edge stops), appending their `end` events.
  void EndAll(int64_t frame, double time_s, std::vector<ObjectEvent>* events);

  size_t open_tracks() const { return tracks_.size(); }

 private:
  struct Track {
    ObjectEvent last;  // what was last seen, as an event
    int missed = 0;    // detected frames in a row without it
    double last_seen_s = 0;
    Box sent_box;  // as last published
    float sent_score = 0;
    double sent_time_s = 0;
  };
  ObjectEvent EventOf(const Track& track, ObjectEventKind kind, int64_t frame, double time_s) const;

  const TrackerOptions options_;
  std::vector<Track> tracks_;  // open tracks, by id
  uint64_t next_id_ = 1;
};

}  // namespace sd
