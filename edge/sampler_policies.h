// The per-frame policies (a strategy's wish for each frame, before the budget) and the sampler
// that decides every frame as it arrives with one of them (uniform, random, first_n,
// top_confidence, least_confidence, diversity, ams_adaptive; see edge/sampler.h). The holding
// samplers (edge/holding_samplers.h) reuse the uniform and confidence policies and the memory of
// sent embeddings. Internal to the samplers.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "edge/sampler.h"

namespace sd {

inline bool HasEmbedding(const FrameFeatures& frame) {
  return frame.embedding != nullptr && !frame.embedding->empty();
}

// The embeddings of the last `capacity` frames sent.
class SentEmbeddings {
 public:
  explicit SentEmbeddings(size_t capacity) : capacity_(capacity) {}

  // Ignores a missing or empty embedding.
  void Add(const std::vector<float>* embedding);
  // Squared distance (SquaredDistance, common/vision/appearance.h) to the nearest one of the
  // same length; +inf when none is comparable (none yet, or a NaN).
  float NearestSquared(const std::vector<float>& embedding) const;
  // All of them, in slot order (k-center greedy's covered points: only their nearest counts).
  std::vector<const std::vector<float>*> All() const;
  bool empty() const { return ring_.empty(); }

 private:
  size_t capacity_;
  size_t next_ = 0;  // oldest slot once full
  std::vector<std::vector<float>> ring_;
};

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

// The last `capacity` values in arrival order and in sorted order. Adding costs a binary search
// and a memmove of at most `capacity` floats (~1 µs for 600); a percentile is one lookup.
class ValueWindow {
 public:
  explicit ValueWindow(size_t capacity) : capacity_(capacity) {}

  void Add(float value);
  // Nearest-rank percentile: the smallest value with at least p% of the window at or below it.
  // Requires a non-empty window.
  float Percentile(double p) const;

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

  bool Wants(const FrameFeatures& frame) override;
 private:
  bool top_;
  ScoreAggregate aggregate_;
  double percentile_;
  int64_t warmup_frames_;
  int64_t scored_ = 0;
  ValueWindow window_;
};

// The sampler of the per-frame strategies (all but top_confidence_diversity and
// paced_confidence_diversity), for valid `options`.
std::unique_ptr<Sampler> MakeStreamSampler(const SamplerOptions& options);

}  // namespace sd
