#include "common/eval/student_eval.h"

#include <opencv2/imgproc.hpp>

#include "common/video/frame_source.h"

namespace sd {

StatusOr<EvalResult> EvaluateDetector(const StudentDetector& detector, const std::vector<LabelledFrame>& frames) {
  DetectionEvaluator evaluator;
  for (const LabelledFrame& frame : frames) {
    SD_ASSIGN_OR_RETURN(StudentOutput out, detector.Detect(frame.bgr));
    evaluator.AddFrame(out.detections, frame.labels);
  }
  return evaluator.Compute();
}

StatusOr<std::vector<LabelledFrame>> LoadLabelledFrames(const std::string& uri, int64_t begin, int64_t end,
                                                        const std::vector<Detections>& labels, int max_width) {
  FrameSourceOptions options;
  options.uri = uri;
  options.start_frame = begin;
  options.end_frame = end;
  SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(options));
  std::vector<LabelledFrame> frames;
  SD_RETURN_IF_ERROR(ForEachFrame(*source, [&](Frame& frame) -> Status {
    if (frame.index < 0 || frame.index >= static_cast<int64_t>(labels.size()))
      return Status::InvalidArgument(uri + ": frame " + std::to_string(frame.index) + " has no label");
    LabelledFrame out{frame.index, frame.bgr, labels[frame.index]};
    if (max_width > 0 && out.bgr.cols > max_width) {
      const float scale = static_cast<float>(max_width) / out.bgr.cols;
      cv::resize(frame.bgr, out.bgr, cv::Size(), scale, scale, cv::INTER_AREA);
      ScaleDetections(&out.labels, scale, scale);
    }
    frames.push_back(std::move(out));
    return Status::Ok();
  }));
  if (static_cast<int64_t>(frames.size()) != end - begin)
    return Status::InvalidArgument(uri + ": expected frames [" + std::to_string(begin) + ", " + std::to_string(end) +
                                   "), the source has only " + std::to_string(frames.size()) + " of them");
  return frames;
}

std::vector<TrainingSample> ToTrainingSamples(const std::vector<LabelledFrame>& frames) {
  std::vector<TrainingSample> samples;
  samples.reserve(frames.size());
  for (const LabelledFrame& f : frames) samples.push_back({f.bgr, f.labels});
  return samples;
}

}  // namespace sd
