#include "edge/sampler.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>

namespace sd {
namespace {

// Token bucket over capture time. Starts full, so the first frames after start-up can go.
class TokenBucket {
 public:
  explicit TokenBucket(double per_minute)
      : unlimited_(per_minute <= 0),
        rate_per_s_(per_minute / 60.0),
        burst_(std::max(1.0, per_minute / 6.0)),
        tokens_(burst_) {}

  // Refills for the capture time elapsed since the previous frame. Time going backwards (a
  // looping or restarted source) refills nothing and becomes the new reference.
  void Advance(double time_s) {
    if (unlimited_) return;
    if (has_last_ && time_s > last_s_) tokens_ = std::min(burst_, tokens_ + (time_s - last_s_) * rate_per_s_);
    last_s_ = time_s;
    has_last_ = true;
  }

  bool TryTake() {
    if (unlimited_) return true;
    // Refills are summed from many small steps; do not lose a token to rounding.
    if (tokens_ < 1.0 - 1e-9) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  bool unlimited_;
  double rate_per_s_;
  double burst_;
  double tokens_;
  double last_s_ = 0;
  bool has_last_ = false;
};

// A strategy's wish for one frame, before the budget. Called for every frame the sampler
// considers (so it can keep statistics even while the budget says no).
class Policy {
 public:
  virtual ~Policy() = default;
  virtual bool Wants(const FrameFeatures& frame) = 0;
};

class UniformPolicy : public Policy {
 public:
  UniformPolicy(double probability, int every, uint64_t seed) : probability_(probability), every_(every), rng_(seed) {}

  bool Wants(const FrameFeatures&) override {
    if (every_ > 0) return considered_++ % every_ == 0;
    // 53 random bits -> [0, 1): unlike std::uniform_real_distribution, the same on every
    // standard library, so a seed means the same frames everywhere.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    return u < probability_;
  }

 private:
  double probability_;
  int64_t every_;
  int64_t considered_ = 0;
  std::mt19937_64 rng_;
};

// The last `capacity` scores in arrival order and in sorted order. Adding costs a binary search
// and a memmove of at most `capacity` floats (~1 µs for 600); a percentile is one lookup.
class ScoreWindow {
 public:
  explicit ScoreWindow(size_t capacity) : capacity_(capacity) {}

  void Add(float score) {
    if (fifo_.size() == capacity_) {
      const float oldest = fifo_.front();
      fifo_.pop_front();
      sorted_.erase(std::lower_bound(sorted_.begin(), sorted_.end(), oldest));
    }
    fifo_.push_back(score);
    sorted_.insert(std::upper_bound(sorted_.begin(), sorted_.end(), score), score);
  }

  // Nearest-rank percentile: the smallest score with at least p% of the window at or below it.
  // Requires a non-empty window.
  float Percentile(double p) const {
    const double n = static_cast<double>(sorted_.size());
    // The epsilon keeps 90% of 600 at rank 540 despite 0.9 not being exact in binary.
    const auto rank = static_cast<int64_t>(std::ceil(p / 100.0 * n - 1e-9));
    const int64_t clamped = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted_.size()));
    return sorted_[static_cast<size_t>(clamped - 1)];
  }

  size_t size() const { return fifo_.size(); }

 private:
  size_t capacity_;
  std::deque<float> fifo_;
  std::vector<float> sorted_;
};

// Takes frames whose image score is in the top (100 - percentile)% of the recent ones.
class TopConfidencePolicy : public Policy {
 public:
  explicit TopConfidencePolicy(const SamplerOptions& options)
      : aggregate_(options.aggregate),
        percentile_(options.percentile),
        warmup_frames_(options.warmup_frames),
        window_(static_cast<size_t>(options.window_frames)) {}

  bool Wants(const FrameFeatures& frame) override {
    if (frame.detections == nullptr) return false;
    const std::optional<float> score = ImageScore(*frame.detections, aggregate_);
    // No detection, no confidence to rank: never taken, and not part of the statistics.
    if (!score || !std::isfinite(*score)) return false;
    // The frame counts in its own window: with no history it is its own threshold.
    window_.Add(*score);
    ++scored_;
    if (scored_ <= warmup_frames_) return false;
    return *score >= window_.Percentile(percentile_);
  }

 private:
  ScoreAggregate aggregate_;
  double percentile_;
  int64_t warmup_frames_;
  int64_t scored_ = 0;
  ScoreWindow window_;
};

class BudgetedSampler : public Sampler {
 public:
  // `policy` null: the uniform policy serves all frames (the uniform strategy).
  BudgetedSampler(const SamplerOptions& options, std::unique_ptr<Policy> policy)
      : budget_total_(options.budget_total),
        bucket_(options.budget_per_minute),
        uniform_(options.uniform_probability, options.uniform_every, options.seed),
        policy_(std::move(policy)) {}

  bool Consider(const FrameFeatures& frame) override {
    if (budget_total_ > 0 && taken_ >= budget_total_) return false;
    bucket_.Advance(frame.time_s);
    // The scores of a model the server has not trained yet would steer the strategies wrong,
    // and they would also pollute their statistics: cold start bypasses them entirely.
    Policy* policy = (frame.model_from_server && policy_ != nullptr) ? policy_.get() : &uniform_;
    if (!policy->Wants(frame) || !bucket_.TryTake()) return false;
    ++taken_;
    return true;
  }

  int64_t taken() const override { return taken_; }

 private:
  int64_t budget_total_;
  int64_t taken_ = 0;
  TokenBucket bucket_;
  UniformPolicy uniform_;
  std::unique_ptr<Policy> policy_;
};

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

Status SamplerOptions::Validate() const {
  auto bad = [](const std::string& what) { return Status::InvalidArgument("sampler: " + what); };
  if (strategy != "uniform" && strategy != "top_confidence") {
    return bad("strategy '" + strategy + "' unknown (uniform | top_confidence)");
  }
  if (!std::isfinite(budget_per_minute) || budget_per_minute < 0) {
    return bad("budget_per_minute must be >= 0 (0: no rate limit), got " + std::to_string(budget_per_minute));
  }
  if (budget_total < 0) return bad("budget_total must be >= 0 (0: unlimited), got " + std::to_string(budget_total));
  if (!(uniform_probability >= 0 && uniform_probability <= 1)) {
    return bad("uniform_probability must be in [0, 1], got " + std::to_string(uniform_probability));
  }
  if (uniform_every < 0) return bad("uniform_every must be >= 0, got " + std::to_string(uniform_every));
  if (!(percentile >= 0 && percentile <= 100)) {
    return bad("percentile must be in [0, 100], got " + std::to_string(percentile));
  }
  if (warmup_frames < 0) return bad("warmup_frames must be >= 0, got " + std::to_string(warmup_frames));
  if (window_frames < 1) return bad("window_frames must be >= 1, got " + std::to_string(window_frames));
  switch (aggregate) {
    case ScoreAggregate::kMax:
    case ScoreAggregate::kMin:
    case ScoreAggregate::kMean:
    case ScoreAggregate::kSum:
      return Status::Ok();
  }
  return bad("aggregate out of range");
}

Sampler::~Sampler() = default;

StatusOr<std::unique_ptr<Sampler>> CreateSampler(const SamplerOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Policy> policy;
  if (options.strategy == "top_confidence") policy = std::make_unique<TopConfidencePolicy>(options);
  return std::unique_ptr<Sampler>(std::make_unique<BudgetedSampler>(options, std::move(policy)));
}

}  // namespace sd
