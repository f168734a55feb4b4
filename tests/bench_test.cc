// streamdistill-bench: the per-run sampler options, the replay's sampling on crafted streams,
// the report, and the binary end to end on a tiny synthetic stream.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include "bench/bench_config.h"
#include "bench/replay.h"
#include "bench/report.h"
#include "bench/update_replay.h"
#include "bench/uplink_encodings.h"
#include "tests/run_binary.h"
#include "tests/scoped_temp_dir.h"

namespace sd {
namespace {

// A stream of n frames at 10 fps: frame i has one detection of score scores[i % size] and a
// one-hot embedding of dimension dims at position i % dims.
Stream CraftedStream(int n, const std::vector<float>& scores, int dims) {
  Stream stream;
  stream.fps = 10;
  for (int i = 0; i < n; ++i) {
    StreamFrame f;
    f.index = 1000 + i;
    f.time_s = i / 10.0;
    f.student.detections.push_back({Box{0, 0, 10, 10}, scores[i % scores.size()], 0});
    f.student.embedding.assign(dims, 0.0f);
    f.student.embedding[i % dims] = 1.0f;
    f.uplink_bytes = 100 + i;
    f.sample.boxes.push_back({Box{0, 0, 10, 10}, 1.0f, 0});
    stream.frames.push_back(std::move(f));
  }
  return stream;
}

TEST(BenchSamplerOptionsTest, BudgetSpreadOverTheStream) {
  SamplerOptions base;
  SamplerOptions u = RunSamplerOptions(base, SamplerStrategy::kUniform, 50, 3, 600, 60);
  EXPECT_EQ(u.strategy, SamplerStrategy::kUniform);
  EXPECT_EQ(u.budget_total, 50);
  EXPECT_DOUBLE_EQ(u.budget_per_minute, 50);
  EXPECT_EQ(u.uniform_every, 12);
  EXPECT_EQ(u.seed, 3u);
  SamplerOptions top = RunSamplerOptions(base, SamplerStrategy::kTopConfidence, 60, 1, 600, 60);
  EXPECT_NEAR(*top.percentile, 100 * (1 - kWishSlack * 0.1), 1e-9);
  SamplerOptions least = RunSamplerOptions(base, SamplerStrategy::kLeastConfidence, 60, 1, 600, 60);
  EXPECT_NEAR(*least.percentile, 100 * kWishSlack * 0.1, 1e-9);
  SamplerOptions random = RunSamplerOptions(base, SamplerStrategy::kRandom, 60, 1, 600, 120);
  EXPECT_NEAR(random.uniform_probability, kWishSlack * 0.1, 1e-9);
  EXPECT_DOUBLE_EQ(random.budget_per_minute, 30);
  SamplerOptions ams = RunSamplerOptions(base, SamplerStrategy::kAmsAdaptive, 60, 1, 600, 60);
  EXPECT_DOUBLE_EQ(ams.ams_initial_rate, 1.0);
  EXPECT_LT(ams.ams_min_rate, ams.ams_initial_rate);
  EXPECT_GT(ams.ams_max_rate, ams.ams_initial_rate);
  for (const SamplerStrategy s : AllSamplerStrategies())
    EXPECT_TRUE(RunSamplerOptions(base, s, 200, 1, 600, 60).Validate().ok()) << SamplerStrategyName(s);
}

TEST(BenchSampleStreamTest, EveryStrategyStaysWithinItsBudgetAndCountsItsBytes) {
  const Stream stream = CraftedStream(600, {0.2f, 0.9f, 0.5f, 0.7f, 0.35f}, 40);
  SamplerOptions base;
  base.warmup_frames = 20;
  for (const SamplerStrategy strategy : AllSamplerStrategies()) {
    if (strategy == SamplerStrategy::kPacedConfidenceDiversity) continue;  // not in the benchmark's grid here
    const char* s = SamplerStrategyName(strategy);
    for (int budget : {25, 100}) {
      auto sampled = SampleStream(stream, RunSamplerOptions(base, strategy, budget, 1, 600, 60));
      ASSERT_TRUE(sampled.ok()) << s << ": " << sampled.status().message();
      EXPECT_LE(sampled->positions.size(), static_cast<size_t>(budget)) << s;
      // AMS lowers its rate while consecutive teacher labels agree, as they all do here.
      if (strategy != SamplerStrategy::kAmsAdaptive) {
        EXPECT_GE(sampled->positions.size(), static_cast<size_t>(budget / 2)) << s << " " << budget;
      }
      std::set<size_t> unique(sampled->positions.begin(), sampled->positions.end());
      EXPECT_EQ(unique.size(), sampled->positions.size()) << s << ": a frame sent twice";
      int64_t bytes = 0;
      for (size_t p : sampled->positions) {
        ASSERT_LT(p, stream.frames.size());
        bytes += stream.frames[p].uplink_bytes;
      }
      EXPECT_EQ(sampled->uplink_bytes, bytes) << s;
      EXPECT_GT(sampled->sampler_us_per_frame, 0) << s;
    }
  }
}

TEST(BenchSampleStreamTest, FirstNTakesTheHeadAndTopConfidenceTheHighScores) {
  const Stream stream = CraftedStream(300, {0.2f, 0.9f, 0.5f, 0.7f, 0.35f}, 16);
  SamplerOptions base;
  base.warmup_frames = 10;
  auto first = SampleStream(stream, RunSamplerOptions(base, SamplerStrategy::kFirstN, 20, 1, 300, 30));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->positions.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(first->positions[i], i);
  auto ams = SampleStream(stream, RunSamplerOptions(base, SamplerStrategy::kAmsAdaptive, 60, 1, 300, 30));
  ASSERT_TRUE(ams.ok());
  EXPECT_LT(ams->positions.size(), 45u) << "identical labels: AMS should slow down";
  auto top = SampleStream(stream, RunSamplerOptions(base, SamplerStrategy::kTopConfidence, 20, 1, 300, 30));
  ASSERT_TRUE(top.ok());
  ASSERT_FALSE(top->positions.empty());
  for (size_t p : top->positions) EXPECT_FLOAT_EQ(stream.frames[p].student.detections[0].score, 0.9f);
}

TEST(BenchReportTest, SpreadCsvAndMarkdown) {
  const Spread s = SpreadOf({0.5, 0.7, 0.9});
  EXPECT_NEAR(s.mean, 0.7, 1e-12);
  EXPECT_NEAR(s.stddev, 0.2, 1e-12);
  EXPECT_EQ(SpreadOf({0.4}).stddev, 0);
  RunRow row{"uniform", 25, 2, 0.61234, 0.3, 25, 123456, 0, {}};
  EXPECT_EQ(CsvLine(row), "uniform,25,2,0.6123,0.3000,25,123456");
  EXPECT_EQ(std::string(kStrategiesCsvHeader), "strategy,budget,seed,map50,map50_95,queried,uplink_bytes");
  std::vector<RunRow> rows = {row, {"uniform", 25, 1, 0.4, 0.2, 25, 100000, 0, {}}, {"all_frames", 600, 1, 0.9, 0.5, 600, 1, 0, {}}};
  const std::string md = StrategiesMarkdown("t", rows, 60, 6.0);
  EXPECT_NE(md.find("| uniform | 0.506 ± 0.150"), std::string::npos) << md;
  EXPECT_NE(md.find("All 600 frames (baseline): mAP50 0.900"), std::string::npos) << md;
  EXPECT_NE(md.find("25 fr, 15 kbit/s"), std::string::npos) << md;  // 111728 bytes * 8 / 60 s
}

TEST(BenchReportTest, EvalSetColumnsRoundTripAndTablesPerSet) {
  RunRow row{"uniform", 25, 2, 0.6, 0.3, 25, 1000, 0, {}};
  row.set_map50 = {0.5, 0.7};
  EXPECT_EQ(StrategiesCsvHeader({"day", "dusk"}), std::string(kStrategiesCsvHeader) + ",map50_day,map50_dusk");
  EXPECT_EQ(StrategiesCsvHeader({}), kStrategiesCsvHeader);
  EXPECT_EQ(CsvLine(row), "uniform,25,2,0.6000,0.3000,25,1000,0.5000,0.7000");
  auto parsed = ParseCsvLine(CsvLine(row), 2);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->strategy, "uniform");
  EXPECT_EQ(parsed->seed, 2u);
  EXPECT_EQ(parsed->set_map50, std::vector<double>({0.5, 0.7}));
  EXPECT_FALSE(ParseCsvLine(CsvLine(row), 3).has_value());
  EXPECT_TRUE(ParseCsvLine("uniform,25,2,0.6000,0.3000,25,1000", 0).has_value());
  RunRow other = row;
  other.seed = 3;
  other.set_map50 = {0.3, 0.9};
  const std::string md = EvalSetsMarkdown({row, other}, {"day", "dusk"});
  EXPECT_NE(md.find("mAP50 on `dusk`"), std::string::npos) << md;
  EXPECT_NE(md.find("| uniform | 0.400 ± 0.141 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| uniform | 0.800 ± 0.141 |"), std::string::npos) << md;
}

// Paired by seed: a steady small gain is significant, a large noisy one is not.
TEST(BenchReportTest, PairedDifferencesAgainstUniform) {
  EXPECT_NEAR(TCritical5Percent(4), 2.776, 1e-9);
  EXPECT_NEAR(TCritical5Percent(100), 2.0, 1e-9);
  std::vector<RunRow> rows;
  const double steady[] = {0.011, 0.009, 0.010, 0.012, 0.008};
  const double noisy[] = {0.2, -0.15, 0.1, -0.05, 0.12};
  for (int seed = 1; seed <= 5; ++seed) {
    const double base = 0.5 + 0.05 * seed;  // seeds differ far more than the gain
    rows.push_back({"uniform", 50, uint64_t(seed), base, 0, 50, 0, 0, {}});
    rows.push_back({"steady", 50, uint64_t(seed), base + steady[seed - 1], 0, 50, 0, 0, {}});
    rows.push_back({"noisy", 50, uint64_t(seed), base + noisy[seed - 1], 0, 50, 0, 0, {}});
  }
  rows.push_back({"lonely", 50, 1, 0.9, 0, 50, 0, 0, {}});
  const std::string md = PairedDifferencesMarkdown(rows, "uniform");
  EXPECT_NE(md.find("| steady | **+0.010 ± 0.002** (t 14.1) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| noisy | +0.044 ± 0.141 (t 0.7) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| lonely | +0.350 (n 1) |"), std::string::npos) << md;
  EXPECT_EQ(md.find("| uniform |"), std::string::npos) << md;
  EXPECT_EQ(PairedDifferencesMarkdown(rows, "random"), "");
}

// Across streams a stream counts once: its seeds are averaged first, and the t-test runs over
// the streams. A strategy some streams lack is tested over the others; a seed without its
// uniform pair is left out.
TEST(BenchReportTest, AcrossStreamsAveragesSeedsWithinEachStreamAndTestsOverStreams) {
  auto row = [](const char* strategy, int seed, double map50) {
    return RunRow{strategy, 50, uint64_t(seed), map50, 0, 50, 0, 0, {}};
  };
  std::vector<StreamRuns> streams = {
      {"a", {row("uniform", 1, 0.40), row("uniform", 2, 0.50), row("steady", 1, 0.42), row("steady", 2, 0.52),
             row("partial", 1, 0.50), row("partial", 2, 0.60), row("lonely", 3, 0.9)}},
      {"b", {row("uniform", 1, 0.30), row("uniform", 2, 0.35), row("steady", 1, 0.33), row("steady", 2, 0.38),
             row("partial", 1, 0.25), row("partial", 2, 0.30)}},
      {"c", {row("uniform", 1, 0.60), row("uniform", 2, 0.62), row("steady", 1, 0.625), row("steady", 2, 0.645)}},
  };
  const std::string md = AcrossStreamsMarkdown(streams, "uniform");
  EXPECT_NE(md.find("| strategy | budget | a | b | c | mean ± std over streams (t) | streams | sent |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| uniform | 50 | 0.450 | 0.325 | 0.610 | | | |"), std::string::npos) << md;
  EXPECT_NE(md.find("| steady | 50 | +0.020 | +0.030 | +0.025 | **+0.025 ± 0.005** (t 8.7) | 3 | 50 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| partial | 50 | +0.100 | -0.050 | - | +0.025 ± 0.106 (t 0.3) | 2 | 50 |"), std::string::npos)
      << md;
  EXPECT_EQ(md.find("| lonely |"), std::string::npos) << md;
}

// --compare-streams reads each folder's strategies.csv, eval-set columns or not, and names a
// folder it cannot read.
TEST(BenchCliTest, CompareStreamsReadsEveryFolderAndNamesAMissingOne) {
  testing::ScopedTempDir dir("sd_bench_streams");
  std::filesystem::create_directories(dir.File("s1"));
  std::filesystem::create_directories(dir.File("s2"));
  std::ofstream(dir.File("s1/strategies.csv")) << kStrategiesCsvHeader << "\n"
                                               << "uniform,25,1,0.5000,0.2,25,1000\n"
                                               << "paced,25,1,0.5400,0.2,25,1000\n";
  std::ofstream(dir.File("s2/strategies.csv")) << StrategiesCsvHeader({"day", "dusk"}) << "\n"
                                               << "uniform,25,1,0.6000,0.2,25,1000,0.7,0.5\n"
                                               << "paced,25,1,0.6200,0.2,25,1000,0.7,0.54\n";
  auto run = testing::RunBinary("streamdistill-bench",
                                "--compare-streams " + dir.File("s1") + " " + dir.File("s2") + "/", 30);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("| paced | 25 | +0.040 | +0.020 | +0.030 ± 0.014 (t 3.0) | 2 | 25 |"), std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("2 streams."), std::string::npos) << run.output;

