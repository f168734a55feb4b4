// streamdistill-fleet: N simulated cameras in one process, each a real client of the protocol
// built from the edge daemon's code, against a streamdistill-server it starts itself; then one
// of the cameras alone on a fresh server for the same time. Writes fleet.csv, fleet.md,
// fleet.png, map50.csv, budget.csv and server_usage.csv to --out and ends with one JSON line
// on stdout. How to run and what each figure means: docs/fleet.md.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "common/base/env.h"
#include "edge/edge_config.h"
#include "fleet/fleet_config.h"
#include "fleet/fleet_report.h"
#include "fleet/fleet_run.h"
#include "fleet/holdout.h"
#include "server/server_config.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

struct CommandLine {
  std::string config_path;
  std::string out_dir = "out/fleet";
  int cameras = 0;  // 0: as configured
  double seconds = 0;
  double time_scale = 0;
  int detect_every = 0;  // 0: as configured
  bool no_lone = false;
  bool shared = false;     // one group of every camera
  bool no_groups = false;  // the config's groups ignored
  bool auto_groups = false;  // the server groups the cameras itself (grouping.mode auto)
  std::string budget_mode;    // every camera's budget.mode; "": as the edge config says
  std::string server_config;  // replaces the config's server_config
  std::string server_binary;
};

int Fail(const Status& status, int code) {
  std::fprintf(stderr, "streamdistill-fleet: error: %s\n", status.message().c_str());
  return code;
}

std::string DefaultServerBinary() {
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  return (error ? std::filesystem::path(".") : self.parent_path()).append("streamdistill-server").string();
}

// Both daemons' configs must describe the same student, or the server refuses every camera.
Status CheckSameStudent(const FleetConfig& fleet, const ServerConfig& server, const EdgeConfig& edge) {
  if (server.student.Fingerprint() == edge.student.Fingerprint()) return Status::Ok();
  return Status::InvalidArgument(fleet.server_config + " trains '" + server.student.Fingerprint() + "' but " +
                                 fleet.edge_config + " serves '" + edge.student.Fingerprint() + "'");
}

