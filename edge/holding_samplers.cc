#include "edge/holding_samplers.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "common/vision/appearance.h"
#include "edge/sampler_budget.h"
#include "edge/sampler_policies.h"

namespace sd {
namespace {

// The samplers that hold frames for a later choice: what they release and drop is collected
// here until the caller takes it.
class HoldingSampler : public Sampler {
 public:
  std::vector<int64_t> TakeReleased() override { return std::exchange(released_, {}); }
  std::vector<int64_t> TakeDropped() override { return std::exchange(dropped_, {}); }

 protected:
  std::vector<int64_t> released_, dropped_;
};

// D-SBAD: frames the top_confidence rule wants are held as candidates; when gamma x pool_budget
// are held, k-center greedy (farthest-first, seeded with the recently sent embeddings) picks
// pool_budget of them and the rest are dropped. The picks go as the rate budget allows, most
// diverse first; until they have all gone the full pool waits and new candidates are skipped,
// so at most candidates + pool_budget frames are held.
class PoolSampler : public HoldingSampler {
 public:
  explicit PoolSampler(const SamplerOptions& options)
      : budget_(options),
        uniform_(options.uniform_probability, options.uniform_every),
        confident_(options, /*top=*/true),
        sent_(static_cast<size_t>(options.diversity_history)),
        pool_budget_(options.PoolBudget()),
        capacity_(static_cast<size_t>(std::ceil(options.gamma * pool_budget_ - 1e-9))),
        coverage_(options.CoverageGapSeconds()) {}

  SampleDecision Offer(const FrameFeatures& frame) override {
    budget_.Advance(frame.time_s);
    Release(frame.time_s);
    if (budget_.Exhausted()) {
      DropAll();
      return SampleDecision::kSkip;
    }
    const SampleDecision decision = Decide(frame);
    if (picks_.empty() && pool_.size() == capacity_) {
      Choose();
      Release(frame.time_s);
    }
    return decision;
  }

  int64_t taken() const override { return budget_.taken(); }
  void SetBudgetPerMinute(double per_minute) override { budget_.SetRate(per_minute); }

 private:
  struct Candidate {
    int64_t index;
    std::vector<float> embedding;
  };

  SampleDecision Decide(const FrameFeatures& frame) {
    if (!frame.model_from_server) {
      // Cold start, as in StreamSampler.
      if (!uniform_.Wants(frame) || !budget_.TryTake()) return SampleDecision::kSkip;
      Sent(frame.embedding, frame.time_s);
      return SampleDecision::kTake;
    }
    // Asked first, so the threshold learns from every frame, also while the pool is full.
    if (confident_.Wants(frame) && HasEmbedding(frame) && pool_.size() < capacity_) {
      pool_.push_back({frame.index, *frame.embedding});
      return SampleDecision::kHold;
    }
    if (!coverage_.Due(frame.time_s) || !budget_.TryTake()) return SampleDecision::kSkip;
    Sent(frame.embedding, frame.time_s);
    return SampleDecision::kTake;
  }

  void Sent(const std::vector<float>* embedding, double time_s) {
    sent_.Add(embedding);
    coverage_.Sent(time_s);
  }

  // k-center greedy (common/vision/appearance.h, the server's long-term memory uses the same):
  // each pick is the candidate farthest from everything sent recently and everything picked
  // before it; ties go to the earlier frame.
  void Choose() {
    const auto picks = static_cast<size_t>(std::min<int64_t>(pool_budget_, budget_.Remaining()));
    std::vector<const std::vector<float>*> points;
    points.reserve(pool_.size());
    for (const Candidate& c : pool_) points.push_back(&c.embedding);
    const std::vector<size_t> chosen = KCenterGreedy(points, sent_.All(), picks);
    std::vector<bool> picked(pool_.size(), false);
    for (size_t i : chosen) picked[i] = true;
    for (size_t i : chosen) picks_.push_back(std::move(pool_[i]));  // its embedding is not read again
    for (size_t i = 0; i < pool_.size(); ++i) {
      if (!picked[i]) dropped_.push_back(pool_[i].index);
    }
    pool_.clear();
  }

  void Release(double time_s) {
    while (!picks_.empty() && budget_.TryTake()) {
      Sent(&picks_.front().embedding, time_s);
      released_.push_back(picks_.front().index);
      picks_.pop_front();
    }
  }

  void DropAll() {
    for (const Candidate& c : pool_) dropped_.push_back(c.index);
    for (const Candidate& c : picks_) dropped_.push_back(c.index);
    pool_.clear();
    picks_.clear();
  }

