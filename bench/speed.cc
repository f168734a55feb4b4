#include "bench/speed.h"

#include <ATen/Parallel.h>
#include <opencv2/core.hpp>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/config/yaml_overlay.h"
#include "common/eval/detector_timing.h"
#include "common/base/env.h"
#include "common/video/frame_source.h"
#include "common/student/student.h"
#include "common/teacher/teacher.h"
#include "edge/edge_agent.h"
#include "edge/edge_config.h"
#include "edge/privacy_filter.h"
#include "server/server_config.h"

extern char** environ;

namespace sd {
namespace {

using SteadyClock = std::chrono::steady_clock;

double MsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
}

nlohmann::json ToJson(const TimeDistribution& d) {
  return {{"median_ms", d.median_ms}, {"p95_ms", d.p95_ms}, {"max_ms", d.max_ms}, {"mean_ms", d.mean_ms},
          {"frames", d.frames}};
}

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

// The processor as lscpu names it ("Model name", from /proc/cpuinfo's "model name"): the
// student/teacher ratio moves with it (HOG and the student gain differently from a newer core),
// so a figure without it cannot be compared.
std::string CpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

// What decides how the libraries run: printed so that two runs can be told apart.
nlohmann::json ThreadSettings() {
  return {{"cpu_model", CpuModel()},
          {"torch_intra_op_threads", at::get_num_threads()},
          {"torch_inter_op_threads", at::get_num_interop_threads()},
          {"opencv_threads", cv::getNumThreads()},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"OMP_NUM_THREADS", EnvOr("OMP_NUM_THREADS", "(unset)")},
          {"OMP_WAIT_POLICY", EnvOr("OMP_WAIT_POLICY", "(unset)")},
          {"torch_parallel_info", at::get_parallel_info()}};
}

// A checkpoint (.sdw) or an edge's deployed.sdw (weights with their version).
StatusOr<std::unique_ptr<StudentModel>> LoadStudent(const SpeedOptions& options, const StudentArchitecture& arch) {
  if (options.weights.empty()) return StudentModel::Create(arch, 1);
  SD_ASSIGN_OR_RETURN(std::string bytes, Env::Default()->ReadFile(options.weights));
  if (IsDeployedWeights(bytes)) {
    StatusOr<DeployedWeights> deployed = DecodeDeployedWeights(bytes);
    if (!deployed.ok()) return deployed.status().WithContext(options.weights);
    return StudentModel::FromBytes(deployed->weights);
  }
  return StudentModel::LoadFromFile(options.weights);
}

StatusOr<nlohmann::json> TimeDetectors(const StudentDetector& student, Teacher& teacher,
                                       const std::vector<cv::Mat>& frames) {
  // The settings as they are during the measurement.
  SetTorchThreads(1);
  cv::setNumThreads(1);
  const nlohmann::json settings = ThreadSettings();
  SD_ASSIGN_OR_RETURN(DetectorTiming timing, TimeStudentAndTeacher(student, teacher, frames, 1));
  nlohmann::json s = ToJson(timing.student);
  s["detections_per_frame"] = timing.student_detections_per_frame;
  return nlohmann::json{
      {"settings", settings}, {"student", s}, {"teacher", ToJson(timing.teacher)}, {"speedup_median", timing.speedup_median()}};
}

// What privacy masking costs per frame on these frames (issue 27), one thread: a polygon
// covering a fifth of the frame, and face redaction (the stock Haar cascade) filled or blurred.
// With `student_sees: whole` (the default) it is paid per uploaded frame only; with `masked`,
// per detected frame, on top of the student.
StatusOr<nlohmann::json> TimeRedaction(const std::vector<cv::Mat>& frames) {
  PrivacyOptions fifth;
  fifth.masks.push_back(PrivacyMask{"fifth", FramePolygon{{{0, 0}, {0.5, 0}, {0.5, 0.4}, {0, 0.4}}}});
  PrivacyOptions faces_fill, faces_blur;
  faces_fill.faces.enabled = faces_blur.faces.enabled = true;
  faces_blur.faces.redact = Redaction::kBlur;
  nlohmann::json out;
  for (const auto& [name, options] : {std::pair<const char*, const PrivacyOptions*>{"mask_fifth", &fifth},
                                      {"faces_fill", &faces_fill}, {"faces_blur", &faces_blur}}) {
    SD_ASSIGN_OR_RETURN(auto filter, PrivacyFilter::Create(*options));
    std::vector<double> ms;
    int64_t faces = 0;
    for (const cv::Mat& frame : frames) {
      cv::Mat copy = frame.clone();  // the edge masks a copy too (EdgeAgent::EncodeFrame)
      const auto t0 = SteadyClock::now();
      SD_ASSIGN_OR_RETURN(const PrivacyApplied applied, filter->Apply(&copy));
      ms.push_back(MsSince(t0));
      faces += applied.faces_found;
    }
    out[name] = ToJson(DistributionOf(std::move(ms)));
    out[name]["faces_per_frame"] = static_cast<double>(faces) / frames.size();
  }
  return out;
}

