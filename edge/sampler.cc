#include "edge/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "edge/holding_samplers.h"
#include "edge/sampler_policies.h"

namespace sd {
namespace {

// Held candidates are encoded frames in the edge's memory: keep a typo from holding gigabytes.
constexpr int kMaxPoolCandidates = 1000;

}  // namespace

StatusOr<ScoreAggregate> ParseScoreAggregate(const std::string& name) {
  if (name == "max") return ScoreAggregate::kMax;
  if (name == "min") return ScoreAggregate::kMin;
  if (name == "mean") return ScoreAggregate::kMean;
  if (name == "sum") return ScoreAggregate::kSum;
  return Status::InvalidArgument("score aggregate '" + name + "' unknown (max | min | mean | sum)");
}

const char* ScoreAggregateName(ScoreAggregate aggregate) {
  switch (aggregate) {
    case ScoreAggregate::kMax: return "max";
    case ScoreAggregate::kMin: return "min";
    case ScoreAggregate::kMean: return "mean";
    case ScoreAggregate::kSum: return "sum";
  }
  return "?";
}

std::optional<float> ImageScore(const Detections& detections, ScoreAggregate aggregate) {
  if (detections.empty()) return std::nullopt;
  double max = detections[0].score, min = detections[0].score, sum = 0;
  for (const Detection& d : detections) {
    max = std::max<double>(max, d.score);
    min = std::min<double>(min, d.score);
    sum += d.score;
  }
  switch (aggregate) {
    case ScoreAggregate::kMax: return static_cast<float>(max);
    case ScoreAggregate::kMin: return static_cast<float>(min);
    case ScoreAggregate::kMean: return static_cast<float>(sum / static_cast<double>(detections.size()));
    case ScoreAggregate::kSum: return static_cast<float>(sum);
  }
  return std::nullopt;
}

double SamplerOptions::EffectivePercentile() const {
  return percentile.value_or(strategy == SamplerStrategy::kLeastConfidence ? 10.0 : 90.0);
}

int SamplerOptions::PoolBudget() const {
  if (pool_size > 0) return pool_size;
  // Rounded down: the pools must not promise more than the rate budget gives.
  return static_cast<int>(std::floor(budget_per_minute * pool_window_s / 60.0 + 1e-9));
}

double SamplerOptions::CoverageGapSeconds() const {
  const bool ranks_frames = strategy == SamplerStrategy::kTopConfidence ||
                            strategy == SamplerStrategy::kLeastConfidence || strategy == SamplerStrategy::kDiversity ||
                            strategy == SamplerStrategy::kTopConfidenceDiversity;
  if (!ranks_frames || !(coverage_share > 0) || !(budget_per_minute > 0)) return std::numeric_limits<double>::infinity();
  return 60.0 / (budget_per_minute * coverage_share);
}

Status SamplerOptions::Validate() const {
  // "<field>: <problem>": a config reader reports it at the field's key and line.
  auto bad = [](const std::string& field, const std::string& what) {
    return Status::InvalidArgument(field + ": " + what);
  };
  auto str = [](double v) { return std::to_string(v); };
  const auto& all = AllSamplerStrategies();
  if (std::find(all.begin(), all.end(), strategy) == all.end()) return bad("strategy", "out of range");
  if (!std::isfinite(budget_per_minute) || budget_per_minute < 0) {
    return bad("budget_per_minute", "must be >= 0 (0: no rate limit), got " + str(budget_per_minute));
  }
  if (budget_total < 0) return bad("budget_total", "must be >= 0 (0: unlimited), got " + std::to_string(budget_total));
  if (strategy == SamplerStrategy::kFirstN && budget_total == 0) {
    return bad("budget_total", "first_n takes the first budget_total frames; set it > 0");
  }
  if (!(uniform_probability >= 0 && uniform_probability <= 1)) {
    return bad("uniform_probability", "must be in [0, 1], got " + str(uniform_probability));
  }
  if (uniform_every < 0) return bad("uniform_every", "must be >= 0, got " + std::to_string(uniform_every));
  if (percentile && !(*percentile >= 0 && *percentile <= 100)) {
    return bad("percentile", "must be in [0, 100], got " + str(*percentile));
  }
  if (warmup_frames < 0) return bad("warmup_frames", "must be >= 0, got " + std::to_string(warmup_frames));
  if (window_frames < 1) return bad("window_frames", "must be >= 1, got " + std::to_string(window_frames));
  if (diversity_history < 1) return bad("diversity_history", "must be >= 1, got " + std::to_string(diversity_history));
  if (pool_size < 0) return bad("pool_size", "must be >= 0 (0: from budget_per_minute), got " + std::to_string(pool_size));
  if (!(pool_window_s > 0) || !std::isfinite(pool_window_s)) {
    return bad("pool_window_s", "must be > 0, got " + str(pool_window_s));
  }
  if (!(gamma >= 1) || !std::isfinite(gamma)) {
    return bad("gamma", "must be >= 1 (candidates per frame sent), got " + str(gamma));
  }
  if (strategy == SamplerStrategy::kTopConfidenceDiversity) {
    const int per_pool = PoolBudget();
    if (per_pool < 1) {
      return bad("pool_size", "top_confidence_diversity needs pool_size > 0, or budget_per_minute x "
                              "pool_window_s / 60 >= 1 (got " + str(budget_per_minute * pool_window_s / 60.0) + ")");
    }
    if (gamma * per_pool > kMaxPoolCandidates + 1e-9) {
      return bad("gamma", "gamma x pool_size = " + str(gamma * per_pool) + " candidates; at most " +
                 std::to_string(kMaxPoolCandidates) + " frames may be held");
    }
  }
  if (!std::isfinite(ams_max_rate)) return bad("ams_max_rate", "must be finite, got " + str(ams_max_rate));
  if (!(ams_min_rate > 0) || ams_max_rate < ams_min_rate) {
    return bad("ams_min_rate",
               "need 0 < ams_min_rate <= ams_max_rate, got " + str(ams_min_rate) + " and " + str(ams_max_rate));
  }
  if (!(ams_initial_rate >= ams_min_rate && ams_initial_rate <= ams_max_rate)) {
    return bad("ams_initial_rate", "must be in [ams_min_rate, ams_max_rate], got " + str(ams_initial_rate));
  }
  if (strategy == SamplerStrategy::kPacedConfidenceDiversity && !(budget_per_minute > 0)) {
    return bad("budget_per_minute", "paced_confidence_diversity sends one frame per 60 / budget_per_minute s; set it > 0");
  }
  if (!(diversity_weight >= 0) || !std::isfinite(diversity_weight)) {
    return bad("diversity_weight", "must be >= 0, got " + str(diversity_weight));
  }
  if (!(coverage_share >= 0 && coverage_share <= 1)) {
    return bad("coverage_share", "must be in [0, 1] (0: off), got " + str(coverage_share));
  }
  if (ams_update_every < 1) return bad("ams_update_every", "must be >= 1, got " + std::to_string(ams_update_every));
  switch (aggregate) {
    case ScoreAggregate::kMax:
    case ScoreAggregate::kMin:
    case ScoreAggregate::kMean:
    case ScoreAggregate::kSum:
      return Status::Ok();
  }
  return bad("aggregate", "out of range");
}

namespace {

struct StrategyWord {
  SamplerStrategy strategy;
  const char* name;
};

// The one place where strategies meet their words.
constexpr StrategyWord kStrategyWords[] = {
    {SamplerStrategy::kUniform, "uniform"},
    {SamplerStrategy::kRandom, "random"},
    {SamplerStrategy::kFirstN, "first_n"},
    {SamplerStrategy::kTopConfidence, "top_confidence"},
    {SamplerStrategy::kLeastConfidence, "least_confidence"},
    {SamplerStrategy::kDiversity, "diversity"},
    {SamplerStrategy::kTopConfidenceDiversity, "top_confidence_diversity"},
    {SamplerStrategy::kAmsAdaptive, "ams_adaptive"},
    {SamplerStrategy::kPacedConfidenceDiversity, "paced_confidence_diversity"},
};

}  // namespace

StatusOr<SamplerStrategy> ParseSamplerStrategy(const std::string& name) {
  std::string names;
  for (const StrategyWord& word : kStrategyWords) {
    if (name == word.name) return word.strategy;
    names += (names.empty() ? "" : " | ") + std::string(word.name);
  }
  return Status::InvalidArgument("strategy '" + name + "' unknown (" + names + ")");
}

const char* SamplerStrategyName(SamplerStrategy strategy) {
  for (const StrategyWord& word : kStrategyWords) {
    if (word.strategy == strategy) return word.name;
  }
  return "?";
}

const std::vector<SamplerStrategy>& AllSamplerStrategies() {
  static const std::vector<SamplerStrategy> all = [] {
    std::vector<SamplerStrategy> out;
    for (const StrategyWord& word : kStrategyWords) out.push_back(word.strategy);
    return out;
  }();
  return all;
}

const std::vector<std::string>& SamplerStrategies() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const StrategyWord& word : kStrategyWords) out.push_back(word.name);
    return out;
  }();
  return names;
}

bool IsSamplerStrategy(const std::string& name) { return ParseSamplerStrategy(name).ok(); }

Sampler::~Sampler() = default;
std::vector<int64_t> Sampler::TakeReleased() { return {}; }
std::vector<int64_t> Sampler::TakeDropped() { return {}; }
void Sampler::OnTeacherAgreement(double) {}

StatusOr<std::unique_ptr<Sampler>> CreateSampler(const SamplerOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("sampler"));
  switch (options.strategy) {
    case SamplerStrategy::kTopConfidenceDiversity:
      return MakePoolSampler(options);
    case SamplerStrategy::kPacedConfidenceDiversity:
      return MakePacedSampler(options);
    default:
      return MakeStreamSampler(options);
  }
}

SamplerOptions ForDetectEvery(SamplerOptions options, int detect_every) {
  if (detect_every <= 1) return options;
  options.uniform_probability = std::min(1.0, options.uniform_probability * detect_every);
  if (options.uniform_every > 0) options.uniform_every = std::max(1, options.uniform_every / detect_every);
  options.warmup_frames /= detect_every;
  return options;
}

}  // namespace sd
