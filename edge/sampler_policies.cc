#include "edge/sampler_policies.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <utility>

#include "common/vision/appearance.h"
#include "edge/sampler_budget.h"

namespace sd {

void SentEmbeddings::Add(const std::vector<float>* embedding) {
  if (embedding == nullptr || embedding->empty()) return;
  if (ring_.size() < capacity_) {
    ring_.push_back(*embedding);
  } else {
    ring_[next_] = *embedding;  // reuses the slot's storage: no allocation once full
    next_ = (next_ + 1) % capacity_;
  }
}

float SentEmbeddings::NearestSquared(const std::vector<float>& embedding) const {
  float nearest = std::numeric_limits<float>::infinity();
  for (const std::vector<float>& sent : ring_) {
    if (sent.size() != embedding.size()) continue;
    const float d = SquaredDistance(sent, embedding);
    if (d < nearest) nearest = d;
  }
  return nearest;
}

std::vector<const std::vector<float>*> SentEmbeddings::All() const {
  std::vector<const std::vector<float>*> all;
  all.reserve(ring_.size());
  for (const std::vector<float>& sent : ring_) all.push_back(&sent);
  return all;
}

void ValueWindow::Add(float value) {
  if (fifo_.size() == capacity_) {
    const float oldest = fifo_.front();
    fifo_.pop_front();
    sorted_.erase(std::lower_bound(sorted_.begin(), sorted_.end(), oldest));
  }
  fifo_.push_back(value);
  sorted_.insert(std::upper_bound(sorted_.begin(), sorted_.end(), value), value);
}

float ValueWindow::Percentile(double p) const {
  const double n = static_cast<double>(sorted_.size());
  // The epsilon keeps 90% of 600 at rank 540 despite 0.9 not being exact in binary.
  const auto rank = static_cast<int64_t>(std::ceil(p / 100.0 * n - 1e-9));
  const int64_t clamped = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted_.size()));
  return sorted_[static_cast<size_t>(clamped - 1)];
}

bool ConfidencePolicy::Wants(const FrameFeatures& frame) {
  if (frame.detections == nullptr) return false;
  const std::optional<float> score = ImageScore(*frame.detections, aggregate_);
  // No detection, no confidence to rank: never taken, and not part of the statistics.
  if (!score || !std::isfinite(*score)) return false;
  // The frame counts in its own window: with no history it is its own threshold.
  window_.Add(*score);
  ++scored_;
  if (scored_ <= warmup_frames_) return false;
  const float threshold = window_.Percentile(percentile_);
  return top_ ? *score >= threshold : *score <= threshold;
}

namespace {

// Each frame independently with a probability (SBAD's "uniform"), seeded.
class RandomPolicy : public Policy {
 public:
  RandomPolicy(double probability, uint64_t seed) : probability_(probability), rng_(seed) {}

  bool Wants(const FrameFeatures&) override {
    // 53 random bits -> [0, 1): unlike std::uniform_real_distribution, the same on every
    // standard library, so a seed means the same frames everywhere.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    return u < probability_;
  }

 private:
  double probability_;
  std::mt19937_64 rng_;
};

// first_n: everything; the total budget ends it.
class EveryFramePolicy : public Policy {
 public:
  bool Wants(const FrameFeatures&) override { return true; }
};

// Farthest-first on the stream: a frame goes when it is farther from every recently sent frame
// than most recent frames were (the percentile of their nearest-sent distances), so the bar
// follows how much the scene moves. A frame identical to a sent one adds nothing: never.
class DiversityPolicy : public Policy {
 public:
  DiversityPolicy(const SamplerOptions& options, const SentEmbeddings* sent)
      : sent_(sent),
        percentile_(options.EffectivePercentile()),
        warmup_frames_(options.warmup_frames),
        window_(static_cast<size_t>(options.window_frames)) {}

  bool Wants(const FrameFeatures& frame) override {
    if (!HasEmbedding(frame)) return false;
    if (sent_->empty()) return true;  // nothing to differ from yet
    const float nearest = sent_->NearestSquared(*frame.embedding);
    if (!std::isfinite(nearest)) return false;
    // Squared distances: the same order, so the same percentile, without a square root.
    window_.Add(nearest);
    ++observed_;
    if (observed_ <= warmup_frames_) return false;
    return nearest > 0 && nearest >= window_.Percentile(percentile_);
  }

 private:
  const SentEmbeddings* sent_;
  double percentile_;
  int64_t warmup_frames_;
  int64_t observed_ = 0;
  ValueWindow window_;
};

// AMS's adaptive sampling rate: frames evenly spaced at r per second of capture time. After
// every `update_every` agreement reports, r <- clip(r - 0.2 tanh(20 (phi - 0.6))), phi their
// mean: consecutive teacher labels that agree (a static scene) lower r, a changing scene
// raises it.
class AmsPolicy : public Policy {
 public:
  explicit AmsPolicy(const SamplerOptions& options)
      : min_rate_(options.ams_min_rate),
        max_rate_(options.ams_max_rate),
        update_every_(options.ams_update_every),
        rate_(options.ams_initial_rate) {}