int Run(const CommandLine& cli) {
  auto config = LoadFleetConfig(cli.config_path);
  if (!config.ok()) return Fail(config.status(), 2);
  if (cli.seconds > 0) config->seconds = cli.seconds;
  if (cli.time_scale > 0) config->time_scale = cli.time_scale;
  if (!cli.server_config.empty()) config->server_config = cli.server_config;
  std::vector<CameraView> cameras =
      ReplicateCameras(config->cameras, cli.cameras > 0 ? cli.cameras : static_cast<int>(config->cameras.size()));
  if (cli.detect_every > 0)
    for (CameraView& view : cameras) view.detect_every = cli.detect_every;
  auto server = LoadServerConfig(config->server_config);
  if (!server.ok()) return Fail(server.status(), 2);
  auto edge = LoadEdgeConfig(config->edge_config);
  if (!edge.ok()) return Fail(edge.status(), 2);
  if (Status same = CheckSameStudent(*config, *server, *edge); !same.ok()) return Fail(same, 2);
  if (Status made = Env::Default()->CreateDir(cli.out_dir); !made.ok()) return Fail(made, 1);

  HoldoutLibrary library(server->teacher, config->label_cache_dir, edge->student.input_width);
  std::vector<HoldoutFrames> holdouts;
  for (const CameraView& view : cameras) {
    auto frames = library.For(view);
    if (!frames.ok()) return Fail(frames.status(), 1);
    holdouts.push_back(*frames);
  }
  auto scorer = HoldoutScorer::Create(edge->student, edge->inference);
  if (!scorer.ok()) return Fail(scorer.status(), 1);

  FleetRunOptions options;
  options.cameras = cameras;
  options.holdouts = holdouts;
  options.seconds = config->seconds;
  options.time_scale = config->time_scale;
  options.usage_every_s = config->usage_every_s;
  options.server_binary = cli.server_binary.empty() ? DefaultServerBinary() : cli.server_binary;
  options.server_config = config->server_config;
  options.edge_config = config->edge_config;
  options.auto_groups = cli.auto_groups;
  options.budget_mode = cli.budget_mode;
  if (cli.auto_groups) {
    std::fprintf(stderr, "fleet: the server groups the cameras itself (grouping.mode auto)\n");
  } else if (cli.shared) {
    for (const CameraView& view : config->cameras) options.groups["fleet"].push_back(view.device);
    options.groups = GroupsOf(options.groups, cameras);
  } else if (!cli.no_groups) {
    options.groups = GroupsOf(config->groups, cameras);
  }
  for (const auto& [name, members] : options.groups)
    std::fprintf(stderr, "fleet: group %s shares a student among %zu cameras\n", name.c_str(), members.size());
  options.dir = cli.out_dir + "/fleet_run";
  std::fprintf(stderr, "fleet: %zu cameras for %.0f s at time scale %g (server log %s/server.log)\n", cameras.size(),
               options.seconds, options.time_scale, options.dir.c_str());
  auto fleet = RunFleet(options, scorer->get());
  if (!fleet.ok()) return Fail(fleet.status(), 1);

  std::optional<FleetRun> lone;
  if (!cli.no_lone) {
    const size_t position = static_cast<size_t>(config->lone_camera);
    options.cameras = {cameras[position]};
    options.holdouts = {holdouts[position]};
    options.groups.clear();
    options.auto_groups = false;
    options.dir = cli.out_dir + "/lone_run";
    std::fprintf(stderr, "lone: camera %s alone on a fresh server for %.0f s\n", cameras[position].device.c_str(),
                 options.seconds);
    auto run = RunFleet(options, scorer->get());
    if (!run.ok()) return Fail(run.status().WithContext("the lone run"), 1);
    lone = std::move(run).value();
  }

  const nlohmann::json summary = FleetSummary(*fleet, lone);
  if (Status written = WriteFleetTables(cli.out_dir, *fleet, summary); !written.ok()) return Fail(written, 1);
  if (Status plotted = PlotFleetMap50(cli.out_dir, *fleet); !plotted.ok())
    std::fprintf(stderr, "warning: no fleet.png: %s\n", plotted.message().c_str());
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-fleet: simulated cameras against one streamdistill-server, measured"};
  sd::CommandLine cli;
  std::string log_level = "warn";
  app.add_option("--config", cli.config_path, "fleet YAML (configs/fleet_8.yaml)")->required();
  app.add_option("--out", cli.out_dir, "output folder: reports, and the runs' servers, logs and camera state");
  app.add_option("--cameras", cli.cameras, "this many cameras, the configured ones taken in turn")
      ->check(CLI::PositiveNumber);
  app.add_option("--seconds", cli.seconds, "wall-clock length of the fleet run and of the lone run")
      ->check(CLI::PositiveNumber);
  app.add_option("--time-scale", cli.time_scale, "video seconds per wall second (1: real time)")
      ->check(CLI::PositiveNumber);
  app.add_option("--detect-every", cli.detect_every, "every camera runs its student on every k-th frame only")
      ->check(CLI::PositiveNumber);
  app.add_flag("--no-lone", cli.no_lone, "skip the lone camera's run after the fleet");
  app.add_flag("--shared", cli.shared, "every camera shares one student (one server group of all)");
  app.add_flag("--no-groups", cli.no_groups, "ignore the config's groups: a student per camera");
  auto* auto_groups = app.add_flag("--auto-groups", cli.auto_groups,
                                   "the server groups the cameras by how their students transfer (grouping.mode auto)");
  auto_groups->excludes(app.get_option("--shared"))->excludes(app.get_option("--no-groups"));
  app.add_option("--budget-mode", cli.budget_mode,
                 "every camera's sampling budget: adaptive or fixed (default: the edge config's budget.mode)")
      ->check(CLI::IsMember({"adaptive", "fixed"}));
  app.add_option("--server-config", cli.server_config, "base server YAML instead of the config's server_config");
  app.add_option("--server-binary", cli.server_binary, "streamdistill-server to start (default: next to this binary)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error (the cameras' and the generator's logs)");
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  // Logs on stderr: stdout carries the summary line only.
  spdlog::set_default_logger(spdlog::stderr_color_mt("fleet"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  return sd::Run(cli);
}
