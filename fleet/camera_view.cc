#include "fleet/camera_view.h"

#include <opencv2/core.hpp>

namespace sd {

StatusOr<cv::Mat> ApplyView(const CameraView& view, const cv::Mat& bgr) {
  cv::Mat out = bgr;
  if (!view.crop.empty()) {
    if ((view.crop & cv::Rect(0, 0, bgr.cols, bgr.rows)) != view.crop)
      return Status::InvalidArgument("crop " + view.PixelsFingerprint() + " does not fit a " +
                                     std::to_string(bgr.cols) + "x" + std::to_string(bgr.rows) + " frame");
    out = bgr(view.crop);
  }
  if (view.mirror) {
    cv::Mat flipped;
    cv::flip(out, flipped, 1);
    out = flipped;
  }
  const cv::Scalar shift = view.colour_shift + cv::Scalar::all(view.brightness);
  if (shift != cv::Scalar::all(0)) {
    cv::Mat shifted;
    cv::add(out, shift, shifted);  // saturates at 0 and 255
    out = shifted;
  }
  // A crop alone is a view into the source's buffer: copy it so the frame owns its pixels.
  if (out.data == bgr.data || !out.isContinuous()) out = out.clone();
  return out;
}

StatusOr<std::unique_ptr<CameraViewSource>> CameraViewSource::Open(const CameraView& view, double time_scale,
                                                                   Clock* clock) {
  FrameSourceOptions options;
  options.uri = view.uri;
  options.start_frame = view.train_frames.begin;
  options.end_frame = view.train_frames.end;
  options.loop = true;
  options.realtime = false;  // paced here, at the time scale
  SD_ASSIGN_OR_RETURN(auto inner, OpenFrameSource(options, clock));
  Frame skipped;
  for (int64_t i = 0; i < view.start_offset; ++i) {
    SD_ASSIGN_OR_RETURN(bool got, inner->Next(&skipped));
    if (!got) return Status::InvalidArgument(view.uri + ": ended before start_offset " + std::to_string(view.start_offset));
  }
  return std::unique_ptr<CameraViewSource>(new CameraViewSource(view, time_scale, clock, std::move(inner)));
}

StatusOr<bool> CameraViewSource::Next(Frame* frame) {
  SD_ASSIGN_OR_RETURN(bool got, inner_->Next(frame));
  if (!got) return false;
  SD_ASSIGN_OR_RETURN(frame->bgr, ApplyView(view_, frame->bgr));
  if (delivered_ == 0) first_frame_time_ = clock_->NowSeconds();
  // Frame k is due k / (fps * time_scale) seconds after the first; a camera that falls behind
  // (a busy machine) delivers at once, like a file source in real-time mode.
  const double due = first_frame_time_ + delivered_ / (inner_->fps() * time_scale_);
  clock_->SleepUntil(due);
  frame->capture_time_s = clock_->NowSeconds();
  ++delivered_;
  return true;
}

}  // namespace sd
