// streamdistill-eval: scores student weights files on a job's held-out frames against the
// teacher's labels (the papers' protocol). With --edge-summary it also reports the main
// job's figures: the edge's run summary plus the mAP50 of its start and final models.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>

#include "tools/train_job_config.h"
#include "common/student/student.h"
#include "common/eval/student_eval.h"
#include "common/teacher/teacher.h"
#include "tools/job_labels.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

int Fail(const Status& status, int code) {
  std::fprintf(stderr, "streamdistill-eval: error: %s\n", status.message().c_str());
  return code;
}

int Run(const std::string& config_path, const std::vector<std::string>& weights, const std::string& edge_summary) {
  auto config = LoadTrainJobConfig(config_path);
  if (!config.ok()) return Fail(config.status(), 2);
  SetTorchThreads(config->threads);
  cv::setNumThreads(config->threads);
  std::vector<std::unique_ptr<StudentModel>> models;
  for (const std::string& path : weights) {
    auto model = StudentModel::LoadFromFile(path);
    if (!model.ok()) return Fail(model.status(), 2);
    models.push_back(std::move(model).value());
  }
  nlohmann::json edge;
  if (!edge_summary.empty()) {
    std::ifstream in(edge_summary);
    edge = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (edge.is_discarded() || !edge.is_object())
      return Fail(Status::InvalidArgument(edge_summary + ": not an edge summary JSON file"), 2);
  }
  auto teacher = CreateTeacher(config->teacher);
  if (!teacher.ok()) return Fail(teacher.status(), 2);
  auto labels = LabelJobVideo(*config, **teacher);
  if (!labels.ok()) return Fail(labels.status(), 1);
  auto frames = LoadLabelledFrames(config->video, config->eval_frames.begin, config->eval_frames.end, *labels);
  if (!frames.ok()) return Fail(frames.status(), 2);

  std::vector<double> map50;
  std::printf("held-out frames %lld-%lld vs %s teacher\n", static_cast<long long>(config->eval_frames.begin),
              static_cast<long long>(config->eval_frames.end - 1), TeacherKindName(config->teacher.kind));
  for (size_t i = 0; i < models.size(); ++i) {
    InferenceOptions options = config->inference;
    options.score_threshold = 0.01f;
    auto detector = models[i]->MakeDetector(options);
    if (!detector.ok()) return Fail(detector.status(), 1);
    auto result = EvaluateDetector(**detector, *frames);
    if (!result.ok()) return Fail(result.status(), 1);
    std::printf("  %-40s mAP50 %.3f  mAP50-95 %.3f\n", weights[i].c_str(), result->map50, result->map50_95);
    map50.push_back(result->map50);
  }
  if (edge.is_object() && map50.size() == 2) {
    nlohmann::json summary = {{"frames", edge.value("frames", 0)},
                              {"queried", edge.value("queried", 0)},
                              {"acked", edge.value("acked", 0)},
                              {"updates", edge.value("updates", 0)},
                              {"model_version", edge.value("model_version", 0)},
                              {"uplink_kbps", edge.value("uplink_kbps", 0.0)},
                              {"downlink_kbps", edge.value("downlink_kbps", 0.0)},
                              {"seconds", edge.value("seconds", 0.0)},
                              {"budget_mode", edge.value("budget_mode", "")},
                              {"budget_per_minute_final", edge.value("budget_per_minute", 0.0)},
                              {"map50_initial", map50[0]},
                              {"map50_final", map50[1]}};
    std::printf("\nmain job: %lld frames, %lld queried, %lld updates, uplink %.1f kbit/s, downlink %.1f kbit/s\n"
                "edge student mAP50 on held-out frames: %.3f at the start -> %.3f deployed\n",
                static_cast<long long>(summary["frames"].get<int64_t>()),
                static_cast<long long>(summary["queried"].get<int64_t>()),
                static_cast<long long>(summary["updates"].get<int64_t>()), summary["uplink_kbps"].get<double>(),
                summary["downlink_kbps"].get<double>(), map50[0], map50[1]);
    std::printf("%s\n", summary.dump().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-eval: mAP of student weights on a job's held-out frames"};
  std::string config;
  std::vector<std::string> weights;
  std::string edge_summary;
  app.add_option("--config", config, "job config with video, eval_frames, teacher (configs/train_vtest.yaml)")
      ->required();
  app.add_option("--weights", weights, "student weights files (.sdw)")->required();
  app.add_option("--edge-summary", edge_summary, "the edge's summary JSON: print the main job's figures");
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  return sd::Run(config, weights, edge_summary);
}