  auto missing = testing::RunBinary("streamdistill-bench",
                                    "--compare-streams " + dir.File("s1") + " " + dir.File("nowhere"), 30);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find(dir.File("nowhere") + "/strategies.csv"), std::string::npos) << missing.output;
  std::ofstream(dir.File("s2/strategies.csv"), std::ios::app) << "paced,25,2,not a number\n";
  auto broken = testing::RunBinary("streamdistill-bench",
                                   "--compare-streams " + dir.File("s1") + " " + dir.File("s2"), 30);
  EXPECT_EQ(broken.exit_code, 1) << broken.output;
  EXPECT_NE(broken.output.find("strategies.csv:4: not a run"), std::string::npos) << broken.output;
}

// The binary on a tiny synthetic stream: every file it promises, and --resume adds nothing.
TEST(BenchCliTest, TinySyntheticGridWritesCsvTableAndResumes) {
  testing::ScopedTempDir dir("sd_bench");
  const std::string config = dir.File("tiny.yaml");
  std::ofstream(config) << R"(name: tiny
video: "synthetic:seed=2,frames=160,classes=1,width=128,height=96"
train_frames: [0, 120]
eval_frames: [120, 160]
threads: 1
labels: ground_truth
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 8, 16, 16, 32]}
inference: {score_threshold: 0.3}
training: {steps: 3, batch_size: 2, warmup_steps: 1}
pretrain: {frames: 2, training: {steps: 3, batch_size: 2, warmup_steps: 1}}
sampling: {warmup_frames: 5, window_frames: 50}
grid: {strategies: [uniform, top_confidence_diversity], budgets: [10], seeds: 2}
)";
  const std::string out = dir.File("out");
  auto run = testing::RunBinary("streamdistill-bench", "--config " + config + " --out " + out, 120);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream csv(out + "/strategies.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, kStrategiesCsvHeader);
  int rows = 0;
  std::map<std::string, int> queried;  // "strategy,budget,seed" -> frames sent
  while (std::getline(csv, line)) {
    ++rows;
    const std::optional<RunRow> row = ParseCsvLine(line, 0);
    ASSERT_TRUE(row.has_value()) << line;
    queried[row->strategy + "," + std::to_string(row->budget) + "," + std::to_string(row->seed)] = row->queried;
  }
  EXPECT_EQ(rows, 6);  // (baseline + 2 strategies) x 2 seeds
  // sent.csv: the positions of every run, as many as it queried, each inside the stream.
  auto sent_rows = [&out] {
    std::map<std::string, std::vector<int>> sent;
    std::ifstream in(out + "/sent.csv");
    std::string row;
    std::getline(in, row);
    EXPECT_EQ(row, "strategy,budget,seed,positions");
    while (std::getline(in, row)) {
      const size_t last_comma = row.rfind(',');
      std::istringstream positions(row.substr(last_comma + 1));
      std::vector<int>& p = sent[row.substr(0, last_comma)];
      EXPECT_TRUE(p.empty()) << "a run listed twice: " << row;
      for (int position; positions >> position;) p.push_back(position);
    }
    return sent;
  };
  const std::map<std::string, std::vector<int>> sent = sent_rows();
  ASSERT_EQ(sent.size(), queried.size());
  for (const auto& [run, positions] : sent) {
    ASSERT_TRUE(queried.count(run)) << run;
    EXPECT_EQ(static_cast<int>(positions.size()), queried[run]) << run;
    for (int position : positions) {
      EXPECT_GE(position, 0) << run;
      EXPECT_LT(position, 120) << run;
    }
  }
  EXPECT_EQ(sent.at("uniform,10,1"), (std::vector<int>{0, 12, 24, 36, 48, 60, 72, 84, 96, 108}));
  EXPECT_TRUE(std::filesystem::exists(out + "/strategies.md"));
  EXPECT_TRUE(std::filesystem::exists(out + "/start.sdw"));
  EXPECT_NE(run.output.find("\"runs\":6"), std::string::npos) << run.output;

  auto resumed = testing::RunBinary("streamdistill-bench", "--config " + config + " --out " + out + " --resume", 120);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("6 done before"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("(reused)"), std::string::npos) << resumed.output;
  EXPECT_EQ(sent_rows(), sent);  // nothing re-run, nothing lost
}

