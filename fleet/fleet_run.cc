#include "fleet/fleet_run.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "common/base/env.h"
#include "common/base/clock.h"
#include "common/config/yaml_overlay.h"
#include "edge/edge_agent.h"
#include "fleet/camera_view.h"
#include "fleet/server_metrics_text.h"
#include "fleet/server_process.h"
#include "server/server_config.h"

namespace sd {

namespace {

namespace fs = std::filesystem;

constexpr double kServerStartTimeoutS = 120;  // the teacher loads before the port opens

// The base server yaml with the fleet's devices (and only those), their groups, its own
// storage and /metrics on loopback.
StatusOr<std::string> FleetServerYaml(const std::string& base_path, const std::string& storage_dir,
                                      const std::map<std::string, std::string>& tokens,
                                      const std::map<std::string, std::vector<std::string>>& groups, bool auto_groups) {
  SD_ASSIGN_OR_RETURN(YAML::Node base, LoadYamlFile(base_path));
  // The run's devices and groups replace the base's; its other keys are laid over it.
  base.remove("devices");
  base.remove("groups");
  YAML::Node run(YAML::NodeType::Map);
  run["storage_dir"] = storage_dir;
  YAML::Node devices(YAML::NodeType::Map);
  for (const auto& [device, token] : tokens) devices[device]["token"] = token;
  run["devices"] = devices;
  for (const auto& [name, members] : groups)
    for (const std::string& member : members) run["groups"][name].push_back(member);
  if (auto_groups) run["grouping"]["mode"] = "auto";
  // Its /metrics on loopback (a free port: ServerProcess), read for the labeller's figures.
  run["http"]["enabled"] = true;
  run["http"]["bind"] = "127.0.0.1";
  const std::string text = EmitYaml(MergeYaml(base, run));
  // Checked here, so that a bad base config is one clear error rather than a server that exits.
  SD_RETURN_IF_ERROR(ParseServerConfig(text, base_path).status());
  return text;
}

std::string NewToken(std::mt19937_64& random) {
  char text[40];
  std::snprintf(text, sizeof(text), "fleet-%016llx", static_cast<unsigned long long>(random()));
  return text;
}

// Scores deployed versions on one background thread, in the order they were deployed.
class DeploymentScorer {
 public:
  DeploymentScorer(HoldoutScorer* scorer, const std::vector<HoldoutFrames>& holdouts)
      : scorer_(scorer), holdouts_(holdouts), thread_([this] { Loop(); }) {}
  ~DeploymentScorer() { Finish(); }

  void Submit(size_t camera, double t_s, std::shared_ptr<const ServedModel> served) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({camera, t_s, std::move(served)});
    cv_.notify_one();
  }
  // Scores what is queued and stops the thread.
  void Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finishing_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }
  // Valid after Finish(): (camera, t, version, mAP50) in deployment order, and the first error.
  const std::vector<std::tuple<size_t, double, uint64_t, double>>& scores() const { return scores_; }
  const Status& status() const { return status_; }

 private:
  struct Job {
    size_t camera;
    double t_s;
    std::shared_ptr<const ServedModel> served;
  };
  void Loop() {
    while (true) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return finishing_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      StatusOr<double> map50 = scorer_->Map50(job.served->flat, *holdouts_[job.camera]);
      if (!map50.ok()) {
        if (status_.ok()) status_ = map50.status();
        continue;
      }
      scores_.emplace_back(job.camera, job.t_s, job.served->version, *map50);
    }
  }

  HoldoutScorer* scorer_;
  const std::vector<HoldoutFrames>& holdouts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool finishing_ = false;  // guarded by mu_
  std::vector<std::tuple<size_t, double, uint64_t, double>> scores_;  // the thread's until Finish
  Status status_;                                                    // the thread's until Finish
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace

StatusOr<EdgeConfig> CameraEdgeConfig(const std::string& base_path, const CameraView& view, const std::string& token,
                                      int port, const std::string& state_dir, const std::string& budget_mode) {
  SD_ASSIGN_OR_RETURN(YAML::Node base, LoadYamlFile(base_path));
  // The camera's source and outputs replace the base's (the spool goes under state_dir); its
  // other keys are laid over it.
  for (const char* key : {"source", "detections", "spool"}) base.remove(key);
  YAML::Node camera(YAML::NodeType::Map);
  camera["device_id"] = view.device;
  camera["token"] = token;
  camera["server"] = "127.0.0.1:" + std::to_string(port);
  // The camera's frames come from its CameraViewSource; the uri only names them.
  camera["source"]["uri"] = view.uri;
  camera["detect_every"] = view.detect_every;
  camera["detections"]["path"] = "/dev/null";
  camera["state_dir"] = state_dir;
  camera["linger_s"] = 0;
  camera["summary_path"] = "";
  if (!budget_mode.empty()) camera["budget"]["mode"] = budget_mode;
  return ParseEdgeConfig(EmitYaml(MergeYaml(base, camera)), base_path + " for camera " + view.device);
}

