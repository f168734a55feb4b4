// What streamdistill-bench writes: one CSV row per run as it finishes, and at the end a
// markdown table of means and spreads and a gnuplot plot of mAP50 against budget.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace sd {

struct RunRow {
  std::string strategy;  // or "all_frames" for the baseline
  int budget = 0;        // the baseline's budget is the stream's length
  uint64_t seed = 0;
  double map50 = 0, map50_95 = 0;
  int64_t queried = 0, uplink_bytes = 0;
  double sampler_us_per_frame = 0;  // not in the CSV: the table reports it per strategy
  // mAP50 on each named eval set, in the config's order (map50 and map50_95 are then the means
  // over the sets); empty with a single unnamed held-out set.
  std::vector<double> set_map50;
};

extern const char kStrategiesCsvHeader[];  // "strategy,budget,seed,map50,map50_95,queried,uplink_bytes"
// kStrategiesCsvHeader, then a map50_<name> column per named eval set.
std::string StrategiesCsvHeader(const std::vector<std::string>& eval_sets);
std::string CsvLine(const RunRow& row);
// A line written by CsvLine with `eval_sets` columns after the first seven; nullopt when it
// does not parse or has another number of columns.
std::optional<RunRow> ParseCsvLine(const std::string& line, size_t eval_sets);

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

// One table per named eval set: its mAP50, mean ± standard deviation over seeds, per strategy and
// budget.
std::string EvalSetsMarkdown(const std::vector<RunRow>& rows, const std::vector<std::string>& eval_sets);

// Each strategy or variant against `reference` at each budget, paired by seed (the same seed:
// the same training order and augmentation): the mean of the per-seed mAP50 differences, their
// standard deviation, and whether a paired t-test finds the mean non-zero at 5% (two-sided).
// Seeds that either side lacks are left out. Empty when no row is `reference`'s.
std::string PairedDifferencesMarkdown(const std::vector<RunRow>& rows, const std::string& reference);

// Two-sided 5% critical value of Student's t with `df` degrees of freedom (df >= 1); above 30
// degrees, 2.0 (a little stricter than the exact value, which falls to 1.96).
double TCritical5Percent(int df);
// "mean ± std (t value)" of paired differences, in bold when the paired t-test at 5% finds the
// mean non-zero; "mean (n 1)" for fewer than two.
std::string PairedDifferenceCell(const std::vector<double>& differences);

// The runs of one stream: a bench output folder's strategies.csv, named by the folder.
struct StreamRuns {
  std::string name;
  std::vector<RunRow> rows;
};
// DIR/strategies.csv, whatever eval-set columns its header names; an error when the file is
// missing, its header is not a strategies.csv header, or a row does not parse.
StatusOr<std::vector<RunRow>> ReadStrategiesCsv(const std::string& path);

// Each strategy and variant against `reference` across streams. A deterministic strategy sends
// the same frames in every seed of one stream, so its seeds replicate only the training; a
// stream replicates its choice of frames. Per stream: the mean over the seeds both ran of the
// paired mAP50 differences; then their mean ± std over streams, t-tested with the streams as
// the replicates (PairedDifferenceCell), and the mean frames sent. `reference`'s own mAP50 per
// stream heads the table.
std::string AcrossStreamsMarkdown(const std::vector<StreamRuns>& streams, const std::string& reference);

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