// --closed-loop: a round every round_every frames (and one at the stream's end) in every run,
// each run's mAP50 the mean of its rounds that end after score_from, as rounds.csv lists them.
TEST(BenchCliTest, ClosedLoopRunsARoundEveryPeriodAndScoresTheRoundsAfterTheChange) {
  testing::ScopedTempDir dir("sd_bench_loop");
  const std::string config = dir.File("tiny.yaml");
  std::ofstream(config) << R"(name: tiny
video: "synthetic:seed=3,frames=150,classes=1,drift_at=50,width=128,height=96"
train_frames: [0, 110]
eval_frames: [110, 150]
threads: 1
labels: ground_truth
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 8, 16, 16, 32]}
inference: {score_threshold: 0.3}
training: {steps: 3, batch_size: 2, warmup_steps: 1}
pretrain: {frames: 2, range: [0, 50], training: {steps: 3, batch_size: 2, warmup_steps: 1}}
sampling: {warmup_frames: 5, window_frames: 50}
grid: {strategies: [uniform, paced_confidence_diversity], budgets: [12], seeds: 1}
closed_loop: {round_every: 25, steps: 2, replay_frames: 4, score_from: 50}
)";
  const std::string out = dir.File("out");
  auto run = testing::RunBinary("streamdistill-bench", "--config " + config + " --out " + out + " --closed-loop", 180);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("closed loop: a round of 2 steps on the newest 4 frames sent every 25 frames"),
            std::string::npos) << run.output;

  std::map<std::string, double> map50;  // strategy -> the run's figure
  std::map<std::string, int> queried;
  auto rows = ReadStrategiesCsv(out + "/strategies.csv");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  for (const RunRow& row : *rows) {
    map50[row.strategy] = row.map50;
    queried[row.strategy] = static_cast<int>(row.queried);
  }
  ASSERT_EQ(map50.size(), 2u);  // no all-frames baseline in the loop

  std::map<std::string, std::vector<int>> positions, sent;
  std::map<std::string, std::vector<double>> after_change;
  std::ifstream rounds(out + "/rounds.csv");
  std::string line;
  std::getline(rounds, line);
  EXPECT_EQ(line, "strategy,budget,seed,round,position,sent,map50");
  while (std::getline(rounds, line)) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string field; std::getline(fields, field, ',');) f.push_back(field);
    ASSERT_EQ(f.size(), 7u) << line;
    const int position = std::stoi(f[4]);
    positions[f[0]].push_back(position);
    sent[f[0]].push_back(std::stoi(f[5]));
    if (position > 50) after_change[f[0]].push_back(std::stod(f[6]));
  }
  for (const auto& [strategy, figure] : map50) {
    EXPECT_EQ(positions[strategy], (std::vector<int>{25, 50, 75, 100, 110})) << strategy;
    // Frames arrive as the stream goes: more by every round, all of the run's by the last.
    ASSERT_EQ(sent[strategy].size(), 5u) << strategy;
    EXPECT_GE(sent[strategy].front(), 1) << strategy;
    EXPECT_TRUE(std::is_sorted(sent[strategy].begin(), sent[strategy].end())) << strategy;
    EXPECT_LT(sent[strategy][1], sent[strategy].back()) << strategy;
    EXPECT_EQ(sent[strategy].back(), queried[strategy]) << strategy;
    EXPECT_GE(queried[strategy], 10) << strategy;
    ASSERT_EQ(after_change[strategy].size(), 3u) << strategy;
    const double mean = (after_change[strategy][0] + after_change[strategy][1] + after_change[strategy][2]) / 3;
    EXPECT_NEAR(figure, mean, 1e-3) << strategy;
  }
}

