// streamdistill-bench: compares the edge's sampling strategies the way SBAD/D-SBAD do, offline
// on the daemons' own code. For each strategy x budget x seed: sample the stream with the
// edge's Sampler, fine-tune the common start student on the queried frames with the server's
// trainer (same steps for every run), score it on held-out frames against the reference labels.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "bench/bench_config.h"
#include "bench/memory_rounds.h"
#include "bench/replay.h"
#include "bench/report.h"
#include "bench/speed.h"
#include "bench/start_student.h"
#include "bench/uplink_encodings.h"
#include "bench/update_replay.h"
#include "common/vision/appearance.h"
#include "common/video/frame_source.h"
#include "common/base/progress.h"
#include "tools/job_labels.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

constexpr int kUsageError = 2;

struct Flags {
  std::string config;
  std::string out = "out/bench";
  bool quick = false;
  bool resume = false;
  bool updates = false;  // the update-encoding grid instead of the strategy grid
  bool memory = false;   // the long-term memory grid instead of the strategy grid
  bool closed_loop = false;  // the strategy grid with the server's rounds in the loop (config closed_loop)
  std::vector<std::string> strategies;  // overrides the config's grid
  std::vector<int> budgets;
  int seeds = 0;
  int steps = 0;
  bool speed = false;  // the edge speed benchmark instead of a grid
  SpeedOptions speed_options;
  bool uplink = false;  // the uplink encodings instead of a grid
  std::vector<std::string> compare_streams;  // bench output folders: the across-streams table instead of a grid
  std::string uplink_encodings = "768x75,768x50,640x60,512x75,384x75,384x85,384x95";
};

// Rows of an earlier run's CSV, so that --resume does only what is missing. Rows of another
// header (other eval sets) are not this grid's: none are kept.
std::vector<RunRow> ReadRows(const std::string& path, const std::vector<std::string>& eval_sets) {
  std::vector<RunRow> rows;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  if (line != StrategiesCsvHeader(eval_sets)) return rows;
  while (std::getline(in, line))
    if (auto row = ParseCsvLine(line, eval_sets.size())) rows.push_back(*row);
  return rows;
}

struct RunSpec {
  std::string strategy;  // "all_frames": the baseline
  int budget;
  uint64_t seed;
};

int Fail(const Status& status, int code = 1) {
  std::fprintf(stderr, "\nstreamdistill-bench: error: %s\n", status.message().c_str());
  return code;
}

// Everything both grids share: the config, the reference labels, the start student and its
// pass over the stream, the held-out frames.
struct Prepared {
  BenchConfig config;
  BenchGrid grid;
  TrainerOptions training;
  std::vector<Detections> labels;
  std::string start;
  std::vector<LabelledFrame> eval;  // every held-out frame (the update grid scores on all of them)
  // The named eval sets, each scored on its own (config.eval_sets); else just `eval`.
  std::vector<std::string> eval_names;
  std::vector<std::vector<LabelledFrame>> eval_sets;
  Stream stream;
  EvalResult start_eval;  // over the eval sets: the mean of theirs
  std::vector<EvalResult> start_set_evals;
};

// mAP50 and mAP50-95 of a run: its one set's, or the mean over the named sets (each set
// counts the same, whatever its number of boxes), with each set's mAP50.
void ScoreRow(const std::vector<EvalResult>& results, bool named_sets, RunRow* row) {
  row->map50 = row->map50_95 = 0;
  row->set_map50.clear();
  for (const EvalResult& r : results) {
    row->map50 += r.map50 / results.size();
    row->map50_95 += r.map50_95 / results.size();
    if (named_sets) row->set_map50.push_back(r.map50);
  }
}

