#include "fleet/fleet_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/base/env.h"

namespace sd {

namespace {

std::string Fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  return text;
}

// Empty for a camera that never got an update.
std::string FirstUpdate(const CameraResult& c) { return c.first_update_s < 0 ? "" : Fixed(c.first_update_s, 1); }

Status Write(const std::string& path, const std::string& text) {
  return WriteFileDurably(Env::Default(), path, text);
}

nlohmann::json Rounded(double value, int decimals) {
  if (!std::isfinite(value)) return nlohmann::json();  // null: not measured
  return std::round(value * std::pow(10, decimals)) / std::pow(10, decimals);
}

}  // namespace

nlohmann::json FleetSummary(const FleetRun& fleet, const std::optional<FleetRun>& lone) {
  const auto& cameras = fleet.cameras;
  double first_update_max = 0, updates_sum = 0, map50_sum = 0, map50_min = 1;
  int64_t updates_min = INT64_MAX, without_update = 0;
  for (const CameraResult& c : cameras) {
    if (c.first_update_s < 0) ++without_update;
    first_update_max = std::max(first_update_max, c.first_update_s);
    updates_min = std::min(updates_min, c.updates);
    updates_sum += c.updates;
    map50_sum += c.map50_final;
    map50_min = std::min(map50_min, c.map50_final);
  }
  int64_t sent = 0, acked = 0;
  for (const CameraResult& c : cameras) {
    sent += c.frames_sent;
    acked += c.frames_acked;
  }
  const LabelerFigures& labeler = fleet.labeler;
  double rss_max = 0, cpu_max = 0;
  for (const UsageSample& s : fleet.server_usage) {
    rss_max = std::max(rss_max, s.rss_mb);
    cpu_max = std::max(cpu_max, s.cpu_cores);
  }
  const double n = static_cast<double>(cameras.size());
  nlohmann::json summary = {
      {"cameras", cameras.size()},
      {"seconds", Rounded(fleet.seconds, 1)},
      // null when some camera never got an update: no bound holds then
      {"first_update_s_max", without_update > 0 ? nlohmann::json() : Rounded(first_update_max, 1)},
      {"cameras_without_update", without_update},
      {"updates_min", updates_min},
      {"updates_mean", Rounded(updates_sum / n, 2)},
      {"map50_final_mean", Rounded(map50_sum / n, 3)},
      {"map50_final_min", Rounded(map50_min, 3)},
      {"lone_map50_final", lone ? Rounded(lone->cameras.at(0).map50_final, 3) : nlohmann::json()},
      {"server_rss_mb_max", Rounded(rss_max, 1)},
      {"server_cpu_mean", Rounded(fleet.seconds > 0 ? fleet.server_cpu_seconds / fleet.seconds : 0, 2)},
      {"server_cpu_max", Rounded(cpu_max, 2)},
      {"budget_mode", fleet.budget_mode},
      {"frames_sent_total", sent},
      {"frames_acked_total", acked},
      {"frames_sent_mean", Rounded(static_cast<double>(sent) / n, 1)},
      // The labellers' busy seconds over the run's labeller seconds (run seconds x workers).
      {"labeler_busy_share",
       Rounded(labeler.busy_seconds / (fleet.seconds * std::max(1, labeler.workers)), 3)},
      {"label_queue_waits", Rounded(labeler.queue_wait_count, 0)},
      // Interpolated within the histogram's buckets, as Prometheus' histogram_quantile.
      {"label_queue_wait_p50_s", Rounded(labeler.queue_wait_p50_s, 3)},
      {"label_queue_wait_p95_s", Rounded(labeler.queue_wait_p95_s, 3)},
      {"decoded_cache_mb", Rounded(fleet.decoded_cache.bytes / (1 << 20), 1)},
      {"decoded_cache_hits", Rounded(fleet.decoded_cache.hits, 0)},
      {"decoded_cache_misses", Rounded(fleet.decoded_cache.misses, 0)},
      {"decoded_cache_evictions", Rounded(fleet.decoded_cache.evictions, 0)}};
  if (lone) {
    summary["lone_device"] = lone->cameras.at(0).device;
    summary["lone_frames_sent"] = lone->cameras.at(0).frames_sent;
  }
  return summary;
}