  Budget budget_;
  UniformPolicy uniform_;
  ConfidencePolicy confident_;
  SentEmbeddings sent_;
  const int pool_budget_;
  const size_t capacity_;
  CoverageFloor coverage_;
  std::vector<Candidate> pool_;
  std::deque<Candidate> picks_;
};

// paced_confidence_diversity: capture time is cut into slots of one frame's worth of the rate
// budget (60 / budget_per_minute s), and each slot sends exactly one frame, its best by
// score + diversity_weight x novelty (below). The pace is uniform's, so every stretch of the
// stream, and every condition in proportion to its length, gets its share whatever the student
// thinks of it (no starvation, the whole budget spent); the choice inside a slot is D-SBAD's
// (confident, unlike what was sent). Only the slot's best so far is held.
class PacedSampler : public HoldingSampler {
 public:
  explicit PacedSampler(const SamplerOptions& options)
      : budget_(options),
        uniform_(options.uniform_probability, options.uniform_every),
        aggregate_(options.aggregate),
        diversity_weight_(options.diversity_weight),
        slot_s_(60.0 / options.budget_per_minute),
        next_slot_s_(slot_s_),
        sent_(static_cast<size_t>(options.diversity_history)) {}

  SampleDecision Offer(const FrameFeatures& frame) override {
    budget_.Advance(frame.time_s);
    if (budget_.Exhausted()) {
      DropBest();
      return SampleDecision::kSkip;
    }
    if (!frame.model_from_server) {
      // Cold start, as in StreamSampler.
      if (!uniform_.Wants(frame) || !budget_.TryTake()) return SampleDecision::kSkip;
      sent_.Add(frame.embedding);
      return SampleDecision::kTake;
    }
    // A new slot at the first frame, and when capture time goes backwards (a looping source).
    if (!in_slot_ || frame.time_s < slot_start_s_) StartSlot(frame.time_s);
    SampleDecision decision = SampleDecision::kSkip;
    const double value = Value(frame);
    if (!best_ || value > best_->value) {
      DropBest();
      best_ = Held{frame.index, value, HasEmbedding(frame) ? *frame.embedding : std::vector<float>{}};
      decision = SampleDecision::kHold;
    }
    // The slot closes on its last frame (the next one, a frame interval later, would be past
    // its end), so the stream's last slot is decided too.
    const double interval = has_previous_ && frame.time_s > previous_s_ ? frame.time_s - previous_s_ : 0;
    previous_s_ = frame.time_s;
    has_previous_ = true;
    if (frame.time_s + interval - slot_start_s_ >= slot_s_ - 1e-9) {
      CloseSlot();
      in_slot_ = false;
    }
    return decision;
  }

  int64_t taken() const override { return budget_.taken(); }
  // The next slot is one frame's worth of the new budget. A raise shortens the open slot too
  // (a new scene must not wait out a slot of the floor's length); a cut leaves it as it is.
  void SetBudgetPerMinute(double per_minute) override {
    if (!(per_minute > 0) || std::abs(60.0 / per_minute - next_slot_s_) < 1e-9) return;
    budget_.SetRate(per_minute);
    next_slot_s_ = 60.0 / per_minute;
    slot_s_ = std::min(slot_s_, next_slot_s_);
  }

 private:
  struct Held {
    int64_t index;
    double value;
    std::vector<float> embedding;
  };

  // The student's image score (0 with no detection), plus diversity_weight x the distance to
  // the nearest recently sent embedding over its largest possible value (2 between unit
  // vectors), so both terms are in [0, 1]; nothing sent yet counts as entirely new.
  double Value(const FrameFeatures& frame) const {
    double score = 0;
    if (frame.detections != nullptr) {
      const std::optional<float> s = ImageScore(*frame.detections, aggregate_);
      if (s && std::isfinite(*s)) score = *s;
    }
    if (!(diversity_weight_ > 0) || !HasEmbedding(frame)) return score;
    const float nearest = sent_.NearestSquared(*frame.embedding);
    const double novelty = std::isfinite(nearest) ? std::min(1.0, std::sqrt(static_cast<double>(nearest)) / 2.0) : 1.0;
    return score + diversity_weight_ * novelty;
  }

  void StartSlot(double time_s) {
    DropBest();
    slot_s_ = next_slot_s_;
    slot_start_s_ = time_s;
    in_slot_ = true;
  }

  void CloseSlot() {
    if (!best_) return;
    if (budget_.TryTake()) {
      sent_.Add(&best_->embedding);
      released_.push_back(best_->index);
      best_.reset();
    } else {
      DropBest();
    }
  }

  void DropBest() {
    if (best_) dropped_.push_back(best_->index);
    best_.reset();
  }

  Budget budget_;
  UniformPolicy uniform_;
  const ScoreAggregate aggregate_;
  const double diversity_weight_;
  double slot_s_;       // the open slot's length
  double next_slot_s_;  // the next slot's (SetBudgetPerMinute)
  SentEmbeddings sent_;
  bool in_slot_ = false;
  double slot_start_s_ = 0;
  bool has_previous_ = false;
  double previous_s_ = 0;
  std::optional<Held> best_;
};

}  // namespace

std::unique_ptr<Sampler> MakePoolSampler(const SamplerOptions& options) { return std::make_unique<PoolSampler>(options); }
std::unique_ptr<Sampler> MakePacedSampler(const SamplerOptions& options) {
  return std::make_unique<PacedSampler>(options);
}

}  // namespace sd
