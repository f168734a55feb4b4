#include "edge/sampler.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <iterator>
#include <limits>
#include <mutex>
#include <random>
#include <utility>

namespace sd {
namespace {

// Held candidates are encoded frames in the edge's memory: keep a typo from holding gigabytes.
constexpr int kMaxPoolCandidates = 1000;

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

// What may be sent: the rate bucket and the total.
class Budget {
 public:
  explicit Budget(const SamplerOptions& options) : total_(options.budget_total), bucket_(options.budget_per_minute) {}

  void Advance(double time_s) { bucket_.Advance(time_s); }
  bool Exhausted() const { return total_ > 0 && taken_ >= total_; }
  int64_t Remaining() const { return total_ > 0 ? total_ - taken_ : std::numeric_limits<int64_t>::max(); }
  bool TryTake() {
    if (Exhausted() || !bucket_.TryTake()) return false;
    ++taken_;
    return true;
  }
  int64_t taken() const { return taken_; }

 private:
  int64_t total_;
  int64_t taken_ = 0;
  TokenBucket bucket_;
};

// Squared L2 distance. Eight running sums: the compiler may not reorder float additions, and a
// single chained sum would wait on the adder's latency at every element.
float SquaredDistance(const std::vector<float>& a, const std::vector<float>& b) {
  const size_t n = a.size();
  float lanes[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t k = 0; k < 8; ++k) {
      const float d = a[i + k] - b[i + k];
      lanes[k] += d * d;
    }
  }
  float sum = 0;
  for (; i < n; ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  for (float lane : lanes) sum += lane;
  return sum;
}

// The embeddings of the last `capacity` frames sent.
class SentEmbeddings {
 public:
  explicit SentEmbeddings(size_t capacity) : capacity_(capacity) {}

  void Add(const std::vector<float>* embedding) {
    if (embedding == nullptr || embedding->empty()) return;
    if (ring_.size() < capacity_) {
      ring_.push_back(*embedding);
    } else {
      ring_[next_] = *embedding;  // reuses the slot's storage: no allocation once full
      next_ = (next_ + 1) % capacity_;
    }
  }

  // Squared distance to the nearest one; +inf when none is comparable (none yet, or a NaN).
  float NearestSquared(const std::vector<float>& embedding) const {
    float nearest = std::numeric_limits<float>::infinity();
    for (const std::vector<float>& sent : ring_) {
      if (sent.size() != embedding.size()) continue;
      const float d = SquaredDistance(sent, embedding);
      if (d < nearest) nearest = d;
    }
    return nearest;
  }

  bool empty() const { return ring_.empty(); }

 private:
  size_t capacity_;
  size_t next_ = 0;  // oldest slot once full
  std::vector<std::vector<float>> ring_;
};

// The coverage floor (SamplerOptions::coverage_share): due when nothing was sent for gap_s of
// capture time since the later of the last frame sent and the first frame seen.
class CoverageFloor {
 public:
  explicit CoverageFloor(double gap_s) : gap_s_(gap_s) {}

  bool Due(double time_s) {
    if (!std::isfinite(gap_s_)) return false;
    // No reference yet, or capture time going backwards (a looping source): start counting.
    if (!has_reference_ || time_s < reference_s_) {
      Sent(time_s);
      return false;
    }
    return time_s - reference_s_ >= gap_s_ - 1e-9;
  }
  void Sent(double time_s) {
    reference_s_ = time_s;
    has_reference_ = true;
  }

 private:
  double gap_s_;
  double reference_s_ = 0;
  bool has_reference_ = false;
};

bool HasEmbedding(const FrameFeatures& frame) { return frame.embedding != nullptr && !frame.embedding->empty(); }

// A strategy's wish for one frame, before the budget. Called for every frame past cold start
// (so it can keep statistics even while the budget says no).
class Policy {
 public:
  virtual ~Policy() = default;
  virtual bool Wants(const FrameFeatures& frame) = 0;
  // The budget let a frame it wanted go.
  virtual void Sent(const FrameFeatures&) {}
  virtual void OnTeacherAgreement(double) {}
};

// Evenly spaced: every `every`-th frame, or a `share` of the frames with gaps as even as whole
// frames allow (frame n goes when ceil((n + 1) x share) steps up).
class UniformPolicy : public Policy {
 public:
  UniformPolicy(double share, int every) : share_(share), every_(every) {}