// The edge config for a measuring run: the file at full speed, once, into `dir`, with a
// server that refuses connections (the uplink keeps retrying, as on a cut link).
StatusOr<YAML::Node> MeasuringEdgeConfig(const std::string& edge_config, const std::string& dir,
                                         const std::string& weights, int64_t end_frame, int threads) {
  SD_ASSIGN_OR_RETURN(YAML::Node base, LoadYamlFile(edge_config));
  YAML::Node run(YAML::NodeType::Map);
  run["server"] = "127.0.0.1:1";
  run["source"]["loop"] = false;
  run["source"]["realtime"] = false;
  run["source"]["end_frame"] = end_frame;
  run["init_weights"] = weights;
  run["threads"] = threads;
  run["detections"]["path"] = dir + "/detections.jsonl";
  run["detections"]["annotated_dir"] = "";
  run["state_dir"] = dir + "/state";
  run["spool"]["dir"] = dir + "/spool";
  run["summary_path"] = "";
  run["linger_s"] = 0;
  return MergeYaml(base, run);
}

Status WriteYaml(const YAML::Node& node, const std::string& path) {
  std::ofstream out(path);
  out << node << "\n";
  return out ? Status::Ok() : Status::Internal(path + ": cannot write");
}

// EdgeAgent itself over `frames` frames at `threads` threads: frames per second.
StatusOr<double> MeasurePath(const SpeedOptions& options, const std::string& weights, int64_t end_frame, int threads,
                             int64_t* detected) {
  const std::string dir = options.work_dir + "/path-t" + std::to_string(threads);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string config_path = dir + "/edge.yaml";
  SD_ASSIGN_OR_RETURN(YAML::Node edge_yaml, MeasuringEdgeConfig(options.edge_config, dir, weights, end_frame, threads));
  SD_RETURN_IF_ERROR(WriteYaml(edge_yaml, config_path));
  SD_ASSIGN_OR_RETURN(EdgeConfig config, LoadEdgeConfig(config_path));
  SD_ASSIGN_OR_RETURN(auto agent, EdgeAgent::Create(config));
  // The uplink warns about the refused link on every retry; that is expected here.
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);
  const auto t0 = SteadyClock::now();
  const Status ran = agent->Run();
  spdlog::set_level(level);
  SD_RETURN_IF_ERROR(ran);
  const double seconds = MsSince(t0) / 1000;
  *detected = agent->stats().detected;
  return *detected / seconds;
}

struct ProcessRun {
  double wall_s = 0;
  double max_rss_mb = 0;
  int exit_code = -1;
};

StatusOr<ProcessRun> RunProcess(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const auto t0 = SteadyClock::now();
  const int spawned = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return Status::Internal(argv[0] + ": cannot start: " + std::strerror(spawned));
  int wstatus = 0;
  struct rusage usage {};
  if (wait4(pid, &wstatus, 0, &usage) != pid) return Status::Internal(argv[0] + ": wait failed");
  ProcessRun run;
  run.wall_s = MsSince(t0) / 1000;
  run.max_rss_mb = usage.ru_maxrss / 1024.0;  // kB on Linux
  run.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  return run;
}

