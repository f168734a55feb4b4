#include "bench/start_student.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/base/progress.h"
#include "common/video/frame_source.h"
#include "tools/job_labels.h"

namespace sd {
namespace {

StatusOr<std::vector<Detections>> GroundTruthLabels(const std::string& uri, int64_t end) {
  FrameSourceOptions options;
  options.uri = uri;
  options.end_frame = end;
  SD_ASSIGN_OR_RETURN(auto source, OpenFrameSource(options));
  std::vector<Detections> labels;
  SD_RETURN_IF_ERROR(ForEachFrame(*source, [&](Frame& frame) -> Status {
    labels.push_back(std::move(frame.ground_truth));
    return Status::Ok();
  }));
  return labels;
}

}  // namespace

StatusOr<std::vector<Detections>> ReferenceLabels(const BenchConfig& config) {
  if (config.ground_truth_labels)
    return GroundTruthLabels(config.job.video, std::max(config.job.train_frames.end, config.job.eval_frames.end));
  if (!std::filesystem::exists(config.job.video))
    return Status::NotFound(config.job.video + ": video not found");
  SD_ASSIGN_OR_RETURN(auto teacher, CreateTeacher(config.job.teacher));
  std::printf("teacher   %s\n", teacher->Fingerprint().c_str());
  return LabelJobVideo(config.job, *teacher);
}

namespace {

std::string StartKey(const BenchConfig& c) {
  std::ostringstream key;
  const TrainerOptions& t = c.pretrain.training;
  key << "video=" << c.job.video << " student=" << c.job.student.Fingerprint() << " seed=" << c.job.model_seed
      << " labels=" << (c.ground_truth_labels ? "ground_truth" : TeacherKindName(c.job.teacher.kind)) << " frames=" << c.pretrain.frames
      << " range=" << c.pretrain.range.begin << "-" << c.pretrain.range.end << " steps=" << t.total_steps
      << " batch=" << t.batch_size << " lr=" << t.learning_rate << " warmup=" << t.warmup_steps << " tseed=" << t.seed;
  return key.str();
}

}  // namespace

StatusOr<std::string> StartWeights(const BenchConfig& c, const std::vector<Detections>& labels, const std::string& dir) {
  const std::string weights_path = dir + "/start.sdw", key_path = dir + "/start.key";
  const std::string key = StartKey(c);
  {
    std::ifstream in(key_path);
    std::string stored;
    std::getline(in, stored);
    if (stored == key) {
      auto model = StudentModel::LoadFromFile(weights_path);
      if (model.ok()) {
        std::printf("start     %s (reused)\n", weights_path.c_str());
        return (*model)->SerializeWeights();
      }
    }
  }
  const FrameRange& range = c.pretrain.range;
  const int keep_width = c.job.student.input_width * 5 / 4;
  std::vector<TrainingSample> samples;
  for (int i = 0; i < c.pretrain.frames; ++i) {
    const int64_t index = range.begin + (range.size() * (2 * i + 1)) / (2 * c.pretrain.frames);  // centred
    SD_ASSIGN_OR_RETURN(auto frames, LoadLabelledFrames(c.job.video, index, index + 1, labels, keep_width));
    samples.push_back({frames[0].bgr, frames[0].labels});
  }
  SD_ASSIGN_OR_RETURN(auto model, StudentModel::Create(c.job.student, c.job.model_seed));
  SD_ASSIGN_OR_RETURN(auto trainer, StudentTrainer::Create(model.get(), c.pretrain.training));
  const int steps = c.pretrain.training.total_steps;
  ProgressLine progress("pretrain", steps);
  for (int i = 0; i < steps; ++i) {
    SD_ASSIGN_OR_RETURN(StepStats stats, trainer->Step(samples));
    progress.Update(i + 1, "loss " + std::to_string(stats.loss));
  }
  progress.Finish();
  SD_RETURN_IF_ERROR(model->SaveToFile(weights_path));
  std::ofstream(key_path) << key << "\n";
  std::printf("start     %s (%d frames, %d steps)\n", weights_path.c_str(), c.pretrain.frames, steps);
  return model->SerializeWeights();
}

}  // namespace sd