int Prepare(const Flags& flags, Prepared* p) {
  auto config_or = LoadBenchConfig(flags.config);
  if (!config_or.ok()) return Fail(config_or.status(), kUsageError);
  BenchConfig& config = p->config;
  config = std::move(config_or).value();
  BenchGrid& grid = p->grid;
  grid = flags.quick ? config.quick : config.grid;
  if (!flags.strategies.empty()) grid.strategies = flags.strategies;
  if (!flags.budgets.empty()) grid.budgets = flags.budgets;
  if (flags.seeds > 0) grid.seeds = flags.seeds;
  TrainerOptions& training = p->training;
  training = config.job.training;
  if (flags.quick) training.total_steps = config.quick_steps;
  if (flags.steps > 0) training.total_steps = flags.steps;
  SetTorchThreads(config.job.threads);
  cv::setNumThreads(config.job.threads);

  std::error_code ec;
  std::filesystem::create_directories(flags.out, ec);
  if (ec) return Fail(Status::IOError(flags.out + ": cannot create: " + ec.message()), kUsageError);
  if (config.made_stream) {
    const bool existed = std::filesystem::exists(config.job.video);
    if (!existed) std::printf("making    %s (%lld frames)\n", config.job.video.c_str(),
                              static_cast<long long>(config.stream_layout.frames));
    Status made = WriteConditionStream(config.stream, config.stream_layout);
    if (!made.ok()) return Fail(made, kUsageError);
    if (existed) std::printf("stream    %s (reused)\n", config.job.video.c_str());
    // Not fatal: the previews are for a person's look, the grid does not need them.
    Status previews = WriteConditionPreviews(config.stream, flags.out + "/conditions");
    if (!previews.ok()) std::fprintf(stderr, "streamdistill-bench: warning: %s\n", previews.message().c_str());
  }

  auto labels = ReferenceLabels(config);
  if (!labels.ok()) return Fail(labels.status(), kUsageError);
  auto start = StartWeights(config, *labels, flags.out);
  if (!start.ok()) return Fail(start.status());
  std::vector<EvalSet> sets = config.eval_sets;
  if (sets.empty()) sets.push_back({"", config.job.eval_frames});
  for (const EvalSet& set : sets) {
    auto eval = LoadLabelledFrames(config.job.video, set.frames.begin, set.frames.end, *labels);
    if (!eval.ok()) return Fail(eval.status(), kUsageError);
    if (!config.eval_sets.empty()) p->eval_names.push_back(set.name);
    p->eval.insert(p->eval.end(), eval->begin(), eval->end());
    p->eval_sets.push_back(std::move(*eval));
  }
  p->labels = std::move(*labels);
  p->start = std::move(*start);

  auto start_model = StudentModel::FromBytes(p->start);
  if (!start_model.ok()) return Fail(start_model.status());
  auto start_detector = (*start_model)->MakeDetector(config.job.inference);
  if (!start_detector.ok()) return Fail(start_detector.status());
  StreamSpec spec{config.job.video, config.job.train_frames.begin, config.job.train_frames.end, &p->labels,
                  config.job.student.input_width * 5 / 4, config.upload};
  std::unique_ptr<ProgressLine> replay_progress;
  auto stream = ReplayStream(spec, **start_detector, [&](int64_t done, int64_t total) {
    if (!replay_progress) replay_progress = std::make_unique<ProgressLine>("stream", total);
    replay_progress->Update(done);
  });
  if (replay_progress) replay_progress->Finish();
  if (!stream.ok()) return Fail(stream.status(), kUsageError);
  p->stream = std::move(*stream);
  const int64_t n = p->stream.frames.size();
  std::printf("stream    %s frames [%lld, %lld): %lld frames, %.1f s at %.1f fps; start student %.2f ms/frame\n",
              config.name.c_str(), static_cast<long long>(config.job.train_frames.begin),
              static_cast<long long>(config.job.train_frames.end), static_cast<long long>(n), p->stream.duration_s(),
              p->stream.fps, p->stream.student_ms);
  auto start_evals = FineTuneAndEvaluateEach(p->start, {}, training, config.job.inference, p->eval_sets);
  if (!start_evals.ok()) return Fail(start_evals.status());
  p->start_set_evals = *start_evals;
  RunRow start_row;
  ScoreRow(*start_evals, !p->eval_names.empty(), &start_row);
  p->start_eval.map50 = start_row.map50;
  p->start_eval.map50_95 = start_row.map50_95;
  std::printf("start     held-out mAP50 %.3f, mAP50-95 %.3f", p->start_eval.map50, p->start_eval.map50_95);
  for (size_t i = 0; i < p->eval_names.size(); ++i)
    std::printf("%s %s %.3f", i == 0 ? ";" : ",", p->eval_names[i].c_str(), start_row.set_map50[i]);
  std::printf("\n");
  return 0;
}