Status WriteFleetTables(const std::string& out_dir, const FleetRun& fleet, const nlohmann::json& summary) {
  std::ostringstream csv;
  csv << "device,first_update_s,updates,frames_sent,frames_acked,map50_initial,map50_final,uplink_kbps,downlink_kbps,"
         "group\n";
  std::ostringstream md;
  md << "# Fleet run\n\n"
     << "| device | first update (s) | updates | frames sent | frames acked | mAP50 initial | mAP50 final | "
        "uplink kbit/s | downlink kbit/s | group |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const CameraResult& c : fleet.cameras) {
    csv << c.device << "," << FirstUpdate(c) << "," << c.updates << "," << c.frames_sent << "," << c.frames_acked
        << "," << Fixed(c.map50_initial, 3) << "," << Fixed(c.map50_final, 3) << "," << Fixed(c.uplink_kbps, 1) << ","
        << Fixed(c.downlink_kbps, 1) << "," << c.group << "\n";
    md << "| " << c.device << " | " << (c.first_update_s < 0 ? "none" : FirstUpdate(c)) << " | " << c.updates
       << " | " << c.frames_sent << " | " << c.frames_acked << " | " << Fixed(c.map50_initial, 3) << " | "
       << Fixed(c.map50_final, 3) << " | " << Fixed(c.uplink_kbps, 1) << " | " << Fixed(c.downlink_kbps, 1)
       << " | " << (c.group.empty() ? "–" : c.group) << " |\n";
  }
  md << "\n## Summary\n\n| figure | value |\n|---|---|\n";
  for (const auto& [key, value] : summary.items()) md << "| " << key << " | " << value.dump() << " |\n";
  md << "\n![mAP50 of every camera over time](fleet.png)\n";

  std::ostringstream map50;
  map50 << "device,t_s,version,map50\n";
  for (const Map50Point& p : fleet.map50)
    map50 << p.device << "," << Fixed(p.t_s, 1) << "," << p.version << "," << Fixed(p.map50, 4) << "\n";
  std::ostringstream budget;
  budget << "device,t_s,frame,budget_per_minute,reason\n";
  for (const BudgetSample& b : fleet.budgets)
    budget << b.device << "," << Fixed(b.t_s, 1) << "," << b.frame << "," << Fixed(b.per_minute, 2) << ","
           << b.reason << "\n";
  std::ostringstream usage;
  usage << "t_s,cpu_cores,rss_mb\n";
  for (const UsageSample& s : fleet.server_usage)
    usage << Fixed(s.t_s, 1) << "," << Fixed(s.cpu_cores, 3) << "," << Fixed(s.rss_mb, 1) << "\n";

  SD_RETURN_IF_ERROR(Write(out_dir + "/fleet.csv", csv.str()));
  SD_RETURN_IF_ERROR(Write(out_dir + "/fleet.md", md.str()));
  SD_RETURN_IF_ERROR(Write(out_dir + "/map50.csv", map50.str()));
  SD_RETURN_IF_ERROR(Write(out_dir + "/budget.csv", budget.str()));
  return Write(out_dir + "/server_usage.csv", usage.str());
}

Status PlotFleetMap50(const std::string& out_dir, const FleetRun& fleet) {
  // One data block per camera (gnuplot's `index`), each a step line from the start to the end.
  std::ostringstream data;
  for (const CameraResult& c : fleet.cameras) {
    data << "\"" << c.device << "\"\n";
    for (const Map50Point& p : fleet.map50)
      if (p.device == c.device) data << Fixed(p.t_s, 1) << " " << Fixed(p.map50, 4) << "\n";
    data << "\n\n";
  }
  SD_RETURN_IF_ERROR(Write(out_dir + "/fleet_map50.dat", data.str()));
  std::ostringstream script;
  script << "set terminal png size 1000,600\n"
         << "set output '" << out_dir << "/fleet.png'\n"
         << "set title 'mAP50 of each camera on its held-out frames'\n"
         << "set xlabel 'seconds since the cameras started'\n"
         << "set ylabel 'mAP50'\n"
         << "set yrange [0:1]\n"
         << "set key outside right\n"
         << "plot for [i=0:" << fleet.cameras.size() - 1 << "] '" << out_dir
         << "/fleet_map50.dat' index i using 1:2 with steps lw 2 title columnheader(1)\n";
  SD_RETURN_IF_ERROR(Write(out_dir + "/fleet.gp", script.str()));
  // Its messages go to stderr: stdout carries the summary line only.
  const std::string command = "gnuplot '" + out_dir + "/fleet.gp' 1>&2";
  const int code = std::system(command.c_str());
  if (code != 0)
    return Status::Unavailable("gnuplot failed (exit " + std::to_string(code) + "); install gnuplot-nox (scripts/setup.sh) "
                               "and run: gnuplot " + out_dir + "/fleet.gp");
  return Status::Ok();
}

}  // namespace sd
