#include "tools/train_job_config.h"

namespace sd {

Status ReadTrainJobFields(const YamlReader& root, TrainJobConfig* config) {
  TrainJobConfig& c = *config;
  SD_RETURN_IF_ERROR(root.Get("video", &c.video));
  SD_RETURN_IF_ERROR(root.Get("cache_dir", &c.cache_dir));
  SD_RETURN_IF_ERROR(root.Get("output_weights", &c.output_weights));
  SD_RETURN_IF_ERROR(root.Get("init_weights", &c.init_weights));
  SD_RETURN_IF_ERROR(ReadFrameRange(root, "train_frames", &c.train_frames));
  SD_RETURN_IF_ERROR(ReadFrameRange(root, "eval_frames", &c.eval_frames));
  SD_RETURN_IF_ERROR(root.Get("threads", &c.threads));
  SD_RETURN_IF_ERROR(root.Get("model_seed", &c.model_seed));
  SD_RETURN_IF_ERROR(root.Get("eval_every", &c.eval_every));
  if (c.threads < 1 || c.threads > 256) return root.Error("threads", "must be in 1..256");
  SD_ASSIGN_OR_RETURN(YamlReader teacher, root.Child("teacher"));
  SD_RETURN_IF_ERROR(ReadTeacherOptions(teacher, &c.teacher));
  SD_ASSIGN_OR_RETURN(YamlReader student, root.Child("student"));
  SD_RETURN_IF_ERROR(ReadStudentArchitecture(student, &c.student));
  SD_ASSIGN_OR_RETURN(YamlReader inference, root.Child("inference"));
  SD_RETURN_IF_ERROR(ReadInferenceOptions(inference, &c.inference));
  SD_ASSIGN_OR_RETURN(YamlReader training, root.Child("training"));
  SD_RETURN_IF_ERROR(ReadTrainerOptions(training, &c.training));
  if (c.train_frames.end > c.eval_frames.begin && c.eval_frames.end > c.train_frames.begin)
    return root.Error("eval_frames", "must not overlap train_frames (held-out evaluation)");
  return Status::Ok();
}

StatusOr<TrainJobConfig> LoadTrainJobConfig(const std::string& path) {
  SD_ASSIGN_OR_RETURN(YamlReader root, YamlReader::FromFile(path));
  TrainJobConfig c;
  if (!root.Has("video")) return root.Error("video", "missing required key");
  SD_RETURN_IF_ERROR(ReadTrainJobFields(root, &c));
  SD_RETURN_IF_ERROR(root.CheckAllKeysUsed());
  return c;
}

}  // namespace sd
