// The offline job's config (configs/train_vtest.yaml): one video, its train and held-out frame
// ranges, the teacher, the student and its training. Read by streamdistill-train,
// streamdistill-eval and the bench, which replays the same job.
#pragma once

#include <string>

#include "common/config/config.h"
#include "common/student/student.h"
#include "common/student/student_trainer.h"
#include "common/teacher/teacher.h"

namespace sd {


// configs/train_*.yaml: the offline job of streamdistill-train.
struct TrainJobConfig {
  std::string video;
  std::string cache_dir = "cache";
  std::string output_weights;  // empty: do not save
  FrameRange train_frames{0, 600};
  FrameRange eval_frames{600, 795};
  int threads = 2;
  uint64_t model_seed = 1;
  std::string init_weights;  // empty: random initialisation from model_seed
  int eval_every = 0;        // evaluate on the held-out frames every N steps (0: only at the end)
  TeacherOptions teacher;
  StudentArchitecture student;
  InferenceOptions inference;
  TrainerOptions training;
};
StatusOr<TrainJobConfig> LoadTrainJobConfig(const std::string& path);
// The job's keys of `root`, for configs that extend the job (the benchmark's); the caller
// checks for unknown keys, and that `video` is there (the benchmark can make its video).
Status ReadTrainJobFields(const YamlReader& root, TrainJobConfig* config);

}  // namespace sd