// --speed: every figure the docs quote is there, measured (not zero), from the real edge too.
TEST(BenchCliTest, SpeedReportsStudentTeacherPathAndProcess) {
  testing::ScopedTempDir dir("sd_bench_speed");
  const std::string edge_config = dir.File("edge.yaml");
  std::ofstream(edge_config) << R"(device_id: cam1
token: t
server: 127.0.0.1:1
source: {uri: "synthetic:seed=3,frames=400,classes=1,width=160,height=120"}
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 8, 16, 16, 32]}
sampling: {strategy: uniform, budget_per_minute: 20}
upload: {max_width: 128, jpeg_quality: 85}
)";
  const std::string out = dir.File("out");
  auto run = testing::RunBinary("streamdistill-bench",
                                "--speed --edge-config " + edge_config + " --server-config " +
                                    std::string(SD_SOURCE_DIR) + "/configs/server.yaml --frames 12 --path-frames 30 --out " +
                                    out,
                                180);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream in(out + "/speed.json");
  const nlohmann::json r = nlohmann::json::parse(in);
  for (const char* who : {"student", "teacher"}) {
    const nlohmann::json& d = r["one_thread"][who];
    EXPECT_EQ(d["frames"].get<int>(), 12) << who;
    EXPECT_GT(d["median_ms"].get<double>(), 0) << who;
    EXPECT_LE(d["median_ms"].get<double>(), d["p95_ms"].get<double>()) << who;
    EXPECT_LE(d["p95_ms"].get<double>(), d["max_ms"].get<double>()) << who;
  }
  EXPECT_EQ(r["one_thread"]["settings"]["torch_intra_op_threads"].get<int>(), 1);
  EXPECT_EQ(r["one_thread"]["settings"]["opencv_threads"].get<int>(), 1);
  for (const char* threads : {"threads_1", "threads_2"}) {
    EXPECT_EQ(r["edge_path"][threads]["frames"].get<int>(), 30) << threads;
    EXPECT_GT(r["edge_path"][threads]["fps"].get<double>(), 0) << threads;
  }
  EXPECT_GT(r["edge_process"]["startup_s"].get<double>(), 0);
  EXPECT_GT(r["edge_process"]["max_rss_mb"].get<double>(), 10);
  EXPECT_TRUE(std::filesystem::exists(out + "/speed.md"));
  EXPECT_NE(run.output.find("\"speedup_median\""), std::string::npos) << run.output;
}