int RunStrategyGrid(const Flags& flags, const Prepared& p) {
  const BenchConfig& config = p.config;
  const BenchGrid& grid = p.grid;
  const TrainerOptions& training = p.training;
  const int64_t n = p.stream.frames.size();
  std::vector<RunSpec> runs;
  for (int seed = 1; seed <= grid.seeds; ++seed) {
    // The baseline trains once on every frame: there is no sampler to put in the loop.
    if (grid.all_frames_baseline && !flags.closed_loop) runs.push_back({"all_frames", static_cast<int>(n), static_cast<uint64_t>(seed)});
    for (int budget : grid.budgets)
      for (const std::string& strategy : grid.strategies)
        runs.push_back({strategy, budget, static_cast<uint64_t>(seed)});
  }
  const std::string csv_path = flags.out + "/strategies.csv";
  std::vector<RunRow> rows = flags.resume ? ReadRows(csv_path, p.eval_names) : std::vector<RunRow>{};
  std::set<std::tuple<std::string, int, uint64_t>> done;
  for (const RunRow& r : rows) done.insert({r.strategy, r.budget, r.seed});
  {
    std::ofstream csv(csv_path, std::ios::trunc);
    csv << StrategiesCsvHeader(p.eval_names) << "\n";
    for (const RunRow& r : rows) csv << CsvLine(r) << "\n";
  }
  std::ofstream csv(csv_path, std::ios::app);
  // Which frames each run sent (stream positions, in sending order): what a table of scores
  // cannot show, e.g. where in a drift a strategy spent its budget.
  const std::string sent_path = flags.out + "/sent.csv";
  const bool sent_exists = flags.resume && std::filesystem::exists(sent_path);
  std::ofstream sent_csv(sent_path, sent_exists ? std::ios::app : std::ios::trunc);
  if (!sent_exists) sent_csv << "strategy,budget,seed,positions\n";
  // --closed-loop: every round's mAP50 (the mean over the eval sets), the curve behind a run's
  // figure.
  const std::string rounds_path = flags.out + "/rounds.csv";
  std::ofstream rounds_csv;
  if (flags.closed_loop) {
    const bool rounds_exist = flags.resume && std::filesystem::exists(rounds_path);
    rounds_csv.open(rounds_path, rounds_exist ? std::ios::app : std::ios::trunc);
    if (!rounds_exist) rounds_csv << "strategy,budget,seed,round,position,sent,map50\n";
  }

  if (flags.closed_loop)
    std::printf("runs      %zu (%zu done before), closed loop: a round of %d steps of batch %d every %d frames\n",
                runs.size(), done.size(), config.closed_loop.steps, training.batch_size, config.closed_loop.round_every);
  else
    std::printf("runs      %zu (%zu done before), %d fine-tuning steps of batch %d each\n", runs.size(), done.size(),
                training.total_steps, training.batch_size);

  ProgressLine progress("runs", runs.size(), stdout);
  int64_t finished = 0;
  for (const RunSpec& run : runs) {
    ++finished;
    if (done.count({run.strategy, run.budget, run.seed})) continue;
    RunRow row;
    row.strategy = run.strategy;
    row.budget = run.budget;
    row.seed = run.seed;
    TrainerOptions run_training = training;
    run_training.seed = run.seed;
    auto sampler_options = [&] {
      const SamplerOptions entry = GridEntryOptions(config, run.strategy);
      return RunSamplerOptions(entry, entry.strategy, run.budget, run.seed, n, p.stream.duration_s());
    };
    Sampled sampled;
    std::vector<EvalResult> results;
    if (flags.closed_loop) {
      auto loop = ReplayClosedLoop(p.start, p.stream, sampler_options(), config.closed_loop, run_training,
                                   config.job.inference, p.eval_sets);
      if (!loop.ok()) return Fail(loop.status());
      for (size_t r = 0; r < loop->rounds.size(); ++r) {
        const ClosedLoopRound& round = loop->rounds[r];
        RunRow scored;
        ScoreRow(round.evals, false, &scored);
        rounds_csv << run.strategy << "," << run.budget << "," << run.seed << "," << r + 1 << "," << round.position
                   << "," << round.sent << "," << scored.map50 << std::endl;
      }
      sampled = std::move(loop->sampled);
      results = std::move(loop->scored);
    } else {
      if (run.strategy == "all_frames") {
        for (int64_t i = 0; i < n; ++i) {
          sampled.positions.push_back(i);
          sampled.uplink_bytes += p.stream.frames[i].uplink_bytes;
        }
      } else {
        auto s = SampleStream(p.stream, sampler_options());
        if (!s.ok()) return Fail(s.status());
        sampled = std::move(*s);
      }
      std::vector<TrainingSample> samples;
      for (size_t position : sampled.positions) samples.push_back(p.stream.frames[position].sample);
      auto trained = FineTuneAndEvaluateEach(p.start, samples, run_training, config.job.inference, p.eval_sets);
      if (!trained.ok()) return Fail(trained.status());
      results = std::move(*trained);
    }
    ScoreRow(results, !p.eval_names.empty(), &row);
    row.queried = sampled.positions.size();
    row.uplink_bytes = sampled.uplink_bytes;
    row.sampler_us_per_frame = sampled.sampler_us_per_frame;
    rows.push_back(row);
    csv << CsvLine(row) << std::endl;
    sent_csv << row.strategy << "," << row.budget << "," << row.seed << ",";
    for (size_t i = 0; i < sampled.positions.size(); ++i) sent_csv << (i ? " " : "") << sampled.positions[i];
    sent_csv << std::endl;
    char detail[128];
    std::snprintf(detail, sizeof(detail), "%s %d seed %llu: %lld sent, mAP50 %.3f", run.strategy.c_str(), run.budget,
                  static_cast<unsigned long long>(run.seed), static_cast<long long>(row.queried), row.map50);
    progress.Update(finished, detail);
  }
  progress.Finish();

  const ClosedLoopOptions& loop = config.closed_loop;
  const std::string title =
      flags.closed_loop
          ? config.name + ": " + std::to_string(n) + "-frame stream, closed loop: a round of " +
                std::to_string(loop.steps) + " steps on the newest " + std::to_string(loop.replay_frames) +
                " frames sent every " + std::to_string(loop.round_every) + " frames; mAP50 is the mean over the " +
                "rounds that end after frame " + std::to_string(loop.score_from)
          : config.name + ": " + std::to_string(n) + "-frame stream, " + std::to_string(training.total_steps) +
                " steps per run";
  std::string markdown = StrategiesMarkdown(title, rows, p.stream.duration_s(), p.stream.student_ms);
  if (!p.eval_names.empty()) {
    markdown += "\nThe first table's mAP is the mean over the " + std::to_string(p.eval_names.size()) +
                " eval sets; each set's mAP50:\n" + EvalSetsMarkdown(rows, p.eval_names);
  }
  markdown += PairedDifferencesMarkdown(rows, SamplerStrategyName(SamplerStrategy::kUniform));
  char start_line[160];
  std::snprintf(start_line, sizeof(start_line), "\nStart student (before any queried frame): mAP50 %.3f, mAP50-95 %.3f",
                p.start_eval.map50, p.start_eval.map50_95);
  markdown += start_line;
  for (size_t i = 0; i < p.eval_names.size(); ++i) {
    char set_line[96];
    std::snprintf(set_line, sizeof(set_line), "%s %s %.3f", i == 0 ? "; mAP50 on" : ",", p.eval_names[i].c_str(),
                  p.start_set_evals[i].map50);
    markdown += set_line;
  }
  markdown += ".\n";
  std::ofstream(flags.out + "/strategies.md") << markdown;
  std::printf("\n%s\n", markdown.c_str());
  Status plotted = PlotStrategies(flags.out, "strategies", title, rows);
  if (!plotted.ok()) std::fprintf(stderr, "streamdistill-bench: warning: %s\n", plotted.message().c_str());

  nlohmann::json summary = {{"stream", config.name},
                            {"runs", rows.size()},
                            {"frames", n},
                            {"steps", training.total_steps},
                            {"start_map50", p.start_eval.map50},
                            {"csv", csv_path},
                            {"table", flags.out + "/strategies.md"},
                            {"plot", plotted.ok() ? flags.out + "/strategies.png" : ""}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

int RunUpdateGrid(const Flags& flags, const Prepared& p) {
  const BenchConfig& config = p.config;
  const UpdateGrid& grid = config.updates;
  const int64_t n = p.stream.frames.size();
  const int seeds = flags.seeds > 0 ? flags.seeds : (flags.quick ? 1 : grid.seeds);
  struct Spec {
    UpdateEncoding encoding;
    double fraction;
    uint64_t seed;
  };
  std::vector<Spec> runs;
  for (int seed = 1; seed <= seeds; ++seed)
    for (const UpdateEncoding encoding : grid.encodings) {
      if (encoding != UpdateEncoding::kSparse) {
        runs.push_back({encoding, 1.0, static_cast<uint64_t>(seed)});
        continue;
      }
      for (double f : grid.fractions) runs.push_back({encoding, f, static_cast<uint64_t>(seed)});
    }
  const int iterations = flags.quick ? std::max(1, grid.iterations / 4) : grid.iterations;
  std::printf("updates   %zu runs: %s sends %d frames, a round of %d steps after every %d\n", runs.size(),
              SamplerStrategyName(grid.strategy), grid.budget, iterations, grid.round_every);
  const std::string csv_path = flags.out + "/updates.csv";
  std::ofstream csv(csv_path, std::ios::trunc);
  csv << kUpdatesCsvHeader << "\n";
  std::vector<UpdateRow> rows;
  ProgressLine progress("runs", runs.size(), stdout);
  for (size_t i = 0; i < runs.size(); ++i) {
    const Spec& run = runs[i];
    auto sampled = SampleStream(p.stream, RunSamplerOptions(config.sampling, grid.strategy, grid.budget, run.seed, n,
                                                            p.stream.duration_s()));
    if (!sampled.ok()) return Fail(sampled.status());
    std::vector<TrainingSample> received;
    for (size_t position : sampled->positions) received.push_back(p.stream.frames[position].sample);
    UpdateRunOptions options;
    options.policy.encoding = run.encoding;
    options.policy.sparse_fraction = run.encoding == UpdateEncoding::kSparse ? run.fraction : 0.05;
    options.policy.zstd = grid.zstd;
    options.round_every = grid.round_every;
    options.iterations = iterations;
    options.replay_frames = grid.replay_frames;
    options.chunk_bytes = grid.chunk_bytes;
    options.trainer = p.config.job.training;
    options.trainer.seed = run.seed;
    auto result = ReplayUpdates(p.start, received, options, config.job.inference, p.eval);
    if (!result.ok()) return Fail(result.status());
    UpdateRow row{UpdateEncodingName(run.encoding), run.fraction, run.seed, result->map50, result->map50_95, result->downlink_bytes,
                  result->updates};
    rows.push_back(row);
    csv << CsvLine(row) << std::endl;
    char detail[128];
    std::snprintf(detail, sizeof(detail), "%s %.2f seed %llu: %d updates, %lld bytes, mAP50 %.3f",
                  UpdateEncodingName(run.encoding),
                  run.fraction, static_cast<unsigned long long>(run.seed), row.updates,
                  static_cast<long long>(row.downlink_bytes), row.map50);
    progress.Update(i + 1, detail);
  }
  progress.Finish();
  const std::string title = config.name + ": " + SamplerStrategyName(grid.strategy) + " " + std::to_string(grid.budget) +
                            " frames, a round of " + std::to_string(iterations) + " steps per " +
                            std::to_string(grid.round_every) + " frames";
  const std::string markdown = UpdatesMarkdown(title, rows, p.stream.duration_s());
  std::ofstream(flags.out + "/updates.md") << markdown;
  std::printf("\n%s\n", markdown.c_str());
  Status plotted = PlotUpdates(flags.out, title, rows);
  if (!plotted.ok()) std::fprintf(stderr, "streamdistill-bench: warning: %s\n", plotted.message().c_str());
  nlohmann::json summary = {{"stream", config.name}, {"runs", rows.size()}, {"csv", csv_path},
                            {"table", flags.out + "/updates.md"},
                            {"plot", plotted.ok() ? flags.out + "/updates.png" : ""}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

int RunUplink(const Flags& flags) {
  UplinkBenchOptions options;
  options.edge_config = flags.speed_options.edge_config;
  options.server_config = flags.speed_options.server_config;
  auto encodings = ParseUplinkEncodings(flags.uplink_encodings);
  if (!encodings.ok()) return Fail(encodings.status(), kUsageError);
  options.encodings = *encodings;
  std::filesystem::create_directories(flags.out);
  auto result = MeasureUplinkEncodings(options);
  if (!result.ok()) return Fail(result.status(), 1);
  const std::string markdown = UplinkMarkdown(*result);
  std::ofstream(flags.out + "/uplink.json") << result->dump(2) << "\n";
  std::ofstream(flags.out + "/uplink.md") << markdown;
  std::printf("%s\n", markdown.c_str());
  std::printf("%s\n", nlohmann::json({{"encodings", (*result)["encodings"].size()}, {"json", flags.out + "/uplink.json"}}).dump().c_str());
  return 0;
}

// The segment (and its condition) of each frame of a made stream, by its index in the video.
std::vector<std::pair<int, std::string>> SegmentsByFrame(const ConditionStreamSpec& stream) {
  std::vector<std::pair<int, std::string>> out;
  for (size_t k = 0; k < stream.segments.size(); ++k)
    for (int64_t i = 0; i < stream.segments[k].frames.size(); ++i)
      out.push_back({static_cast<int>(k), stream.segments[k].condition});
  return out;
}

int RunMemoryGrid(const Flags& flags, const Prepared& p) {
  const BenchConfig& config = p.config;
  if (!config.made_stream || p.eval_names.empty())
    return Fail(Status::InvalidArgument(flags.config + ": --memory needs a `stream` section with eval conditions"),
                kUsageError);
  const MemoryGrid& grid = config.memory;
  const int seeds = flags.seeds > 0 ? flags.seeds : (flags.quick ? 1 : grid.seeds);
  const auto segments = SegmentsByFrame(config.stream);
  std::vector<ReceivedFrame> received;
  for (size_t i = 0; i < p.stream.frames.size(); i += grid.stride) {
    const StreamFrame& frame = p.stream.frames[i];
    const size_t at = static_cast<size_t>(frame.index - config.job.train_frames.begin);
    if (at >= segments.size()) return Fail(Status::Internal("stream frame " + std::to_string(frame.index) + " is in no segment"));
    received.push_back({frame.sample, AppearanceEmbedding(frame.sample.bgr), segments[at].second, segments[at].first});
  }
  std::map<std::string, std::vector<LabelledFrame>> eval;
  for (size_t i = 0; i < p.eval_names.size(); ++i) eval[p.eval_names[i]] = p.eval_sets[i];
  const int iterations = flags.quick ? std::max(1, grid.iterations / 4) : grid.iterations;
  std::printf("memory    %zu frames received, a round of %d steps after every %d; 2 modes x %d seeds\n",
              received.size(), iterations, grid.round_every, seeds);

  const std::string csv_path = flags.out + "/memory.csv";
  std::ofstream csv(csv_path, std::ios::trunc);
  csv << "mode,seed,round,received,condition,published";
  for (const std::string& set : p.eval_names) csv << ",map50_" << set;
  csv << "\n";
  std::vector<MemoryRun> runs;
  ProgressLine progress("runs", 2 * seeds, stdout);
  for (int seed = 1; seed <= seeds; ++seed)
    for (const std::string mode : {"window", "memory"}) {
      MemoryRunOptions options;
      options.round_every = grid.round_every;
      options.validation_every = grid.validation_every;
      options.round.iterations = iterations;
      options.round.max_map50_drop = grid.max_map50_drop;
      options.round.max_forgetting = grid.max_forgetting;
      options.round.trainer = config.job.training;
      options.round.trainer.seed = seed;
      options.windows.replay_frames = grid.replay_frames;
      options.windows.validation_frames = grid.validation_frames;
      options.windows.memory_frames = mode == "memory" ? grid.memory_frames : 0;
      options.windows.longterm_validation_frames = mode == "memory" ? grid.longterm_validation_frames : 0;
      auto rounds = ReplayWithMemory(p.start, received, options, eval);
      if (!rounds.ok()) return Fail(rounds.status());
      for (const MemoryRoundRecord& r : *rounds) {
        csv << mode << "," << seed << "," << r.round << "," << r.received << "," << r.condition << ","
            << (r.published ? 1 : 0);
        for (const std::string& set : p.eval_names) csv << "," << r.map50.at(set);
        csv << "\n";
      }
      csv.flush();
      runs.push_back({mode, static_cast<uint64_t>(seed), std::move(*rounds)});
      std::string detail = std::string(mode) + " seed " + std::to_string(seed) + ":";
      for (const std::string& set : p.eval_names) detail += " " + set + " " + std::to_string(runs.back().rounds.back().map50.at(set)).substr(0, 5);
      progress.Update(runs.size(), detail);
    }
  progress.Finish();
  const std::string title = config.name + ": " + std::to_string(received.size()) + " frames received, a round of " +
                            std::to_string(iterations) + " steps per " + std::to_string(grid.round_every) +
                            " frames on the newest " + std::to_string(grid.replay_frames) +
                            " (memory: + " + std::to_string(grid.memory_frames) + " long-term, " +
                            std::to_string(grid.longterm_validation_frames) + " long-term held out)";
  const std::string markdown = MemoryMarkdown(title, runs, p.eval_names);
  std::ofstream(flags.out + "/memory.md") << markdown;
  std::printf("\n%s\n", markdown.c_str());
  return 0;
}

// The across-streams table of the folders' strategies.csv files, on stdout; each folder's last
// path component names its stream.
int CompareStreams(const std::vector<std::string>& folders) {
  std::vector<StreamRuns> streams;
  for (std::string folder : folders) {
    while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    auto rows = ReadStrategiesCsv(folder + "/strategies.csv");
    if (!rows.ok()) {
      std::fprintf(stderr, "streamdistill-bench: error: %s\n", rows.status().message().c_str());
      return 1;
    }
    streams.push_back({folder.substr(folder.find_last_of('/') + 1), std::move(*rows)});
  }
  std::printf("%s\n%zu streams.\n", AcrossStreamsMarkdown(streams, SamplerStrategyName(SamplerStrategy::kUniform)).c_str(), streams.size());
  return 0;
}

int Run(const Flags& flags) {
  if (!flags.compare_streams.empty()) return CompareStreams(flags.compare_streams);
  if (flags.speed) return RunSpeedBench(flags.speed_options, flags.out);
  if (flags.uplink) return RunUplink(flags);
  Prepared prepared;
  if (int code = Prepare(flags, &prepared); code != 0) return code;
  if (flags.memory) return RunMemoryGrid(flags, prepared);
  return flags.updates ? RunUpdateGrid(flags, prepared) : RunStrategyGrid(flags, prepared);
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-bench: sampling strategies x budgets x seeds, replayed offline"};
  sd::Flags flags;
  auto* config = app.add_option("--config", flags.config,
                                "YAML bench config (configs/bench_vtest.yaml, configs/bench_drift.yaml)");
  auto* speed = app.add_flag("--speed", flags.speed,
                             "the edge speed benchmark (OUT/speed.json, speed.md): student vs teacher, the edge's path");
  config->excludes(speed);
  auto* uplink = app.add_flag("--uplink", flags.uplink,
                              "bytes and teacher-label agreement of frame encodings (OUT/uplink.json, uplink.md)");
  config->excludes(uplink);
  uplink->excludes(speed);
  app.add_option("--edge-config", flags.speed_options.edge_config, "--speed, --uplink: the edge's config (student, video)");
  app.add_option("--server-config", flags.speed_options.server_config, "--speed, --uplink: the server's config (teacher)");
  app.add_option("--encodings", flags.uplink_encodings, "--uplink: WIDTHxQUALITY,... (width 0: the source's)")
      ->needs(uplink);
  app.add_option("--weights", flags.speed_options.weights, "--speed: student checkpoint or deployed.sdw (default: random)")
      ->needs(speed);
  app.add_option("--frames", flags.speed_options.frames, "--speed: frames timed (default 200)")->needs(speed);
  app.add_option("--path-frames", flags.speed_options.path_frames,
                 "--speed: frames through the edge's whole path, per thread count (default 300)")
      ->needs(speed);
  app.add_option("--out", flags.out, "output folder (strategies.csv, strategies.md, strategies.png)");
  app.add_flag("--quick", flags.quick, "the config's quick grid: a smoke test in minutes");
  app.add_flag("--updates", flags.updates,
               "the update-encoding grid (OUT/updates.csv, .md, .png) instead of the strategy grid");
  app.add_flag("--memory", flags.memory,
               "the server's rounds with and without the long-term memory on a made stream (OUT/memory.csv, .md)");
  auto* closed_loop = app.add_flag("--closed-loop", flags.closed_loop,
               "the strategy grid with the server's rounds in the loop (config closed_loop): each run's mAP50 is the "
               "mean over its rounds after closed_loop.score_from; OUT/rounds.csv holds every round");
  app.add_flag("--resume", flags.resume, "keep the runs already in OUT/strategies.csv and do the rest");
  app.add_option("--strategies", flags.strategies, "override the grid's strategies")->delimiter(',');
  app.add_option("--budgets", flags.budgets, "override the grid's budgets")->delimiter(',');
  app.add_option("--seeds", flags.seeds, "override the grid's seed count");
  app.add_option("--steps", flags.steps, "override the fine-tuning steps per run");
  closed_loop->excludes("--memory")->excludes("--updates");
  auto* compare = app.add_option("--compare-streams", flags.compare_streams,
                                 "bench output folders, one stream each: every strategy against uniform across the "
                                 "streams (markdown on stdout) instead of a grid");
  compare->excludes(config)->excludes(speed)->excludes(uplink);
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  if (!flags.speed && !flags.uplink && flags.compare_streams.empty() && flags.config.empty()) {
    std::fprintf(stderr, "streamdistill-bench: error: --config is required (or --speed, --uplink, --compare-streams)\n");
    return 2;
  }
  if (flags.speed && flags.out == "out/bench") flags.out = "out/speed";
  if (flags.uplink && flags.out == "out/bench") flags.out = "out/uplink";
  return sd::Run(flags);
}
