// One run of simulated cameras against one fresh streamdistill-server: each camera is an
// EdgeAgent (the edge daemon's own sampler, spool, uplink, update decoding and hot swap) fed
// by a CameraViewSource, with its own device id, token and state directory. The server is a
// child process on a config derived from a base server yaml; its CPU and memory are sampled
// during the run. Every camera's deployed student is scored on its held-out frames at the
// start and whenever it deploys a new version.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "edge/edge_config.h"
#include "fleet/fleet_config.h"
#include "fleet/holdout.h"

namespace sd {

struct FleetRunOptions {
  std::vector<CameraView> cameras;
  std::vector<HoldoutFrames> holdouts;  // one per camera
  double seconds = 600;
  double time_scale = 1;
  double usage_every_s = 2;
  std::string server_binary;
  std::string server_config;  // the base yaml: its devices, storage_dir and listen are replaced
  std::string edge_config;    // the base yaml of every camera
  std::map<std::string, std::vector<std::string>> groups;  // the server's, replacing the base yaml's
  bool auto_groups = false;  // the server groups the cameras itself (grouping.mode auto); no `groups` then
  std::string budget_mode;   // every camera's budget.mode (adaptive | fixed); "": as the edge yaml says
  // Emptied first, then holds server.yaml, server.log, storage/ and cameras/<device>/.
  std::string dir;
};

struct CameraResult {
  std::string device;
  double first_update_s = -1;  // from its first frame to its first deployed version; -1: none came
  int64_t updates = 0;
  int64_t frames_sent = 0, frames_acked = 0;
  double map50_initial = 0, map50_final = 0;
  double uplink_kbps = 0, downlink_kbps = 0;
  // Its group at the end ("" alone): as configured, or the server's last automatic decision.
  std::string group;
};

// A camera's deployed student scored on its held-out frames at `t_s` (seconds since the
// cameras started).
struct Map50Point {
  std::string device;
  double t_s = 0;
  uint64_t version = 0;
  double map50 = 0;
};

struct UsageSample {
  double t_s = 0;
  double cpu_cores = 0;  // CPU seconds per second since the previous sample
  double rss_mb = 0;
};

// A camera's sampling budget at `t_s` (its edge's own figures, issue 26).
struct BudgetSample {
  std::string device;
  double t_s = 0;
  int64_t frame = 0;      // frames the camera had read by then: video time x fps from its start offset
  double per_minute = 0;  // what its sampler runs under
  std::string reason;     // why (BudgetReasonName)
};

// The labeller as the server's /metrics tells it at the end of the run (NaN: not read).
struct LabelerFigures {
  int workers = 1;                // labeler.workers
  double busy_seconds = std::numeric_limits<double>::quiet_NaN();  // streamdistill_server_labeler_busy_seconds_total
  double queue_wait_count = std::numeric_limits<double>::quiet_NaN();  // frames that waited
  // streamdistill_server_label_queue_wait_seconds, interpolated within its buckets
  // (HistogramQuantile, as Prometheus' histogram_quantile).
  double queue_wait_p50_s = std::numeric_limits<double>::quiet_NaN();
  double queue_wait_p95_s = std::numeric_limits<double>::quiet_NaN();
};

// The server's decoded-frame cache (training.decoded_cache_mb) as its /metrics tells it at the
// end of the run (NaN: not read).
struct DecodedCacheFigures {
  double bytes = std::numeric_limits<double>::quiet_NaN();  // streamdistill_server_decoded_cache_bytes
  double hits = std::numeric_limits<double>::quiet_NaN();
  double misses = std::numeric_limits<double>::quiet_NaN();
  double evictions = std::numeric_limits<double>::quiet_NaN();
};

struct FleetRun {
  double seconds = 0;  // as run
  std::string budget_mode;  // the cameras' (the edge's report)
  std::vector<CameraResult> cameras;
  std::vector<Map50Point> map50;  // per camera: the start, each deployed version, the end
  std::vector<UsageSample> server_usage;
  std::vector<BudgetSample> budgets;  // every camera, every usage_every_s
  double server_cpu_seconds = 0;  // during the run
  LabelerFigures labeler;
  DecodedCacheFigures decoded_cache;
};

// Device id -> group of the server log's last "grouping: units now: " line (the server's
// automatic grouping, server/server_core.h); devices alone and logs without one: not listed.
std::map<std::string, std::string> GroupsFromServerLog(const std::string& log_text);

StatusOr<FleetRun> RunFleet(const FleetRunOptions& options, HoldoutScorer* scorer);

// The camera's edge config: the base yaml with the camera's device, token, server port and
// state directory, and budget.mode `budget_mode` unless it is empty; detections go nowhere
// (the fleet scores models, not detection logs).
StatusOr<EdgeConfig> CameraEdgeConfig(const std::string& base_path, const CameraView& view, const std::string& token,
                                      int port, const std::string& state_dir, const std::string& budget_mode = "");

}  // namespace sd