TEST(BenchUplinkTest, EncodingsParseAndBadOnesAreNamed) {
  auto parsed = ParseUplinkEncodings("768x75,384x85,0x50");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->size(), 3u);
  EXPECT_EQ((*parsed)[1].max_width, 384);
  EXPECT_EQ((*parsed)[1].jpeg_quality, 85);
  EXPECT_EQ((*parsed)[2].max_width, 0);
  for (const char* bad : {"", "768", "768x0", "768x101", "-1x50", "768x75x2", "768x75,abc"}) {
    auto r = ParseUplinkEncodings(bad);
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseUplinkEncodings("768x75,abc").status().message().find("'abc'"), std::string::npos);
}

// --uplink: smaller frames cost fewer bytes, and the table has a row per encoding.
TEST(BenchCliTest, UplinkMeasuresBytesAndLabelAgreementPerEncoding) {
  testing::ScopedTempDir dir("sd_bench_uplink");
  const std::string edge_config = dir.File("edge.yaml");
  std::ofstream(edge_config) << R"(device_id: cam1
token: t
source: {uri: "synthetic:seed=3,frames=60,classes=1,width=320,height=240"}
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 8, 16, 16, 32]}
sampling: {strategy: uniform, budget_per_minute: 30}
)";
  const std::string out = dir.File("out");
  auto run = testing::RunBinary("streamdistill-bench",
                                "--uplink --edge-config " + edge_config + " --server-config " +
                                    std::string(SD_SOURCE_DIR) + "/configs/server.yaml --encodings 0x90,160x50 --out " + out,
                                180);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream in(out + "/uplink.json");
  const nlohmann::json r = nlohmann::json::parse(in);
  ASSERT_EQ(r["encodings"].size(), 2u);
  const nlohmann::json& full = r["encodings"][0];
  const nlohmann::json& small = r["encodings"][1];
  EXPECT_EQ(full["sent_width"].get<int>(), 320);
  EXPECT_EQ(small["sent_width"].get<int>(), 160);
  EXPECT_LT(small["message_bytes"].get<double>(), full["message_bytes"].get<double>());
  // 30 frames a minute: kbit/s = bytes x 8 x 0.5 / 1000.
  EXPECT_NEAR(full["kbps"].get<double>(), full["message_bytes"].get<double>() * 8 * 0.5 / 1000, 1e-6);
  for (const auto& e : r["encodings"]) {
    EXPECT_GE(e["label_map50"].get<double>(), 0.0);
    EXPECT_LE(e["label_map50"].get<double>(), 1.0);
  }
  EXPECT_TRUE(std::filesystem::exists(out + "/uplink.md"));
}

