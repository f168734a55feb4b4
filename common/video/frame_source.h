// Frames from video files, image folders, cameras, network streams and the synthetic scene,
// behind one interface, with frame ranges, striding, looping and real-time pacing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include <vector>

#include "common/vision/detection.h"
#include "common/base/clock.h"
#include "common/base/status.h"

namespace sd {

struct Frame {
  cv::Mat bgr;  // CV_8UC3
  // Position in the source (with start_frame=600 the first frame is 600). After a loop the
  // count goes on rising, as if the source were repeated end to end.
  int64_t index = 0;
  double capture_time_s = 0;  // the clock's time when the frame was delivered
  Detections ground_truth;    // only synthetic sources fill it
};

struct FrameSourceOptions {
  // A video file path, an image folder path, "camera:N" (V4L2 index), an rtsp:// http://
  // https:// URL, or "synthetic:" with optional settings, e.g.
  // "synthetic:seed=3,frames=500,classes=2,drift_at=250" (also width, height, fps, objects,
  // activity, lighting, occluder=0|1).
  std::string uri;
  bool loop = false;        // restart at the end (files, folders, synthetic)
  bool realtime = false;    // pace frames at the source's fps (files/folders/synthetic)
  double fps_override = 0;  // >0: pacing rate (folders default 10)
  int64_t start_frame = 0, end_frame = -1;  // [start, end) range of frames to deliver (-1: to the end)
  int stride = 1;                           // deliver every stride-th frame
  // rtsp/http streams: opening or reading a frame that takes longer fails with Unavailable (a
  // stalled camera), which the edge answers by reopening (common/video/reopening_source.h).
  double stream_timeout_s = 5;
  // The range, stride, fps and timeout (not the uri, which opening checks); the message starts with the
  // field's name (YamlReader::Check).
  Status Validate() const;
};

class FrameSource {
 public:
  virtual ~FrameSource();
  // Ok(true) with a frame; Ok(false) at the end of a finite source; an error (with the uri in
  // the message) when reading fails. Live sources that fail give Unavailable: reopen them.
  virtual StatusOr<bool> Next(Frame* frame) = 0;
  virtual double fps() const = 0;  // the pacing rate: fps_override, else the source's own
  // Frames the source holds, before range and stride; -1 when unknown (camera/stream).
  virtual int64_t frame_count() const = 0;
  virtual std::string description() const = 0;
  // Frames passed over because they could not be decoded (corrupt images in a folder).
  virtual int64_t skipped_count() const { return 0; }
};

// The clock must outlive the source.
StatusOr<std::unique_ptr<FrameSource>> OpenFrameSource(const FrameSourceOptions& options,
                                                       Clock* clock = Clock::Real());

// Calls `visit` with every frame until the source ends; stops at the first error, the
// source's or the visitor's. The visitor may take the frame's pixels.
Status ForEachFrame(FrameSource& source, const std::function<Status(Frame&)>& visit);

// Up to `max_frames` frames of the source as it delivers them (range, stride, loop), read as
// fast as it goes (never paced), kept in memory. InvalidArgument when it yields none.
StatusOr<std::vector<cv::Mat>> ReadFrames(FrameSourceOptions options, int max_frames);

}  // namespace sd
