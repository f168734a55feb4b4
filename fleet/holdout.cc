#include "fleet/holdout.h"

#include <opencv2/imgproc.hpp>

#include "common/video/frame_source.h"
#include "common/teacher/label_cache.h"
#include "common/base/progress.h"
#include "fleet/camera_view.h"

namespace sd {

namespace {

std::string FramesName(const CameraView& view) {
  return std::to_string(view.holdout_frames.begin) + ":" + std::to_string(view.holdout_frames.end) + "/" +
         std::to_string(view.holdout_stride);
}

}  // namespace

StatusOr<HoldoutFrames> HoldoutLibrary::For(const CameraView& view) {
  const std::string key = view.uri + " " + FramesName(view) + " " + view.PixelsFingerprint();
  auto it = loaded_.find(key);
  if (it != loaded_.end()) return it->second;
  StatusOr<std::vector<LabelledFrame>> frames = Load(view);
  if (!frames.ok()) return frames.status().WithContext("held-out frames of camera " + view.device);
  HoldoutFrames shared = std::make_shared<const std::vector<LabelledFrame>>(std::move(frames).value());
  loaded_.emplace(key, shared);
  return shared;
}

StatusOr<std::vector<LabelledFrame>> HoldoutLibrary::Load(const CameraView& view) {
  FrameSourceOptions options;
  options.uri = view.uri;
  options.start_frame = view.holdout_frames.begin;
  options.end_frame = view.holdout_frames.end;
  options.stride = view.holdout_stride;
  SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(options));
  std::vector<LabelledFrame> frames;
  SD_RETURN_IF_ERROR(ForEachFrame(*source, [&](Frame& frame) -> Status {
    SD_ASSIGN_OR_RETURN(cv::Mat pixels, ApplyView(view, frame.bgr));
    // A synthetic source fills the ground truth; a brightness shift does not move it.
    frames.push_back({frame.index, pixels, std::move(frame.ground_truth)});
    return Status::Ok();
  }));
  const int64_t expected = (view.holdout_frames.size() + view.holdout_stride - 1) / view.holdout_stride;
  if (static_cast<int64_t>(frames.size()) != expected)
    return Status::InvalidArgument(view.uri + ": holdout_frames [" + std::to_string(view.holdout_frames.begin) + ", " +
                                   std::to_string(view.holdout_frames.end) + ") runs past the end of the source");
  if (!view.synthetic()) {
    SD_ASSIGN_OR_RETURN(std::vector<Detections> labels, TeacherLabels(view, frames));
    for (size_t i = 0; i < frames.size(); ++i) frames[i].labels = std::move(labels[i]);
  }
  // Labelled at full size (HOG needs people at least 128 px tall), scored at the student's.
  for (LabelledFrame& f : frames) {
    if (max_width_ <= 0 || f.bgr.cols <= max_width_) continue;
    const float scale = static_cast<float>(max_width_) / f.bgr.cols;
    cv::Mat small;
    cv::resize(f.bgr, small, cv::Size(), scale, scale, cv::INTER_AREA);
    f.bgr = small;
    ScaleDetections(&f.labels, scale, scale);
  }
  return frames;
}

StatusOr<std::vector<Detections>> HoldoutLibrary::TeacherLabels(const CameraView& view,
                                                                 const std::vector<LabelledFrame>& frames) {
  if (!teacher_) {
    SD_ASSIGN_OR_RETURN(teacher_, CreateTeacher(teacher_options_));
  }
  SD_ASSIGN_OR_RETURN(std::string key, LabelCacheKey(view.uri, *teacher_));
  key += " holdout=" + FramesName(view) + " view=" + view.PixelsFingerprint();
  const std::string path = LabelCachePath(cache_dir_, view.uri, key);
  StatusOr<std::vector<Detections>> cached = LoadLabels(path, key);
  if (cached.ok() && cached->size() == frames.size()) return cached;
  std::vector<Detections> labels;
  ProgressLine progress("labelling held-out frames of " + view.device, static_cast<int64_t>(frames.size()));
  for (const LabelledFrame& f : frames) {
    SD_ASSIGN_OR_RETURN(Detections detections, teacher_->Label(f.bgr));
    labels.push_back(std::move(detections));
    progress.Update(static_cast<int64_t>(labels.size()));
  }
  progress.Finish();
  // Not storing them costs a relabel next time, nothing else: go on without the cache.
  Status saved = Env::Default()->CreateDir(cache_dir_);
  if (saved.ok()) saved = SaveLabels(path, key, labels);
  if (!saved.ok()) std::fprintf(stderr, "warning: held-out labels not cached: %s\n", saved.message().c_str());
  return labels;
}

StatusOr<std::unique_ptr<HoldoutScorer>> HoldoutScorer::Create(const StudentArchitecture& architecture,
                                                              const InferenceOptions& inference) {
  SD_ASSIGN_OR_RETURN(auto scratch, StudentModel::Create(architecture, /*seed=*/1));
  InferenceOptions options = inference;
  options.score_threshold = 0.01f;  // the whole precision-recall curve, as streamdistill-eval scores
  return std::unique_ptr<HoldoutScorer>(new HoldoutScorer(std::move(scratch), options));
}

StatusOr<double> HoldoutScorer::Map50(const std::vector<float>& flat_weights, const std::vector<LabelledFrame>& frames) {
  SD_RETURN_IF_ERROR(scratch_->SetFlatWeights(flat_weights));
  SD_ASSIGN_OR_RETURN(auto detector, scratch_->MakeDetector(inference_));
  SD_ASSIGN_OR_RETURN(EvalResult result, EvaluateDetector(*detector, frames));
  return result.map50;
}

}  // namespace sd