// --updates: the server's rounds under each encoding; sparse deltas cost a fraction of full
// models and the edge lands on the server's weights after every one (or the run fails).
TEST(BenchCliTest, UpdateGridWritesCsvAndSparseIsSmallerThanFull) {
  testing::ScopedTempDir dir("sd_bench");
  const std::string config = dir.File("tiny.yaml");
  std::ofstream(config) << R"(video: "synthetic:seed=2,frames=160,classes=1,width=128,height=96"
train_frames: [0, 120]
eval_frames: [120, 160]
threads: 1
labels: ground_truth
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 8, 16, 16, 32]}
training: {steps: 3, batch_size: 2, warmup_steps: 1}
pretrain: {frames: 2, training: {steps: 3, batch_size: 2, warmup_steps: 1}}
sampling: {warmup_frames: 5, window_frames: 50}
updates: {strategy: uniform, budget: 20, round_every: 10, iterations: 2, encodings: [full_fp32, int8, sparse],
          fractions: [0.05], seeds: 1}
)";
  const std::string out = dir.File("out");
  auto run = testing::RunBinary("streamdistill-bench", "--config " + config + " --out " + out + " --updates", 120);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream csv(out + "/updates.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, kUpdatesCsvHeader);
  std::map<std::string, int64_t> downlink;
  while (std::getline(csv, line)) {
    std::stringstream fields(line);
    std::string encoding, fraction, seed, map50, bytes, updates;
    std::getline(fields, encoding, ',');
    std::getline(fields, fraction, ',');
    std::getline(fields, seed, ',');
    std::getline(fields, map50, ',');
    std::getline(fields, bytes, ',');
    std::getline(fields, updates, ',');
    EXPECT_EQ(updates, "2") << line;
    downlink[encoding] = std::stoll(bytes);
  }
  ASSERT_EQ(downlink.size(), 3u);
  EXPECT_LT(downlink["sparse"] * 4, downlink["full_fp32"]);
  EXPECT_LT(downlink["int8"], downlink["full_fp32"]);
  EXPECT_TRUE(std::filesystem::exists(out + "/updates.md"));
}