  bool Wants(const FrameFeatures&) override {
    const int64_t n = considered_++;
    if (every_ > 0) return n % every_ == 0;
    // The epsilon keeps 10 x 0.1 at 1 although 0.1 is not exact in binary.
    auto steps = [this](int64_t k) { return std::ceil(static_cast<double>(k) * share_ - 1e-9); };
    return steps(n + 1) > steps(n);
  }

 private:
  double share_;
  int64_t every_;
  int64_t considered_ = 0;
};

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

// The last `capacity` values in arrival order and in sorted order. Adding costs a binary search
// and a memmove of at most `capacity` floats (~1 µs for 600); a percentile is one lookup.
class ValueWindow {
 public:
  explicit ValueWindow(size_t capacity) : capacity_(capacity) {}

  void Add(float value) {
    if (fifo_.size() == capacity_) {
      const float oldest = fifo_.front();
      fifo_.pop_front();
      sorted_.erase(std::lower_bound(sorted_.begin(), sorted_.end(), oldest));
    }
    fifo_.push_back(value);
    sorted_.insert(std::upper_bound(sorted_.begin(), sorted_.end(), value), value);
  }

  // Nearest-rank percentile: the smallest value with at least p% of the window at or below it.
  // Requires a non-empty window.
  float Percentile(double p) const {
    const double n = static_cast<double>(sorted_.size());
    // The epsilon keeps 90% of 600 at rank 540 despite 0.9 not being exact in binary.
    const auto rank = static_cast<int64_t>(std::ceil(p / 100.0 * n - 1e-9));
    const int64_t clamped = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted_.size()));
    return sorted_[static_cast<size_t>(clamped - 1)];
  }

 private:
  size_t capacity_;
  std::deque<float> fifo_;
  std::vector<float> sorted_;
};

