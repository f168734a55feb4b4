// Each simulated camera's held-out frames and their reference labels, what its deployed
// student is scored on (the papers' protocol, as in the main job): a video view's frames
// labelled by the teacher, configured like the server's (cached on disk per view), or a
// synthetic scene's frames with their ground truth. They come from the camera's
// holdout_frames, which never overlap the frames it sends.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/student/student.h"
#include "common/eval/student_eval.h"
#include "common/teacher/teacher.h"
#include "fleet/fleet_config.h"

namespace sd {

using HoldoutFrames = std::shared_ptr<const std::vector<LabelledFrame>>;

class HoldoutLibrary {
 public:
  // `max_width` > 0 shrinks the frames after labelling (labels scaled with them): the student
  // resizes to its input anyway, and 32 cameras' full-size frames would take gigabytes.
  HoldoutLibrary(TeacherOptions teacher, std::string cache_dir, int max_width)
      : teacher_options_(std::move(teacher)), cache_dir_(std::move(cache_dir)), max_width_(max_width) {}

  // The view's held-out frames; cameras with the same pixels and frames share one set.
  StatusOr<HoldoutFrames> For(const CameraView& view);

 private:
  StatusOr<std::vector<LabelledFrame>> Load(const CameraView& view);
  // The teacher's labels of `frames` (already through the view), from the cache or labelled now.
  StatusOr<std::vector<Detections>> TeacherLabels(const CameraView& view, const std::vector<LabelledFrame>& frames);

  const TeacherOptions teacher_options_;
  const std::string cache_dir_;
  const int max_width_;
  std::unique_ptr<Teacher> teacher_;  // made for the first view whose labels are not cached
  std::map<std::string, HoldoutFrames> loaded_;  // key: uri, frames and pixels
};

// mAP50 of flat weights of `architecture` on held-out frames; one scoring at a time.
class HoldoutScorer {
 public:
  static StatusOr<std::unique_ptr<HoldoutScorer>> Create(const StudentArchitecture& architecture,
                                                        const InferenceOptions& inference);
  StatusOr<double> Map50(const std::vector<float>& flat_weights, const std::vector<LabelledFrame>& frames);

 private:
  HoldoutScorer(std::unique_ptr<StudentModel> scratch, const InferenceOptions& inference)
      : scratch_(std::move(scratch)), inference_(inference) {}
  std::unique_ptr<StudentModel> scratch_;  // holds the architecture; its weights are replaced per call
  InferenceOptions inference_;
};

}  // namespace sd
