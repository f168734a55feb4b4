// streamdistill-train: the offline job. Labels a video with the teacher (cached), trains the
// student on the training frames, evaluates it on held-out frames against the teacher's
// labels, times student and teacher on the same frames, and ends with one JSON line.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "tools/train_job_config.h"
#include "common/base/progress.h"
#include "common/student/student.h"
#include "common/eval/student_eval.h"
#include "common/student/student_trainer.h"
#include "common/teacher/teacher.h"
#include "common/eval/detector_timing.h"
#include "tools/job_labels.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

constexpr int kUsageError = 2;

// Fewer frames than the speed benchmark (streamdistill-bench --speed, 200): the figures here
// are a check that training did not make the student slow, not the product's speed figures.
constexpr size_t kTimedFrames = 50;

StatusOr<EvalResult> Evaluate(const StudentModel& model, const InferenceOptions& base,
                              const std::vector<LabelledFrame>& frames) {
  InferenceOptions options = base;
  options.score_threshold = 0.01f;  // the whole precision-recall curve
  SD_ASSIGN_OR_RETURN(auto detector, model.MakeDetector(options));
  return EvaluateDetector(*detector, frames);
}

int Run(const std::string& config_path, int steps_override, const std::string& json_out) {
  auto config_or = LoadTrainJobConfig(config_path);
  if (!config_or.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", config_or.status().message().c_str());
    return kUsageError;
  }
  TrainJobConfig config = std::move(config_or).value();
  if (steps_override > 0) config.training.total_steps = steps_override;
  SetTorchThreads(config.threads);
  cv::setNumThreads(config.threads);
  const std::string& video = config.video;
  if (!std::filesystem::exists(video)) {
    std::fprintf(stderr, "streamdistill-train: error: %s: video not found\n", video.c_str());
    return kUsageError;
  }

  auto model_or = config.init_weights.empty() ? StudentModel::Create(config.student, config.model_seed)
                                              : StudentModel::LoadFromFile(config.init_weights);
  if (!model_or.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", model_or.status().message().c_str());
    return kUsageError;
  }
  // Every input is checked before the slow labelling starts.
  std::unique_ptr<StudentModel> model = std::move(model_or).value();
  auto teacher = CreateTeacher(config.teacher);
  if (!teacher.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: teacher: %s\n", teacher.status().message().c_str());
    return kUsageError;
  }
  std::printf("teacher   %s\n", (*teacher)->Fingerprint().c_str());
  auto labels = LabelJobVideo(config, **teacher);
  if (!labels.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", labels.status().message().c_str());
    return 1;
  }
  int64_t boxes = 0;
  for (const auto& l : *labels) boxes += l.size();
  std::printf("labels    %zu frames, %.2f boxes/frame (cache: %s)\n", labels->size(),
              labels->empty() ? 0.0 : double(boxes) / labels->size(), config.cache_dir.c_str());

  // Training frames are kept at 1.25x the student input: enough for the scale jitter.
  const int train_width = config.student.input_width * 5 / 4;
  auto train = LoadLabelledFrames(video, config.train_frames.begin, config.train_frames.end, *labels, train_width);
  auto eval = LoadLabelledFrames(video, config.eval_frames.begin, config.eval_frames.end, *labels);
  if (!train.ok() || !eval.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n",
                 (train.ok() ? eval.status() : train.status()).message().c_str());
    return kUsageError;
  }

  std::printf("student   %s, %lld parameters\n", model->architecture().Fingerprint().c_str(),
              static_cast<long long>(model->NumParameters()));

  auto untrained = Evaluate(*model, config.inference, *eval);
  if (!untrained.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", untrained.status().message().c_str());
    return 1;
  }
  auto trainer = StudentTrainer::Create(model.get(), config.training);
  if (!trainer.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", trainer.status().message().c_str());
    return kUsageError;
  }
  const std::vector<TrainingSample> samples = ToTrainingSamples(*train);
  const int steps = config.training.total_steps;
  std::printf("training  %d steps, batch %d, on frames [%lld, %lld), %d threads\n", steps, config.training.batch_size,
              static_cast<long long>(config.train_frames.begin), static_cast<long long>(config.train_frames.end),
              config.threads);
  ProgressLine progress("training", steps);
  const auto train_start = std::chrono::steady_clock::now();
  double loss_avg = 0;
  for (int i = 0; i < steps; ++i) {
    auto stats = (*trainer)->Step(samples);
    if (!stats.ok()) {
      std::fprintf(stderr, "\nstreamdistill-train: error: %s\n", stats.status().message().c_str());
      return 1;
    }
    loss_avg = i == 0 ? stats->loss : 0.95 * loss_avg + 0.05 * stats->loss;
    char detail[96];
    std::snprintf(detail, sizeof(detail), "loss %.3f  lr %.2e", loss_avg, stats->learning_rate);
    progress.Update(i + 1, detail);
    if (config.eval_every > 0 && (i + 1) % config.eval_every == 0 && i + 1 < steps) {
      auto mid = Evaluate(*model, config.inference, *eval);
      if (mid.ok()) std::printf("\n  step %d: held-out map50 %.3f\n", i + 1, mid->map50);
    }
  }
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
  progress.Finish("loss " + std::to_string(loss_avg));

  auto result = Evaluate(*model, config.inference, *eval);
  if (!result.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", result.status().message().c_str());
    return 1;
  }
  auto serving = model->MakeDetector(config.inference);
  if (!serving.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", serving.status().message().c_str());
    return 1;
  }
  std::vector<cv::Mat> timed_frames;
  for (size_t i = 0; i < eval->size() && i < kTimedFrames; ++i) timed_frames.push_back((*eval)[i].bgr);
  auto timing = TimeStudentAndTeacher(**serving, **teacher, timed_frames, config.threads);
  if (!timing.ok()) {
    std::fprintf(stderr, "streamdistill-train: error: %s\n", timing.status().message().c_str());
    return 1;
  }
  if (!config.output_weights.empty()) {
    std::filesystem::create_directories(std::filesystem::absolute(config.output_weights).parent_path());
    Status saved = model->SaveToFile(config.output_weights);
    if (!saved.ok()) std::fprintf(stderr, "streamdistill-train: warning: %s\n", saved.message().c_str());
  }

  const std::string table_title = "held-out frames " + std::to_string(config.eval_frames.begin) + "-" +
                                  std::to_string(config.eval_frames.end - 1) + " vs teacher";
  std::printf("\n%-34s %10s\n", table_title.c_str(), "value");
  std::printf("%-34s %10.3f\n", "mAP50 (untrained student)", untrained->map50);
  std::printf("%-34s %10.3f\n", "mAP50 (trained student)", result->map50);
  std::printf("%-34s %10.3f\n", "mAP50-95 (trained student)", result->map50_95);
  std::printf("%-34s %10.2f\n", "student ms/frame (1 thread, median)", timing->student.median_ms);
  std::printf("%-34s %10.2f\n", "teacher ms/frame (1 thread, median)", timing->teacher.median_ms);
  std::printf("%-34s %10.1fx\n", "student speed-up over teacher", timing->speedup_median());
  std::printf("%-34s %10.1f\n", "training seconds", train_s);
  if (!config.output_weights.empty()) std::printf("weights   %s\n", config.output_weights.c_str());

  nlohmann::json summary = {
      {"map50", result->map50},
      {"map50_95", result->map50_95},
      {"map50_untrained", untrained->map50},
      {"student_ms", timing->student.median_ms},
      {"teacher_ms", timing->teacher.median_ms},
      {"speedup", timing->speedup_median()},
      {"train_frames", config.train_frames.size()},
      {"eval_frames", config.eval_frames.size()},
      {"train_steps", steps},
      {"train_seconds", train_s},
      {"parameters", model->NumParameters()},
      {"teacher", TeacherKindName(config.teacher.kind)},
  };
  std::printf("%s\n", summary.dump().c_str());
  if (!json_out.empty()) {
    std::FILE* f = std::fopen(json_out.c_str(), "w");
    if (f) {
      std::fprintf(f, "%s\n", summary.dump(2).c_str());
      std::fclose(f);
    }
  }
  return 0;
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-train: distil a teacher detector into the student on a video"};
  std::string config;
  int steps = 0;
  std::string json_out;
  app.add_option("--config", config, "YAML job config (see configs/train_vtest.yaml)")->required();
  app.add_option("--steps", steps, "override training.steps");
  app.add_option("--json", json_out, "also write the summary JSON to this file");
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  return sd::Run(config, steps, json_out);
}