// The daemon as a user starts it: one frame (start-up: process start to its first frame
// done and a clean exit) and path_frames frames (peak resident memory).
StatusOr<nlohmann::json> MeasureProcess(const SpeedOptions& options, const std::string& weights, int64_t start_frame) {
  nlohmann::json result;
  for (auto [name, frames] : {std::pair<const char*, int64_t>{"one_frame", 1}, {"path", options.path_frames}}) {
    const std::string dir = options.work_dir + "/process-" + name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string config_path = dir + "/edge.yaml";
    SD_ASSIGN_OR_RETURN(YAML::Node edge_yaml,
                        MeasuringEdgeConfig(options.edge_config, dir, weights, start_frame + frames, 1));
    SD_RETURN_IF_ERROR(WriteYaml(edge_yaml, config_path));
    SD_ASSIGN_OR_RETURN(ProcessRun run, RunProcess({options.edge_binary, "--config", config_path, "--fast",
                                                    "--log-level", "warn"},
                                                   dir + "/edge.log"));
    if (run.exit_code != 0)
      return Status::Internal(options.edge_binary + " exited with " + std::to_string(run.exit_code) + " (log: " + dir +
                              "/edge.log)");
    result[name] = {{"frames", frames}, {"wall_s", run.wall_s}, {"max_rss_mb", run.max_rss_mb}};
  }
  result["startup_s"] = result["one_frame"]["wall_s"];
  result["max_rss_mb"] = result["path"]["max_rss_mb"];
  return result;
}

}  // namespace

StatusOr<nlohmann::json> MeasureSpeed(const SpeedOptions& options) {
  SD_ASSIGN_OR_RETURN(EdgeConfig edge, LoadEdgeConfig(options.edge_config));
  SD_ASSIGN_OR_RETURN(ServerConfig server, LoadServerConfig(options.server_config));
  SD_ASSIGN_OR_RETURN(auto teacher, CreateTeacher(server.teacher));
  SD_ASSIGN_OR_RETURN(auto model, LoadStudent(options, edge.student));
  SD_ASSIGN_OR_RETURN(auto student, model->MakeDetector(edge.inference));
  std::filesystem::create_directories(options.work_dir);
  // EdgeAgent and the edge process read init_weights as a plain checkpoint.
  const std::string weights = options.work_dir + "/student.sdw";
  SD_RETURN_IF_ERROR(model->SaveToFile(weights));

  FrameSourceOptions source = edge.source;
  source.loop = true;  // a short video still yields options.frames frames
  const auto read_start = SteadyClock::now();
  SD_ASSIGN_OR_RETURN(std::vector<cv::Mat> frames, ReadFrames(source, options.frames));
  const double read_ms = MsSince(read_start) / frames.size();
  nlohmann::json result;
  result["video"] = edge.source.uri;
  result["frame_size"] = std::to_string(frames[0].cols) + "x" + std::to_string(frames[0].rows);
  result["student"] = model->architecture().Fingerprint();
  result["weights"] = options.weights.empty() ? "random (seed 1)" : options.weights;
  result["teacher"] = teacher->Fingerprint();
  result["read_ms"] = read_ms;
  SD_ASSIGN_OR_RETURN(result["one_thread"], TimeDetectors(*student, *teacher, frames));
  SD_ASSIGN_OR_RETURN(result["redaction"], TimeRedaction(frames));

  const int64_t end_frame = edge.source.start_frame + options.path_frames;
  for (int threads : {1, 2}) {
    int64_t detected = 0;
    SD_ASSIGN_OR_RETURN(double fps, MeasurePath(options, weights, end_frame, threads, &detected));
    result["edge_path"]["threads_" + std::to_string(threads)] = {{"fps", fps}, {"frames", detected}};
  }
  if (!options.edge_binary.empty()) {
    SD_ASSIGN_OR_RETURN(result["edge_process"], MeasureProcess(options, weights, edge.source.start_frame));
  }
  return result;
}