TEST(BenchUpdateWireBytesTest, CountsEveryChunkWithItsHeader) {
  ModelUpdate update;
  update.base_version = 1;
  update.new_version = 2;
  update.encoding = UpdateEncoding::kSparse;
  update.payload = std::string(10000, 'x');
  const int64_t one = UpdateWireBytes(update, 1 << 20);
  const int64_t three = UpdateWireBytes(update, 4096);
  EXPECT_GT(one, 10000 + 5);
  EXPECT_LT(one, 10000 + 120);
  EXPECT_GT(three, one + 2 * 5);  // two more messages, each with its header and fields
}

TEST(BenchCliTest, BrokenConfigNamesTheKeyAndExitsTwo) {
  testing::ScopedTempDir dir("sd_bench");
  const std::string config = dir.File("bad.yaml");
  std::ofstream(config) << "video: synthetic:frames=10\nlabels: ground_truth\nstudent: {}\ngrid: {strategies: [psychic]}\n";
  auto run = testing::RunBinary("streamdistill-bench", "--config " + config + " --out " + dir.File("o"));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("psychic"), std::string::npos) << run.output;
}

// The grids validate themselves ("<key>: <problem>"); the reader names the key and its line.
TEST(BenchConfigTest, GridValuesOutOfRangeNameTheirKey) {
  UpdateGrid updates;
  updates.round_every = updates.budget + 1;
  EXPECT_EQ(updates.Validate().message(), "round_every: must be in 1..budget");
  MemoryGrid memory;
  memory.validation_every = 1;
  EXPECT_EQ(memory.Validate().message(), "validation_every: must be >= 2");
  BenchGrid grid;
  grid.budgets = {10, 0};
  EXPECT_EQ(grid.Validate().message(), "budgets: every budget must be >= 1 frame");

  testing::ScopedTempDir dir("sd_bench");
  const std::string base = "video: \"synthetic:seed=7,frames=100\"\nlabels: ground_truth\ntrain_frames: [0, 60]\n"
                           "eval_frames: [60, 100]\nstudent: {classes: 2}\n";
  auto error_of = [&](const std::string& section) {
    std::ofstream(dir.File("c.yaml")) << base << section;
    StatusOr<BenchConfig> config = LoadBenchConfig(dir.File("c.yaml"));
    return config.ok() ? std::string("parsed") : config.status().message();
  };
  ASSERT_EQ(error_of(""), "parsed");
  const std::string file = dir.File("c.yaml");
  EXPECT_EQ(error_of("grid: {budgets: [0]}\n").rfind(file + ": key 'grid.budgets' (line ", 0), 0u)
      << error_of("grid: {budgets: [0]}\n");
  EXPECT_EQ(error_of("updates: {seeds: 0}\n").rfind(file + ": key 'updates.seeds' (line ", 0), 0u)
      << error_of("updates: {seeds: 0}\n");
  EXPECT_EQ(error_of("memory: {validation_every: 1}\n").rfind(file + ": key 'memory.validation_every' (line ", 0), 0u)
      << error_of("memory: {validation_every: 1}\n");
  EXPECT_EQ(error_of("closed_loop: {steps: 0}\n").rfind(file + ": key 'closed_loop.steps' (line ", 0), 0u)
      << error_of("closed_loop: {steps: 0}\n");
}

