// Where the edge's per-frame detections go: JSON lines on stdout or appended to a file, and
// optionally the frames with their boxes drawn, as JPEGs, for a human to look at.
//
// One line per frame (scores rounded to 3 decimals, boxes and time to 2 / 3):
//   {"frame":12,"time":0.4,"model_version":3,"detections":[{"class":0,"score":0.91,"box":[x1,y1,x2,y2]}]}
// A detection in zones (edge.yaml `zones:`) has their names too: ..."box":[...],"zones":["door"]}.
// With MQTT on (edge.yaml `mqtt:`), the object events the tracker makes are lines of their own,
// told apart by their "event" key (ObjectEventJsonLine; the same text is the MQTT payload):
//   {"event":"new","seq":7,"camera":"cam1","id":3,"class":0,"score":0.91,"top_score":0.91,
//    "box":[x1,y1,x2,y2],"zones":["door"],"model_version":3,"frame":12,"time":0.4,"start_time":0.4}
// Each line is flushed as it is written, so `tail -f` and a crash both see whole lines.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/vision/detection.h"
#include "common/base/status.h"
#include "edge/object_tracker.h"

namespace sd {

struct DetectionSinkOptions {
  std::string path = "-";     // "-": stdout; otherwise a file, appended to (created if missing)
  std::string annotated_dir;  // empty: no annotated frames; else created if missing
  int annotate_every = 1;     // annotate frames whose index is a multiple of this (>= 1)
  // A path and annotate_every >= 1; the message starts with the field's name (YamlReader::Check).
  Status Validate() const;
};

// The names of the zones each detection lies in, parallel to the detections (ApplyZones).
using ZoneTags = std::vector<std::vector<std::string>>;

// The JSON line for one frame, without the newline (exposed for tests and other writers).
// `zones`: null or parallel to `detections`.
std::string DetectionJsonLine(int64_t frame_index, double time_s, uint64_t model_version,
                              const Detections& detections, const ZoneTags* zones = nullptr);

// The JSON line of one object event, without the newline: `seq` numbers the camera's events
// (EventSequence), `camera` is its device id.
std::string ObjectEventJsonLine(const ObjectEvent& event, uint64_t seq, const std::string& camera);

// Thread-safe: lines from several threads do not interleave.
class DetectionSink {
 public:
  // Opens the output; InvalidArgument for bad options, IOError for a file or directory that
  // cannot be opened or created.
  static StatusOr<std::unique_ptr<DetectionSink>> Open(const DetectionSinkOptions& options);
  ~DetectionSink();
  DetectionSink(const DetectionSink&) = delete;
  DetectionSink& operator=(const DetectionSink&) = delete;

  // Writes the frame's line; with annotation on and `frame_for_annotation` given (BGR or
  // grey), also <annotated_dir>/frame_<index>.jpg with the boxes drawn (the frame itself is
  // not modified).
  Status Write(int64_t frame_index, double time_s, uint64_t model_version, const Detections& detections,
               const cv::Mat* frame_for_annotation, const ZoneTags* zones = nullptr);

  // Writes one line as given (an object event's) and a newline.
  Status WriteLine(const std::string& json_line);

  int64_t lines_written() const;
  int64_t frames_annotated() const;

 private:
  DetectionSink(DetectionSinkOptions options, std::FILE* out, bool owns_out);
  Status Annotate(int64_t frame_index, uint64_t model_version, const Detections& detections,
                  const cv::Mat& frame) const;

  const DetectionSinkOptions options_;
  std::FILE* out_;
  const bool owns_out_;
  mutable std::mutex mu_;
  int64_t lines_written_ = 0;
  int64_t frames_annotated_ = 0;
};

}  // namespace sd