// top_confidence: image scores at or above the percentile of the recent ones;
// least_confidence: at or below it.
class ConfidencePolicy : public Policy {
 public:
  ConfidencePolicy(const SamplerOptions& options, bool top)
      : top_(top),
        aggregate_(options.aggregate),
        percentile_(options.EffectivePercentile()),
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
    const float threshold = window_.Percentile(percentile_);
    return top_ ? *score >= threshold : *score <= threshold;
  }

 private:
  bool top_;
  ScoreAggregate aggregate_;
  double percentile_;
  int64_t warmup_frames_;
  int64_t scored_ = 0;
  ValueWindow window_;
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

 private:
  Budget budget_;
  UniformPolicy uniform_;
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<SentEmbeddings> sent_;
  CoverageFloor coverage_;
};

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

  // k-center greedy: each pick is the candidate farthest from everything sent recently and
  // everything picked before it; ties go to the earlier frame.
  void Choose() {
    const size_t n = pool_.size();
    const auto picks = static_cast<size_t>(std::min<int64_t>(pool_budget_, budget_.Remaining()));
    std::vector<float> nearest(n);
    for (size_t i = 0; i < n; ++i) nearest[i] = sent_.NearestSquared(pool_[i].embedding);
    std::vector<bool> picked(n, false);
    for (size_t k = 0; k < picks && k < n; ++k) {
      size_t best = n;
      for (size_t i = 0; i < n; ++i) {
        if (!picked[i] && (best == n || nearest[i] > nearest[best])) best = i;
      }
      picked[best] = true;
      for (size_t i = 0; i < n; ++i) {
        if (!picked[i]) nearest[i] = std::min(nearest[i], SquaredDistance(pool_[best].embedding, pool_[i].embedding));
      }
      picks_.push_back(std::move(pool_[best]));  // its embedding is not read again
    }
    for (size_t i = 0; i < n; ++i) {
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
  const double slot_s_;
  SentEmbeddings sent_;
  bool in_slot_ = false;
  double slot_start_s_ = 0;
  bool has_previous_ = false;
  double previous_s_ = 0;
  std::optional<Held> best_;
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

double SamplerOptions::EffectivePercentile() const {
  return percentile.value_or(strategy == "least_confidence" ? 10.0 : 90.0);
}

int SamplerOptions::PoolBudget() const {
  if (pool_size > 0) return pool_size;
  // Rounded down: the pools must not promise more than the rate budget gives.
  return static_cast<int>(std::floor(budget_per_minute * pool_window_s / 60.0 + 1e-9));
}

double SamplerOptions::CoverageGapSeconds() const {
  const bool ranks_frames = strategy == "top_confidence" || strategy == "least_confidence" ||
                            strategy == "diversity" || strategy == "top_confidence_diversity";
  if (!ranks_frames || !(coverage_share > 0) || !(budget_per_minute > 0)) return std::numeric_limits<double>::infinity();
  return 60.0 / (budget_per_minute * coverage_share);
}

Status SamplerOptions::Validate() const {
  auto bad = [](const std::string& what) { return Status::InvalidArgument("sampler: " + what); };
  auto str = [](double v) { return std::to_string(v); };
  if (!IsSamplerStrategy(strategy)) {
    std::string names;
    for (const std::string& name : SamplerStrategies()) names += (names.empty() ? "" : " | ") + name;
    return bad("strategy '" + strategy + "' unknown (" + names + ")");
  }
  if (!std::isfinite(budget_per_minute) || budget_per_minute < 0) {
    return bad("budget_per_minute must be >= 0 (0: no rate limit), got " + str(budget_per_minute));
  }
  if (budget_total < 0) return bad("budget_total must be >= 0 (0: unlimited), got " + std::to_string(budget_total));
  if (strategy == "first_n" && budget_total == 0) {
    return bad("first_n takes the first budget_total frames: set budget_total > 0");
  }
  if (!(uniform_probability >= 0 && uniform_probability <= 1)) {
    return bad("uniform_probability must be in [0, 1], got " + str(uniform_probability));
  }
  if (uniform_every < 0) return bad("uniform_every must be >= 0, got " + std::to_string(uniform_every));
  if (percentile && !(*percentile >= 0 && *percentile <= 100)) {
    return bad("percentile must be in [0, 100], got " + str(*percentile));
  }
  if (warmup_frames < 0) return bad("warmup_frames must be >= 0, got " + std::to_string(warmup_frames));
  if (window_frames < 1) return bad("window_frames must be >= 1, got " + std::to_string(window_frames));
  if (diversity_history < 1) return bad("diversity_history must be >= 1, got " + std::to_string(diversity_history));
  if (pool_size < 0) return bad("pool_size must be >= 0 (0: from budget_per_minute), got " + std::to_string(pool_size));
  if (!(pool_window_s > 0) || !std::isfinite(pool_window_s)) {
    return bad("pool_window_s must be > 0, got " + str(pool_window_s));
  }
  if (!(gamma >= 1) || !std::isfinite(gamma)) {
    return bad("gamma must be >= 1 (candidates per frame sent), got " + str(gamma));
  }
  if (strategy == "top_confidence_diversity") {
    const int per_pool = PoolBudget();
    if (per_pool < 1) {
      return bad("top_confidence_diversity needs pool_size > 0, or budget_per_minute x pool_window_s / 60 >= 1 (got " +
                 str(budget_per_minute * pool_window_s / 60.0) + ")");
    }
    if (gamma * per_pool > kMaxPoolCandidates + 1e-9) {
      return bad("gamma x pool_size = " + str(gamma * per_pool) + " candidates; at most " +
                 std::to_string(kMaxPoolCandidates) + " frames may be held");
    }
  }
  if (!(ams_min_rate > 0) || !std::isfinite(ams_max_rate) || ams_max_rate < ams_min_rate) {
    return bad("need 0 < ams_min_rate <= ams_max_rate, got " + str(ams_min_rate) + " and " + str(ams_max_rate));
  }
  if (!(ams_initial_rate >= ams_min_rate && ams_initial_rate <= ams_max_rate)) {
    return bad("ams_initial_rate must be in [ams_min_rate, ams_max_rate], got " + str(ams_initial_rate));
  }
  if (strategy == "paced_confidence_diversity" && !(budget_per_minute > 0)) {
    return bad("paced_confidence_diversity sends one frame per 60 / budget_per_minute s: set budget_per_minute > 0");
  }
  if (!(diversity_weight >= 0) || !std::isfinite(diversity_weight)) {
    return bad("diversity_weight must be >= 0, got " + str(diversity_weight));
  }
  if (!(coverage_share >= 0 && coverage_share <= 1)) {
    return bad("coverage_share must be in [0, 1] (0: off), got " + str(coverage_share));
  }
  if (ams_update_every < 1) return bad("ams_update_every must be >= 1, got " + std::to_string(ams_update_every));
  switch (aggregate) {
    case ScoreAggregate::kMax:
    case ScoreAggregate::kMin:
    case ScoreAggregate::kMean:
    case ScoreAggregate::kSum:
      return Status::Ok();
  }
  return bad("aggregate out of range");
}

const std::vector<std::string>& SamplerStrategies() {
  static const std::vector<std::string> names = {
      "uniform", "random", "first_n", "top_confidence", "least_confidence", "diversity", "top_confidence_diversity",
      "ams_adaptive", "paced_confidence_diversity"};
  return names;
}

bool IsSamplerStrategy(const std::string& name) {
  const auto& names = SamplerStrategies();
  return std::find(names.begin(), names.end(), name) != names.end();
}

Sampler::~Sampler() = default;
std::vector<int64_t> Sampler::TakeReleased() { return {}; }
std::vector<int64_t> Sampler::TakeDropped() { return {}; }
void Sampler::OnTeacherAgreement(double) {}

StatusOr<std::unique_ptr<Sampler>> CreateSampler(const SamplerOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate());
  const std::string& s = options.strategy;
  if (s == "top_confidence_diversity") return std::unique_ptr<Sampler>(std::make_unique<PoolSampler>(options));
  if (s == "paced_confidence_diversity") return std::unique_ptr<Sampler>(std::make_unique<PacedSampler>(options));
  std::unique_ptr<Policy> policy;
  std::unique_ptr<SentEmbeddings> sent;
  if (s == "random") policy = std::make_unique<RandomPolicy>(options.uniform_probability, options.seed);
  if (s == "first_n") policy = std::make_unique<EveryFramePolicy>();
  if (s == "top_confidence" || s == "least_confidence") {
    policy = std::make_unique<ConfidencePolicy>(options, /*top=*/s == "top_confidence");
  }
  if (s == "diversity") {
    sent = std::make_unique<SentEmbeddings>(static_cast<size_t>(options.diversity_history));
    policy = std::make_unique<DiversityPolicy>(options, sent.get());
  }
  if (s == "ams_adaptive") policy = std::make_unique<AmsPolicy>(options);
  return std::unique_ptr<Sampler>(std::make_unique<StreamSampler>(options, std::move(policy), std::move(sent)));
}

SamplerOptions ForDetectEvery(SamplerOptions options, int detect_every) {
  if (detect_every <= 1) return options;
  options.uniform_probability = std::min(1.0, options.uniform_probability * detect_every);
  if (options.uniform_every > 0) options.uniform_every = std::max(1, options.uniform_every / detect_every);
  options.warmup_frames /= detect_every;
  return options;
}

}  // namespace sd