std::string SpeedMarkdown(const nlohmann::json& r) {
  const nlohmann::json& one = r["one_thread"];
  char line[512];
  std::ostringstream md;
  md << "# Edge speed\n\n";
  md << "- video: " << r["video"].get<std::string>() << " (" << r["frame_size"].get<std::string>() << ")\n";
  md << "- student: " << r["student"].get<std::string>() << ", weights " << r["weights"].get<std::string>() << "\n";
  md << "- teacher: " << r["teacher"].get<std::string>() << "\n";
  const nlohmann::json& s = one["settings"];
  md << "- processor: " << s["cpu_model"].get<std::string>() << "\n";
  md << "- threads: torch intra-op " << s["torch_intra_op_threads"] << ", inter-op " << s["torch_inter_op_threads"]
     << ", OpenCV " << s["opencv_threads"] << ", hardware " << s["hardware_threads"]
     << "; OMP_NUM_THREADS=" << s["OMP_NUM_THREADS"].get<std::string>()
     << ", OMP_WAIT_POLICY=" << s["OMP_WAIT_POLICY"].get<std::string>() << "\n\n";
  md << "| one thread, same frames, alternating | median ms | p95 ms | max ms | mean ms |\n|---|---|---|---|---|\n";
  for (const char* who : {"student", "teacher"}) {
    const nlohmann::json& d = one[who];
    std::snprintf(line, sizeof(line), "| %s (%d frames) | %.2f | %.2f | %.2f | %.2f |\n", who, d["frames"].get<int>(),
                  d["median_ms"].get<double>(), d["p95_ms"].get<double>(), d["max_ms"].get<double>(),
                  d["mean_ms"].get<double>());
    md << line;
  }
  std::snprintf(line, sizeof(line), "\nStudent speed-up over the teacher (medians): **%.1fx**. Decoding a frame: %.2f ms.\n\n",
                one["speedup_median"].get<double>(), r["read_ms"].get<double>());
  md << line;
  md << "| privacy masking of one frame, one thread (a copy, as the edge masks) | median ms | p95 ms | faces per frame |\n"
        "|---|---|---|---|\n";
  for (const char* kind : {"mask_fifth", "faces_fill", "faces_blur"}) {
    const nlohmann::json& d = r["redaction"][kind];
    std::snprintf(line, sizeof(line), "| %s | %.2f | %.2f | %.2f |\n", kind, d["median_ms"].get<double>(),
                  d["p95_ms"].get<double>(), d["faces_per_frame"].get<double>());
    md << line;
  }
  md << "\n";
  md << "| edge's whole per-frame path (read, detect, emit, sample) | frames/s |\n|---|---|\n";
  for (const auto& [threads, figures] : r["edge_path"].items()) {
    std::snprintf(line, sizeof(line), "| %s (%lld frames) | %.1f |\n", threads.c_str(),
                  static_cast<long long>(figures["frames"].get<int64_t>()), figures["fps"].get<double>());
    md << line;
  }
  if (r.contains("edge_process")) {
    const nlohmann::json& p = r["edge_process"];
    std::snprintf(line, sizeof(line),
                  "\nstreamdistill-edge as a process: start-up to its first frame and exit %.2f s; peak resident "
                  "memory %.0f MB over %lld frames.\n",
                  p["startup_s"].get<double>(), p["max_rss_mb"].get<double>(),
                  static_cast<long long>(p["path"]["frames"].get<int64_t>()));
    md << line;
  }
  return md.str();
}

namespace {

// streamdistill-edge next to this binary, for the process figures.
std::string EdgeBinaryBesideThis() {
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  const auto edge = self.parent_path() / "streamdistill-edge";
  return std::filesystem::exists(edge) ? edge.string() : "";
}

}  // namespace

int RunSpeedBench(SpeedOptions options, const std::string& out) {
  std::filesystem::create_directories(out);
  options.work_dir = out + "/work";
  options.edge_binary = EdgeBinaryBesideThis();
  std::printf("speed     %d frames, student and teacher alternating at one thread; edge path %d frames\n",
              options.frames, options.path_frames);
  auto result = MeasureSpeed(options);
  if (!result.ok()) {
    std::fprintf(stderr, "streamdistill-bench: error: %s\n", result.status().ToString().c_str());
    return 1;
  }
  const std::string markdown = SpeedMarkdown(*result);
  std::ofstream(out + "/speed.json") << result->dump(2) << "\n";
  std::ofstream(out + "/speed.md") << markdown;
  std::printf("%s\n", markdown.c_str());
  const nlohmann::json& one = (*result)["one_thread"];
  nlohmann::json summary = {{"student_median_ms", one["student"]["median_ms"]},
                            {"teacher_median_ms", one["teacher"]["median_ms"]},
                            {"speedup_median", one["speedup_median"]},
                            {"edge_fps_1_thread", (*result)["edge_path"]["threads_1"]["fps"]},
                            {"edge_fps_2_threads", (*result)["edge_path"]["threads_2"]["fps"]},
                            {"mask_fifth_median_ms", (*result)["redaction"]["mask_fifth"]["median_ms"]},
                            {"faces_fill_median_ms", (*result)["redaction"]["faces_fill"]["median_ms"]},
                            {"json", out + "/speed.json"}};
  if (result->contains("edge_process")) {
    summary["edge_startup_s"] = (*result)["edge_process"]["startup_s"];
    summary["edge_max_rss_mb"] = (*result)["edge_process"]["max_rss_mb"];
  }
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

}  // namespace sd