StatusOr<FleetRun> RunFleet(const FleetRunOptions& options, HoldoutScorer* scorer) {
  std::error_code error;
  fs::remove_all(options.dir, error);
  if (error) return Status::IOError(options.dir + ": cannot empty: " + error.message());
  SD_RETURN_IF_ERROR(Env::Default()->CreateDir(options.dir + "/cameras"));

  std::random_device seed;
  std::mt19937_64 random(seed());
  std::map<std::string, std::string> tokens;
  for (const CameraView& view : options.cameras) tokens[view.device] = NewToken(random);
  if (tokens.size() != options.cameras.size()) return Status::InvalidArgument("two cameras have the same device id");
  SD_ASSIGN_OR_RETURN(std::string server_yaml,
                      FleetServerYaml(options.server_config, options.dir + "/storage", tokens, options.groups,
                                                      options.auto_groups));
  const std::string server_yaml_path = options.dir + "/server.yaml";
  SD_RETURN_IF_ERROR(WriteFileDurably(Env::Default(), server_yaml_path, server_yaml));
  SD_ASSIGN_OR_RETURN(ServerConfig server_config, ParseServerConfig(server_yaml, server_yaml_path));
  SD_ASSIGN_OR_RETURN(auto server, ServerProcess::Start(options.server_binary, server_yaml_path,
                                                        options.dir + "/server.log", kServerStartTimeoutS));

  const size_t n = options.cameras.size();
  std::vector<std::unique_ptr<EdgeAgent>> agents;
  std::vector<CameraViewSource*> sources;  // owned by the agents
  for (const CameraView& view : options.cameras) {
    SD_ASSIGN_OR_RETURN(EdgeConfig config, CameraEdgeConfig(options.edge_config, view, tokens[view.device],
                                                            server->port(), options.dir + "/cameras/" + view.device,
                                                            options.budget_mode));
    SD_ASSIGN_OR_RETURN(auto source, CameraViewSource::Open(view, options.time_scale, Clock::Real()));
    sources.push_back(source.get());
    SD_ASSIGN_OR_RETURN(auto agent, EdgeAgent::Create(config, Clock::Real(), std::move(source)));
    agents.push_back(std::move(agent));
  }

  FleetRun run;
  run.cameras.resize(n);
  run.labeler.workers = server_config.labeler_workers;
  // Element i is written only by camera i's observer (its updates apply one at a time) and
  // read after the joins.
  std::vector<double> first_update_wall(n, 0);
  for (size_t i = 0; i < n; ++i) {
    run.cameras[i].device = options.cameras[i].device;
    SD_ASSIGN_OR_RETURN(run.cameras[i].map50_initial, scorer->Map50(agents[i]->serving()->flat, *options.holdouts[i]));
    run.map50.push_back({options.cameras[i].device, 0, 0, run.cameras[i].map50_initial});
  }

  const double start = SteadySeconds();
  DeploymentScorer deployments(scorer, options.holdouts);
  for (size_t i = 0; i < n; ++i) {
    agents[i]->SetUpdateObserver([&, i](const ModelUpdate&, const std::shared_ptr<const ServedModel>& served) {
      const double now = SteadySeconds();
      if (first_update_wall[i] == 0) first_update_wall[i] = now;
      deployments.Submit(i, now - start, served);
    });
  }
  SD_ASSIGN_OR_RETURN(ProcessUsage begin_usage, ReadProcessUsage(server->pid()));
  std::vector<Status> run_status(n);
  std::vector<std::thread> threads;  // no early return until they are joined
  for (size_t i = 0; i < n; ++i) threads.emplace_back([&, i] { run_status[i] = agents[i]->Run(); });
  ProcessUsage previous = begin_usage;
  double previous_t = 0;
  Status sampled;
  while (true) {
    const double t = SteadySeconds() - start;
    if (t >= options.seconds) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(options.usage_every_s, options.seconds - t)));
    const double now = SteadySeconds() - start;
    StatusOr<ProcessUsage> usage = ReadProcessUsage(server->pid());
    if (!usage.ok()) {
      sampled = usage.status().WithContext("the server stopped during the run");
      break;
    }
    run.server_usage.push_back({now, (usage->cpu_seconds - previous.cpu_seconds) / (now - previous_t), usage->rss_mb});
    run.server_cpu_seconds = usage->cpu_seconds - begin_usage.cpu_seconds;
    previous = *usage;
    previous_t = now;
    for (size_t i = 0; i < n; ++i) {
      const EdgeStats stats = agents[i]->stats();
      run.budgets.push_back(
          {options.cameras[i].device, now, stats.frames, stats.budget_per_minute, stats.budget_reason});
    }
  }
  run.seconds = SteadySeconds() - start;
  // The labeller's and the decoded-frame cache's figures while the cameras still run (a fresh
  // server: its totals are the run's).
  if (server->http_port() > 0) {
    StatusOr<std::string> metrics = FetchMetrics(server->http_port());
    if (metrics.ok()) {
      run.labeler.busy_seconds = MetricSample(*metrics, "streamdistill_server_labeler_busy_seconds_total");
      const auto waits = MetricHistogram(*metrics, "streamdistill_server_label_queue_wait_seconds");
      if (!waits.empty()) run.labeler.queue_wait_count = waits.back().count;
      run.labeler.queue_wait_p50_s = HistogramQuantile(0.5, waits);
      run.labeler.queue_wait_p95_s = HistogramQuantile(0.95, waits);
      run.decoded_cache.bytes = MetricSample(*metrics, "streamdistill_server_decoded_cache_bytes");
      run.decoded_cache.hits = MetricSample(*metrics, "streamdistill_server_decoded_cache_hits_total");
      run.decoded_cache.misses = MetricSample(*metrics, "streamdistill_server_decoded_cache_misses_total");
      run.decoded_cache.evictions = MetricSample(*metrics, "streamdistill_server_decoded_cache_evictions_total");
    } else {
      std::fprintf(stderr, "warning: no labeller or decoded-frame cache figures: %s\n",
                   metrics.status().message().c_str());
    }
  } else {
    std::fprintf(stderr,
                 "warning: no labeller or decoded-frame cache figures: the server serves no /metrics (http.enabled)\n");
  }
  for (auto& agent : agents) agent->Stop();
  for (std::thread& thread : threads) thread.join();
  const Status stopped = server->Stop();
  if (!stopped.ok()) std::fprintf(stderr, "warning: %s\n", stopped.message().c_str());
  SD_RETURN_IF_ERROR(sampled);
  for (size_t i = 0; i < n; ++i) {
    if (!run_status[i].ok()) return run_status[i].WithContext("camera " + options.cameras[i].device);
  }
  deployments.Finish();
  SD_RETURN_IF_ERROR(deployments.status());

  std::vector<double> latest_map50(n);
  for (size_t i = 0; i < n; ++i) latest_map50[i] = run.cameras[i].map50_initial;
  for (const auto& [camera, t_s, version, map50] : deployments.scores()) {
    run.map50.push_back({options.cameras[camera].device, t_s, version, map50});
    latest_map50[camera] = map50;
  }
  for (size_t i = 0; i < n; ++i) {
    CameraResult& r = run.cameras[i];
    const EdgeStats stats = agents[i]->stats();
    run.budget_mode = stats.budget_mode;
    // Versions are scored as they deploy, so the served one at the end is the last scored.
    r.map50_final = latest_map50[i];
    run.map50.push_back({r.device, run.seconds, stats.model_version, r.map50_final});
    r.updates = stats.uplink.updates_applied;
    r.frames_sent = stats.uplink.frames_sent;
    r.frames_acked = stats.uplink.frames_acked;
    r.uplink_kbps = stats.uplink_kbps();
    r.downlink_kbps = stats.downlink_kbps();
    if (first_update_wall[i] > 0) r.first_update_s = first_update_wall[i] - sources[i]->first_frame_time();
  }
  std::map<std::string, std::string> group_of;
  if (options.auto_groups) {
    SD_ASSIGN_OR_RETURN(std::string log, Env::Default()->ReadFile(options.dir + "/server.log"));
    group_of = GroupsFromServerLog(log);
  } else {
    for (const auto& [name, members] : options.groups)
      for (const std::string& member : members) group_of[member] = name;
  }
  for (CameraResult& r : run.cameras)
    if (auto it = group_of.find(r.device); it != group_of.end()) r.group = it->second;
  return run;
}

std::map<std::string, std::string> GroupsFromServerLog(const std::string& log_text) {
  static const std::string kMarker = "grouping: units now: ";
  std::map<std::string, std::string> group_of;
  const size_t at = log_text.rfind(kMarker);
  if (at == std::string::npos) return group_of;
  const size_t begin = at + kMarker.size();
  std::istringstream units(log_text.substr(begin, log_text.find('\n', begin) - begin));
  std::string unit;
  while (units >> unit) {  // "auto1=cam1+cam2", or a device alone
    const size_t equals = unit.find('=');
    if (equals == std::string::npos) continue;
    std::istringstream members(unit.substr(equals + 1));
    std::string member;
    while (std::getline(members, member, '+')) group_of[member] = unit.substr(0, equals);
  }
  return group_of;
}

}  // namespace sd
