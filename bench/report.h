// What streamdistill-bench writes: one CSV row per run as it finishes, and at the end a
// markdown table of means and spreads and a gnuplot plot of mAP50 against budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace sd {

struct RunRow {
  std::string strategy;  // or "all_frames" for the baseline
  int budget = 0;        // the baseline's budget is the stream's length
  uint64_t seed = 0;
  double map50 = 0, map50_95 = 0;
  int64_t queried = 0, uplink_bytes = 0;
  double sampler_us_per_frame = 0;  // not in the CSV: the table reports it per strategy
};

extern const char kStrategiesCsvHeader[];  // "strategy,budget,seed,map50,map50_95,queried,uplink_bytes"
std::string CsvLine(const RunRow& row);

struct Spread {
  double mean = 0, stddev = 0;  // sample standard deviation (0 for one value)
  int n = 0;
};
Spread SpreadOf(const std::vector<double>& values);

// Means and spreads per strategy and budget (rows in first-seen order), the all-frames
// baseline, mean queried frames and uplink kbit/s over the stream's duration, and the
// sampler's cost per frame.
std::string StrategiesMarkdown(const std::string& title, const std::vector<RunRow>& rows, double stream_seconds,
                               double student_ms);

// DIR/<stem>.dat and DIR/<stem>.gp, then gnuplot renders DIR/<stem>.png (mAP50 mean with
// standard-deviation bars against budget, one line per strategy, the baseline as a flat
// line). An error when gnuplot is missing or fails; the data and script stay for a later run.
Status PlotStrategies(const std::string& dir, const std::string& stem, const std::string& title,
                      const std::vector<RunRow>& rows);

struct UpdateRow {
  std::string encoding;
  double fraction = 1;  // sparse's f; 1 for the dense encodings
  uint64_t seed = 0;
  double map50 = 0, map50_95 = 0;
  int64_t downlink_bytes = 0;
  int updates = 0;
};

extern const char kUpdatesCsvHeader[];  // "encoding,fraction,seed,map50,downlink_bytes,updates,mean_update_bytes"
std::string CsvLine(const UpdateRow& row);

// Means and spreads per (encoding, fraction): mAP50, downlink bytes and kbit/s over the
// stream's duration, bytes per update.
std::string UpdatesMarkdown(const std::string& title, const std::vector<UpdateRow>& rows, double stream_seconds);

// DIR/updates.{dat,gp,png}: mean mAP50 (standard-deviation bars) against mean downlink kB,
// one point per (encoding, fraction). An error when gnuplot is missing or fails.
Status PlotUpdates(const std::string& dir, const std::string& title, const std::vector<UpdateRow>& rows);

}  // namespace sd