  bool Wants(const FrameFeatures& frame) override {
    // Capture time going backwards (a looping source) starts the spacing over.
    if (!has_sent_ || frame.time_s < last_sent_s_) return true;
    return frame.time_s - last_sent_s_ >= 1.0 / rate_.load(std::memory_order_relaxed) - 1e-9;
  }

  void Sent(const FrameFeatures& frame) override {
    last_sent_s_ = frame.time_s;
    has_sent_ = true;
  }

  void OnTeacherAgreement(double agreement) override {
    if (!(agreement >= 0)) return;  // unknown (or NaN)
    std::lock_guard<std::mutex> lock(mu_);
    sum_ += agreement;
    if (++reports_ < update_every_) return;
    const double phi = sum_ / reports_;
    sum_ = 0;
    reports_ = 0;
    const double rate = rate_.load(std::memory_order_relaxed) - 0.2 * std::tanh(20 * (phi - 0.6));
    rate_.store(std::clamp(rate, min_rate_, max_rate_), std::memory_order_relaxed);
  }

 private:
  const double min_rate_, max_rate_;
  const int update_every_;
  // Written on the uplink's thread, read per frame on the capture thread.
  std::atomic<double> rate_;
  double last_sent_s_ = 0;
  bool has_sent_ = false;
  std::mutex mu_;  // guards sum_, reports_ (and serializes updates of rate_)
  double sum_ = 0;
  int reports_ = 0;
};

// The strategies that decide each frame as it arrives.
class StreamSampler : public Sampler {
 public:
  // `policy` null: the uniform policy serves all frames (the uniform strategy). `sent`: where
  // the policy looks for recently sent embeddings, if it does.
  StreamSampler(const SamplerOptions& options, std::unique_ptr<Policy> policy, std::unique_ptr<SentEmbeddings> sent)
      : budget_(options),
        uniform_(options.uniform_probability, options.uniform_every),
        policy_(std::move(policy)),
        sent_(std::move(sent)),
        coverage_(options.CoverageGapSeconds()) {}

  SampleDecision Offer(const FrameFeatures& frame) override {
    if (budget_.Exhausted()) return SampleDecision::kSkip;
    budget_.Advance(frame.time_s);
    // The scores of a model the server has not trained yet would steer the strategies wrong,
    // and they would also pollute their statistics: cold start bypasses them entirely.
    const bool cold = !frame.model_from_server || policy_ == nullptr;
    Policy* policy = cold ? &uniform_ : policy_.get();
    // Asked first, so that the policy's statistics see every frame.
    const bool wanted = policy->Wants(frame);
    if (!(wanted || (!cold && coverage_.Due(frame.time_s))) || !budget_.TryTake()) return SampleDecision::kSkip;
    policy->Sent(frame);
    coverage_.Sent(frame.time_s);
    if (sent_) sent_->Add(frame.embedding);  // cold-start and coverage frames were sent too
    return SampleDecision::kTake;
  }

  void OnTeacherAgreement(double agreement) override {
    if (policy_) policy_->OnTeacherAgreement(agreement);
  }
  int64_t taken() const override { return budget_.taken(); }
  void SetBudgetPerMinute(double per_minute) override { budget_.SetRate(per_minute); }

 private:
  Budget budget_;
  UniformPolicy uniform_;
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<SentEmbeddings> sent_;
  CoverageFloor coverage_;
};

}  // namespace

std::unique_ptr<Sampler> MakeStreamSampler(const SamplerOptions& options) {
  std::unique_ptr<Policy> policy;
  std::unique_ptr<SentEmbeddings> sent;
  switch (options.strategy) {
    case SamplerStrategy::kUniform:
      break;  // the uniform policy serves all frames
    case SamplerStrategy::kRandom:
      policy = std::make_unique<RandomPolicy>(options.uniform_probability, options.seed);
      break;
    case SamplerStrategy::kFirstN:
      policy = std::make_unique<EveryFramePolicy>();
      break;
    case SamplerStrategy::kTopConfidence:
    case SamplerStrategy::kLeastConfidence:
      policy = std::make_unique<ConfidencePolicy>(options, /*top=*/options.strategy == SamplerStrategy::kTopConfidence);
      break;
    case SamplerStrategy::kDiversity:
      sent = std::make_unique<SentEmbeddings>(static_cast<size_t>(options.diversity_history));
      policy = std::make_unique<DiversityPolicy>(options, sent.get());
      break;
    case SamplerStrategy::kAmsAdaptive:
      policy = std::make_unique<AmsPolicy>(options);
      break;
    case SamplerStrategy::kTopConfidenceDiversity:
    case SamplerStrategy::kPacedConfidenceDiversity:
      return nullptr;  // holding samplers (edge/holding_samplers.h)
  }
  return std::make_unique<StreamSampler>(options, std::move(policy), std::move(sent));
}

}  // namespace sd
