// configs/bench_*.yaml -> BenchConfig: one stream (a video with the teacher's labels, or the
// synthetic scene with its exact ground truth) and the grid streamdistill-bench runs on it.
// Every key is documented in docs/results.md.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bench/closed_loop.h"
#include "bench/condition_stream.h"
#include "tools/train_job_config.h"
#include "common/base/status.h"
#include "common/student/student_trainer.h"
#include "common/link/update_codec.h"
#include "edge/frame_encoding.h"
#include "edge/sampler.h"

namespace sd {

struct PretrainOptions {
  int frames = 10;          // evenly spaced over `range`: "a little uniform data"
  FrameRange range{0, 0};   // default: the job's train_frames
  TrainerOptions training;  // from random weights (model_seed)
};

struct BenchGrid {
  std::vector<std::string> strategies;  // strategies and variants (BenchConfig::variants)
  std::vector<int> budgets;  // frames queried over the whole stream
  int seeds = 3;             // seeds 1..seeds: sampler (random), training order and augmentation
  bool all_frames_baseline = true;

  // "<field>: <problem>" for budgets or seeds out of range (the reader resolves `strategies`
  // against the strategies and the config's variants).
  Status Validate() const;
};

// --updates: the server's rounds on the frames one strategy sent, per update encoding.
struct UpdateGrid {
  SamplerStrategy strategy = SamplerStrategy::kTopConfidenceDiversity;  // which frames the edge sends
  int budget = 100;                                                      // of them over the stream
  int round_every = 20;   // a round after every N new frames
  int iterations = 40;    // Adam steps per round
  int replay_frames = 300;
  std::vector<UpdateEncoding> encodings = {UpdateEncoding::kFullFp32, UpdateEncoding::kFullFp16,
                                           UpdateEncoding::kInt8, UpdateEncoding::kSparse};
  std::vector<double> fractions = {0.01, 0.05, 0.1, 0.2};  // sparse's f
  int seeds = 3;
  bool zstd = true;
  int chunk_bytes = 256 << 10;

  Status Validate() const;  // "<field>: <problem>", the field named as its YAML key
};

// --memory: the server's rounds on a stream whose conditions change and come back, with the
// newest-frames window alone (mode `window`) and with the long-term memory (mode `memory`),
// each round's student scored on every eval set (bench/memory_rounds.h).
struct MemoryGrid {
  int stride = 1;        // every k-th frame of the stream reaches the server
  int round_every = 30;  // a round after every N received frames
  int iterations = 40;   // Adam steps per round
  int replay_frames = 60;
  int validation_every = 5;
  int validation_frames = 10;
  int memory_frames = 30;               // mode memory; mode window has none
  int longterm_validation_frames = 20;  // mode memory; mode window has none
  double max_map50_drop = 0.02;
  double max_forgetting = 0.03;
  int seeds = 3;

  Status Validate() const;  // "<field>: <problem>", the field named as its YAML key
};

// A held-out set scored on its own (the stream section's eval conditions).
struct EvalSet {
  std::string name;
  FrameRange frames;
};

struct BenchConfig {
  std::string name;  // the stream's name in tables and plots (default: the config's file stem)
  // `stream`: the video is made from a real one under conditions (condition_stream.h); the
  // job's video, train_frames and pretrain.range then come from its layout.
  bool made_stream = false;
  ConditionStreamSpec stream;
  ConditionStreamLayout stream_layout;
  // Scored one by one, each run's mAP the mean over them; empty: the job's eval_frames alone.
  std::vector<EvalSet> eval_sets;
  // The stream the edge sees is the job's train_frames; evaluation on its eval_frames. The
  // job's `training` section is every fine-tuning run's, from the start checkpoint.
  TrainJobConfig job;
  bool ground_truth_labels = false;  // labels: ground_truth (synthetic sources) instead of the teacher
  PretrainOptions pretrain;
  SamplerOptions sampling;           // base options; strategy, budget and seed set per run
  // Named sampling settings over `sampling` (a strategy with its own coverage_share, ...) that
  // the grids run beside the plain strategies, from the same start checkpoint: paired runs.
  std::map<std::string, SamplerOptions> variants;
  FrameEncodingOptions upload;       // for the uplink bytes of the queried frames
  BenchGrid grid;
  BenchGrid quick;                   // --quick
  int quick_steps = 40;              // --quick: fine-tuning steps per run
  UpdateGrid updates;
  MemoryGrid memory;
  ClosedLoopOptions closed_loop;     // --closed-loop: the strategy grid with rounds in the loop
};

// `base: other.yaml` (a path relative to the file) reads that config first and lays this one's
// keys over it: maps merge key by key, a list or a scalar replaces the base's. Bases may chain.
StatusOr<BenchConfig> LoadBenchConfig(const std::string& path);

// The sampler options of a grid entry: a variant's, or `sampling` with the strategy named.
SamplerOptions GridEntryOptions(const BenchConfig& config, const std::string& entry);

}  // namespace sd