// `base:` lays a config over another: maps merge key by key, lists and scalars replace, bases
// chain relative to the file that names them, and a broken chain is an error naming `base`.
TEST(BenchConfigBaseTest, KeysOverrideTheBaseMapsMergeListsReplace) {
  testing::ScopedTempDir dir("sd_bench");
  std::filesystem::create_directories(dir.File("streams/more"));
  std::ofstream(dir.File("streams/drift.yaml"))
      << "name: drift\nvideo: \"synthetic:seed=7,frames=100\"\nlabels: ground_truth\ntrain_frames: [0, 60]\n"
         "eval_frames: [60, 100]\nstudent: {classes: 2}\ntraining: {steps: 100, batch_size: 4}\n"
         "grid: {strategies: [uniform, diversity], budgets: [25, 50]}\n";
  std::ofstream(dir.File("streams/more/quiet.yaml"))
      << "base: ../drift.yaml\nname: quiet\nvideo: \"synthetic:seed=7,frames=100,activity=0.4\"\n"
         "training: {steps: 40}\ngrid: {budgets: [10]}\n";
  std::ofstream(dir.File("over_quiet.yaml")) << "base: streams/more/quiet.yaml\neval_frames: [80, 100]\n";

  auto quiet = LoadBenchConfig(dir.File("streams/more/quiet.yaml"));
  ASSERT_TRUE(quiet.ok()) << quiet.status().message();
  EXPECT_EQ(quiet->name, "quiet");
  EXPECT_EQ(quiet->job.video, "synthetic:seed=7,frames=100,activity=0.4");
  EXPECT_EQ(quiet->job.training.total_steps, 40);
  EXPECT_EQ(quiet->job.training.batch_size, 4);  // the base's, in a merged map
  EXPECT_EQ(quiet->grid.budgets, std::vector<int>{10});  // a list replaces
  EXPECT_EQ(quiet->grid.strategies, (std::vector<std::string>{"uniform", "diversity"}));
  EXPECT_EQ(quiet->job.eval_frames.begin, 60);

  auto chained = LoadBenchConfig(dir.File("over_quiet.yaml"));
  ASSERT_TRUE(chained.ok()) << chained.status().message();
  EXPECT_EQ(chained->name, "quiet");
  EXPECT_EQ(chained->job.eval_frames.begin, 80);
  EXPECT_EQ(chained->job.training.total_steps, 40);

  std::ofstream(dir.File("typo.yaml")) << "base: streams/drift.yaml\ntraning: {steps: 1}\n";
  auto typo = LoadBenchConfig(dir.File("typo.yaml"));
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("traning"), std::string::npos) << typo.status().message();

  std::ofstream(dir.File("missing.yaml")) << "base: nowhere.yaml\nname: x\n";
  auto missing = LoadBenchConfig(dir.File("missing.yaml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'base'"), std::string::npos) << missing.status().message();
  EXPECT_NE(missing.status().message().find("nowhere.yaml"), std::string::npos) << missing.status().message();

  std::ofstream(dir.File("loop_a.yaml")) << "base: loop_b.yaml\n";
  std::ofstream(dir.File("loop_b.yaml")) << "base: loop_a.yaml\n";
  auto loop = LoadBenchConfig(dir.File("loop_a.yaml"));
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.status().message().find("deep"), std::string::npos) << loop.status().message();
}

// The shipped configs that are laid over another differ from it only where they say.
TEST(BenchConfigBaseTest, ShippedOverlaysKeepTheirBasesStream) {
  const std::string configs = std::string(SD_SOURCE_DIR) + "/configs/";
  auto drift = LoadBenchConfig(configs + "bench_drift.yaml");
  auto quiet = LoadBenchConfig(configs + "bench_quiet_drift.yaml");
  auto after = LoadBenchConfig(configs + "bench_drift_after.yaml");
  ASSERT_TRUE(drift.ok() && quiet.ok() && after.ok());
  EXPECT_EQ(quiet->job.video,
            "synthetic:seed=7,frames=1000,classes=2,drift_at=300,objects=4,activity=0.4,width=256,height=192,fps=10");
  EXPECT_EQ(quiet->job.eval_frames.begin, 600);
  EXPECT_EQ(quiet->job.eval_frames.end, 1000);
  EXPECT_EQ(after->job.train_frames.begin, 300);
  for (const BenchConfig* c : {&*quiet, &*after}) {
    EXPECT_EQ(c->job.training.total_steps, drift->job.training.total_steps);
    EXPECT_EQ(c->pretrain.range.begin, 0);
    EXPECT_EQ(c->pretrain.range.end, 300);
    EXPECT_EQ(c->closed_loop.score_from, drift->closed_loop.score_from);
  }

  auto conditions = LoadBenchConfig(configs + "bench_conditions.yaml");
  auto quiet_conditions = LoadBenchConfig(configs + "bench_quiet_conditions.yaml");
  ASSERT_TRUE(conditions.ok() && quiet_conditions.ok());
  EXPECT_EQ(quiet_conditions->eval_sets.size(), conditions->eval_sets.size());
  EXPECT_EQ(quiet_conditions->stream.pretrain.condition, "overcast");
  ASSERT_EQ(quiet_conditions->stream.segments.size(), conditions->stream.segments.size());
  for (size_t i = 0; i < conditions->stream.segments.size(); ++i)
    EXPECT_EQ(quiet_conditions->stream.segments[i].condition, conditions->stream.segments[i].condition + "_quiet");
  EXPECT_DOUBLE_EQ(quiet_conditions->stream.Find("dusk_quiet")->gamma, conditions->stream.Find("dusk")->gamma);
  EXPECT_DOUBLE_EQ(quiet_conditions->stream.Find("dusk_quiet")->empty_share, 0.7);
  EXPECT_EQ(quiet_conditions->job.training.total_steps, conditions->job.training.total_steps);
}

}  // namespace
}  // namespace sd
