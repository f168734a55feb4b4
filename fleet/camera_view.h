// A simulated camera's frames: a video or synthetic scene seen through a CameraView (crop,
// mirror, brightness and colour shift), looping over its train range from its start offset,
// paced at the source's frame rate times the fleet's time scale.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "common/video/frame_source.h"
#include "common/base/status.h"
#include "fleet/fleet_config.h"

namespace sd {

// The view's pixels of `bgr`. InvalidArgument when the crop does not fit the frame.
StatusOr<cv::Mat> ApplyView(const CameraView& view, const cv::Mat& bgr);

class CameraViewSource : public FrameSource {
 public:
  // Opens the view's source and reads up to its start offset (decoded, not paced).
  static StatusOr<std::unique_ptr<CameraViewSource>> Open(const CameraView& view, double time_scale, Clock* clock);

  StatusOr<bool> Next(Frame* frame) override;
  // The source's own rate: the edge counts sampling budgets in video time (index / fps), so
  // an accelerated camera samples as many frames per video minute as a real-time one.
  double fps() const override { return inner_->fps(); }
  int64_t frame_count() const override { return inner_->frame_count(); }
  std::string description() const override { return inner_->description() + ", view " + view_.PixelsFingerprint(); }

  // The clock's time when the first frame was delivered; 0 before.
  double first_frame_time() const { return first_frame_time_; }

 private:
  CameraViewSource(const CameraView& view, double time_scale, Clock* clock, std::unique_ptr<FrameSource> inner)
      : view_(view), time_scale_(time_scale), clock_(clock), inner_(std::move(inner)) {}

  const CameraView view_;
  const double time_scale_;
  Clock* clock_;
  std::unique_ptr<FrameSource> inner_;
  int64_t delivered_ = 0;
  std::atomic<double> first_frame_time_{0};  // read by the fleet's thread
};

}  // namespace sd
