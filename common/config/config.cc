#include "common/config/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace sd {

Status ReadStudentArchitecture(const YamlReader& s, StudentArchitecture* arch) {
  SD_RETURN_IF_ERROR(s.Get("input_width", &arch->input_width));
  SD_RETURN_IF_ERROR(s.Get("input_height", &arch->input_height));
  SD_RETURN_IF_ERROR(s.Get("classes", &arch->num_classes));
  SD_RETURN_IF_ERROR(s.Get("channels", &arch->channels));
  std::string block = StudentBlockName(arch->block);
  SD_RETURN_IF_ERROR(s.Get("block", &block));
  SD_RETURN_IF_ERROR(s.Check(arch->Validate(), {{"num_classes", "classes"}}));
  StatusOr<StudentBlock> parsed = ParseStudentBlock(block);
  if (!parsed.ok()) return s.Error("block", parsed.status().message());
  arch->block = *parsed;
  return Status::Ok();
}

Status ReadInferenceOptions(const YamlReader& s, InferenceOptions* options) {
  SD_RETURN_IF_ERROR(s.Get("score_threshold", &options->score_threshold));
  SD_RETURN_IF_ERROR(s.Get("nms_iou", &options->nms_iou));
  SD_RETURN_IF_ERROR(s.Get("max_detections", &options->max_detections));
  std::string device = ComputeDeviceName(options->device);
  SD_RETURN_IF_ERROR(s.Get("device", &device));
  SD_RETURN_IF_ERROR(s.Check(options->Validate()));
  StatusOr<ComputeDevice> parsed = ParseComputeDevice(device);
  if (!parsed.ok()) return s.Error("device", "must be cpu or cuda");
  options->device = *parsed;
  return Status::Ok();
}

Status ReadTeacherOptions(const YamlReader& s, TeacherOptions* options) {
  std::string kind = TeacherKindName(options->kind);
  SD_RETURN_IF_ERROR(s.Get("kind", &kind));
  SD_RETURN_IF_ERROR(s.Get("model", &options->model_path));
  SD_RETURN_IF_ERROR(s.Get("score_threshold", &options->score_threshold));
  SD_RETURN_IF_ERROR(s.Get("nms_iou", &options->nms_iou));
  SD_RETURN_IF_ERROR(s.Get("hog_scale", &options->hog_scale));
  SD_RETURN_IF_ERROR(s.Get("hog_win_stride", &options->hog_win_stride));
  SD_RETURN_IF_ERROR(s.Get("min_width", &options->min_width));
  SD_RETURN_IF_ERROR(s.Get("input_width", &options->input_width));
  SD_RETURN_IF_ERROR(s.Get("input_height", &options->input_height));
  SD_RETURN_IF_ERROR(s.Get("class_map", &options->class_map));
  SD_RETURN_IF_ERROR(s.Get("threads", &options->threads));
  StatusOr<TeacherKind> parsed = ParseTeacherKind(kind);
  if (!parsed.ok()) {
    std::string list;
    for (const auto& k : TeacherKinds()) list += (list.empty() ? "" : ", ") + k;
    return s.Error("kind", "unknown teacher '" + kind + "' (valid: " + list + ")");
  }
  options->kind = *parsed;
  return s.Check(options->Validate(), {{"model_path", "model"}});
}

Status ReadTrainerOptions(const YamlReader& s, TrainerOptions* o) {
  SD_RETURN_IF_ERROR(s.Get("batch_size", &o->batch_size));
  SD_RETURN_IF_ERROR(s.Get("learning_rate", &o->learning_rate));
  SD_RETURN_IF_ERROR(s.Get("warmup_steps", &o->warmup_steps));
  SD_RETURN_IF_ERROR(s.Get("steps", &o->total_steps));
  SD_RETURN_IF_ERROR(s.Get("final_lr_fraction", &o->final_lr_fraction));
  SD_RETURN_IF_ERROR(s.Get("weight_decay", &o->weight_decay));
  SD_RETURN_IF_ERROR(s.Get("size_loss_weight", &o->size_loss_weight));
  SD_RETURN_IF_ERROR(s.Get("offset_loss_weight", &o->offset_loss_weight));
  SD_RETURN_IF_ERROR(s.Get("soft_target_score", &o->soft_target_score));
  SD_RETURN_IF_ERROR(s.Get("flip", &o->flip));
  SD_RETURN_IF_ERROR(s.Get("min_scale", &o->min_scale));
  SD_RETURN_IF_ERROR(s.Get("max_scale", &o->max_scale));
  SD_RETURN_IF_ERROR(s.Get("brightness", &o->brightness));
  SD_RETURN_IF_ERROR(s.Get("contrast", &o->contrast));
  SD_RETURN_IF_ERROR(s.Get("seed", &o->seed));
  std::string device = ComputeDeviceName(o->device);
  SD_RETURN_IF_ERROR(s.Get("device", &device));
  SD_RETURN_IF_ERROR(s.Check(o->Validate(), {{"total_steps", "steps"}}));
  StatusOr<ComputeDevice> parsed = ParseComputeDevice(device);
  if (!parsed.ok()) return s.Error("device", "training device must be 'cpu' or 'cuda'");
  o->device = *parsed;
  return Status::Ok();
}

Status ReadHttpOptions(const YamlReader& root, HttpOptions* options) {
  SD_ASSIGN_OR_RETURN(YamlReader http, root.Child("http"));
  SD_RETURN_IF_ERROR(http.Get("enabled", &options->enabled));
  SD_RETURN_IF_ERROR(http.Get("bind", &options->bind));
  SD_RETURN_IF_ERROR(http.Get("port", &options->port));
  return http.Check(options->Validate());
}

StatusOr<std::string> ReadFileAtKey(const YamlReader& section, const std::string& key) {
  std::string path;
  SD_RETURN_IF_ERROR(section.Get(key, &path));
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return section.Error(key, "cannot read '" + path + "'");
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

Status ReadFrameRange(const YamlReader& s, const std::string& key, FrameRange* range) {
  std::vector<int> pair{static_cast<int>(range->begin), static_cast<int>(range->end)};
  SD_RETURN_IF_ERROR(s.Get(key, &pair));
  if (pair.size() != 2 || pair[0] < 0 || pair[1] <= pair[0])
    return s.Error(key, "expected [first, end) as two integers with 0 <= first < end");
  range->begin = pair[0];
  range->end = pair[1];
  return Status::Ok();
}

}  // namespace sd
