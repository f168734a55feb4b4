#include "bench/bench_config.h"

#include <filesystem>

#include <yaml-cpp/yaml.h>

#include "common/config/yaml_overlay.h"
#include "edge/edge_config.h"
#include "edge/sampler.h"

namespace sd {
namespace {

// A Validate() message: the field first, named as its YAML key, for YamlReader::Check.
Status Invalid(const std::string& field, const std::string& problem) {
  return Status::InvalidArgument(field + ": " + problem);
}
bool SeedsInRange(int seeds) { return seeds >= 1 && seeds <= 100; }

Status ReadGrid(const YamlReader& section, const std::map<std::string, SamplerOptions>& variants, BenchGrid* grid) {
  SD_RETURN_IF_ERROR(section.Get("strategies", &grid->strategies));
  SD_RETURN_IF_ERROR(section.Get("budgets", &grid->budgets));
  SD_RETURN_IF_ERROR(section.Get("seeds", &grid->seeds));
  SD_RETURN_IF_ERROR(section.Get("all_frames_baseline", &grid->all_frames_baseline));
  for (const std::string& s : grid->strategies)
    if (!IsSamplerStrategy(s) && !variants.count(s))
      return section.Error("strategies", "unknown strategy or variant '" + s + "'");
  return section.Check(grid->Validate());
}

Status ReadUpdateGrid(const YamlReader& section, UpdateGrid* u) {
  std::string strategy = SamplerStrategyName(u->strategy);
  SD_RETURN_IF_ERROR(section.Get("strategy", &strategy));
  StatusOr<SamplerStrategy> parsed = ParseSamplerStrategy(strategy);
  if (!parsed.ok()) return section.Error("strategy", parsed.status().message());
  u->strategy = *parsed;
  SD_RETURN_IF_ERROR(section.Get("budget", &u->budget));
  SD_RETURN_IF_ERROR(section.Get("round_every", &u->round_every));
  SD_RETURN_IF_ERROR(section.Get("iterations", &u->iterations));
  SD_RETURN_IF_ERROR(section.Get("replay_frames", &u->replay_frames));
  std::vector<std::string> encodings;
  for (UpdateEncoding e : u->encodings) encodings.push_back(UpdateEncodingName(e));
  SD_RETURN_IF_ERROR(section.Get("encodings", &encodings));
  SD_RETURN_IF_ERROR(section.Get("fractions", &u->fractions));
  SD_RETURN_IF_ERROR(section.Get("seeds", &u->seeds));
  SD_RETURN_IF_ERROR(section.Get("zstd", &u->zstd));
  SD_RETURN_IF_ERROR(section.Get("chunk_bytes", &u->chunk_bytes));
  u->encodings.clear();
  for (const std::string& e : encodings) {
    StatusOr<UpdateEncoding> parsed = ParseUpdateEncoding(e);
    if (!parsed.ok()) return section.Error("encodings", "unknown encoding '" + e + "'");
    u->encodings.push_back(*parsed);
  }
  return section.Check(u->Validate());
}

Status ReadMemoryGrid(const YamlReader& section, MemoryGrid* m) {
  SD_RETURN_IF_ERROR(section.Get("stride", &m->stride));
  SD_RETURN_IF_ERROR(section.Get("round_every", &m->round_every));
  SD_RETURN_IF_ERROR(section.Get("iterations", &m->iterations));
  SD_RETURN_IF_ERROR(section.Get("replay_frames", &m->replay_frames));
  SD_RETURN_IF_ERROR(section.Get("validation_every", &m->validation_every));
  SD_RETURN_IF_ERROR(section.Get("validation_frames", &m->validation_frames));
  SD_RETURN_IF_ERROR(section.Get("memory_frames", &m->memory_frames));
  SD_RETURN_IF_ERROR(section.Get("longterm_validation_frames", &m->longterm_validation_frames));
  SD_RETURN_IF_ERROR(section.Get("max_map50_drop", &m->max_map50_drop));
  SD_RETURN_IF_ERROR(section.Get("max_forgetting", &m->max_forgetting));
  SD_RETURN_IF_ERROR(section.Get("seeds", &m->seeds));
  return section.Check(m->Validate());
}

Status ReadClosedLoop(const YamlReader& section, ClosedLoopOptions* loop) {
  SD_RETURN_IF_ERROR(section.Get("round_every", &loop->round_every));
  SD_RETURN_IF_ERROR(section.Get("steps", &loop->steps));
  SD_RETURN_IF_ERROR(section.Get("replay_frames", &loop->replay_frames));
  SD_RETURN_IF_ERROR(section.Get("score_from", &loop->score_from));
  return section.Check(loop->Validate());
}

Status ReadVariants(const YamlReader& root, BenchConfig* c) {
  SD_ASSIGN_OR_RETURN(YamlReader variants, root.Child("variants"));
  for (const std::string& name : variants.Keys()) {
    if (IsSamplerStrategy(name) || name == "all_frames")
      return variants.Error(name, "a variant needs a name of its own, not a strategy's");
    SD_ASSIGN_OR_RETURN(YamlReader v, variants.Child(name));
    if (!v.Has("strategy")) return v.Error("strategy", "missing required key");
    SamplerOptions options = c->sampling;
    SD_RETURN_IF_ERROR(ReadSamplerOptions(v, &options));  // parses and checks the strategy
    c->variants[name] = options;
  }
  return Status::Ok();
}

// `stream`: the video, the stream, the eval sets and (when the section has a pretrain block)
// the start student's range come from the made file's layout, so the job's keys for them
// must not be there as well.
Status ReadStream(const YamlReader& root, BenchConfig* c) {
  if (!root.Has("stream")) {
    if (!root.Has("video")) return root.Error("video", "missing required key (or a stream section)");
    return Status::Ok();
  }
  for (const char* key : {"video", "train_frames", "eval_frames"})
    if (root.Has(key)) return root.Error(key, "comes from the stream section; remove it");
  SD_ASSIGN_OR_RETURN(YamlReader stream, root.Child("stream"));
  SD_RETURN_IF_ERROR(ReadConditionStreamSpec(stream, &c->stream));
  c->made_stream = true;
  c->stream_layout = LayOutConditionStream(c->stream, c->job.cache_dir);
  c->job.video = c->stream_layout.video;
  c->job.train_frames = c->stream_layout.train_frames;
  for (const auto& set : c->stream_layout.eval_sets) c->eval_sets.push_back({set.name, set.frames});
  c->job.eval_frames = {c->eval_sets.front().frames.begin, c->eval_sets.back().frames.end};
  return Status::Ok();
}

// `labels`, as BenchConfig::ground_truth_labels: teacher (false) or ground_truth (true).
StatusOr<bool> ParseLabelSource(const std::string& name) {
  if (name == "teacher") return false;
  if (name == "ground_truth") return true;
  return Status::InvalidArgument("must be 'teacher' or 'ground_truth'");
}

Status Parse(const YamlReader& root, BenchConfig* c) {
  SD_RETURN_IF_ERROR(ReadTrainJobFields(root, &c->job));
  SD_RETURN_IF_ERROR(ReadStream(root, c));
  SD_RETURN_IF_ERROR(root.Get("name", &c->name));
  std::string labels = "teacher";
  SD_RETURN_IF_ERROR(root.Get("labels", &labels));
  StatusOr<bool> ground_truth = ParseLabelSource(labels);
  if (!ground_truth.ok()) return root.Error("labels", ground_truth.status().message());
  c->ground_truth_labels = *ground_truth;
  if (c->ground_truth_labels && c->job.video.rfind("synthetic:", 0) != 0)
    return root.Error("labels", "ground_truth needs a synthetic: video");

  SD_ASSIGN_OR_RETURN(YamlReader pretrain, root.Child("pretrain"));
  SD_RETURN_IF_ERROR(pretrain.Get("frames", &c->pretrain.frames));
  c->pretrain.range = c->job.train_frames;
  if (c->made_stream && c->stream_layout.pretrain_frames.size() > 0) {
    if (pretrain.Has("range")) return pretrain.Error("range", "comes from stream.pretrain; remove one of them");
    c->pretrain.range = c->stream_layout.pretrain_frames;
  }
  if (pretrain.Has("range")) SD_RETURN_IF_ERROR(ReadFrameRange(pretrain, "range", &c->pretrain.range));
  SD_ASSIGN_OR_RETURN(YamlReader pretrain_training, pretrain.Child("training"));
  SD_RETURN_IF_ERROR(ReadTrainerOptions(pretrain_training, &c->pretrain.training));
  if (c->pretrain.frames < 1 || c->pretrain.frames > c->pretrain.range.size())
    return pretrain.Error("frames", "must be in 1..the size of pretrain.range");

  SD_ASSIGN_OR_RETURN(YamlReader sampling, root.Child("sampling"));
  SD_RETURN_IF_ERROR(ReadSamplerOptions(sampling, &c->sampling));
  SD_RETURN_IF_ERROR(ReadVariants(root, c));

  SD_ASSIGN_OR_RETURN(YamlReader upload, root.Child("upload"));
  SD_RETURN_IF_ERROR(upload.Get("jpeg_quality", &c->upload.jpeg_quality));
  SD_RETURN_IF_ERROR(upload.Get("max_width", &c->upload.max_width));
  SD_RETURN_IF_ERROR(upload.Check(c->upload.Validate()));
  c->upload.aggregate = c->sampling.aggregate;

  c->grid.strategies = SamplerStrategies();
  c->grid.budgets = {25, 50, 100, 200};
  SD_ASSIGN_OR_RETURN(YamlReader grid, root.Child("grid"));
  SD_RETURN_IF_ERROR(ReadGrid(grid, c->variants, &c->grid));
  c->quick = c->grid;
  c->quick.budgets = {25, 100};
  c->quick.seeds = 1;
  SD_ASSIGN_OR_RETURN(YamlReader quick, root.Child("quick"));
  SD_RETURN_IF_ERROR(ReadGrid(quick, c->variants, &c->quick));
  SD_RETURN_IF_ERROR(quick.Get("steps", &c->quick_steps));
  if (c->quick_steps < 1) return quick.Error("steps", "must be >= 1");
  SD_ASSIGN_OR_RETURN(YamlReader updates, root.Child("updates"));
  SD_RETURN_IF_ERROR(ReadUpdateGrid(updates, &c->updates));
  SD_ASSIGN_OR_RETURN(YamlReader memory, root.Child("memory"));
  SD_RETURN_IF_ERROR(ReadMemoryGrid(memory, &c->memory));
  SD_ASSIGN_OR_RETURN(YamlReader loop, root.Child("closed_loop"));
  SD_RETURN_IF_ERROR(ReadClosedLoop(loop, &c->closed_loop));
  return root.CheckAllKeysUsed();
}

}  // namespace

Status BenchGrid::Validate() const {
  for (int b : budgets)
    if (b < 1) return Invalid("budgets", "every budget must be >= 1 frame");
  if (!SeedsInRange(seeds)) return Invalid("seeds", "must be in 1..100");
  return Status::Ok();
}

Status UpdateGrid::Validate() const {
  for (double f : fractions)
    if (!(f > 0 && f < 1)) return Invalid("fractions", "every fraction must be in (0, 1)");
  if (budget < 1) return Invalid("budget", "must be >= 1");
  if (round_every < 1 || round_every > budget) return Invalid("round_every", "must be in 1..budget");
  if (iterations < 1) return Invalid("iterations", "must be >= 1");
  if (replay_frames < 1) return Invalid("replay_frames", "must be >= 1");
  if (!SeedsInRange(seeds)) return Invalid("seeds", "must be in 1..100");
  if (chunk_bytes < 1024) return Invalid("chunk_bytes", "must be >= 1024");
  return Status::Ok();
}

Status MemoryGrid::Validate() const {
  if (stride < 1) return Invalid("stride", "must be >= 1");
  if (round_every < 1) return Invalid("round_every", "must be >= 1");
  if (iterations < 1) return Invalid("iterations", "must be >= 1");
  if (replay_frames < 1) return Invalid("replay_frames", "must be >= 1");
  if (validation_every < 2) return Invalid("validation_every", "must be >= 2");
  if (validation_frames < 1) return Invalid("validation_frames", "must be >= 1");
  if (memory_frames < 0) return Invalid("memory_frames", "must be >= 0");
  if (longterm_validation_frames < 0) return Invalid("longterm_validation_frames", "must be >= 0");
  if (!(max_map50_drop >= 0)) return Invalid("max_map50_drop", "must be >= 0");
  if (!(max_forgetting >= 0)) return Invalid("max_forgetting", "must be >= 0");
  if (!SeedsInRange(seeds)) return Invalid("seeds", "must be in 1..100");
  return Status::Ok();
}

StatusOr<BenchConfig> LoadBenchConfig(const std::string& path) {
  // A stream that differs from another in a few keys says so with `base:` instead of copying it.
  SD_ASSIGN_OR_RETURN(YAML::Node document, LoadYamlWithBase(path, "a bench config"));
  // Errors name the file; with a base, their lines are those of the merged document.
  SD_ASSIGN_OR_RETURN(YamlReader root, YamlReader::FromString(EmitYaml(document), path));
  BenchConfig config;
  SD_RETURN_IF_ERROR(Parse(root, &config));
  if (config.name.empty()) config.name = std::filesystem::path(path).stem().string();
  return config;
}

SamplerOptions GridEntryOptions(const BenchConfig& config, const std::string& entry) {
  auto variant = config.variants.find(entry);
  if (variant != config.variants.end()) return variant->second;
  SamplerOptions options = config.sampling;
  StatusOr<SamplerStrategy> strategy = ParseSamplerStrategy(entry);  // ReadGrid checked every entry
  if (strategy.ok()) options.strategy = *strategy;
  return options;
}

}  // namespace sd
