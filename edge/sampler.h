// Per-frame sampling decisions on the edge: which of the frames the student just scored are
// worth the uplink and the teacher's time (stream-based active distillation, SBAD).
//
// Every decision is a strategy's wish gated by a budget:
//  - a token bucket over capture time (frame.time_s, never the wall clock, so replays and
//    tests are deterministic): budget_per_minute tokens a minute, at most
//    max(1, budget_per_minute / 6) saved up (a burst of ten seconds' worth);
//  - an optional total count.
// Frames are taken when they arrive or never: a frame the budget refuses is not kept back.
//
// Cold start: until the edge runs a model from the server (model_from_server), the student's
// scores say little, so every strategy samples uniformly (with the uniform_* options).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/detection.h"
#include "common/status.h"

namespace sd {

enum class ScoreAggregate { kMax, kMin, kMean, kSum };

// "max" | "min" | "mean" | "sum".
StatusOr<ScoreAggregate> ParseScoreAggregate(const std::string& name);
const char* ScoreAggregateName(ScoreAggregate aggregate);

// The image's confidence: the aggregate of its detection scores; nullopt when there are no
// detections.
std::optional<float> ImageScore(const Detections& detections, ScoreAggregate aggregate);

struct SamplerOptions {
  std::string strategy = "uniform";  // uniform | top_confidence
  double budget_per_minute = 6;      // frames per minute of capture time; 0 = no rate limit
  int64_t budget_total = 0;          // stop after this many frames; 0 = unlimited
  double uniform_probability = 0.1;  // uniform: keep each frame with this probability (seeded) ...
  int uniform_every = 0;             // ... or, when > 0, the 1st, (k+1)th, ... considered frame
  ScoreAggregate aggregate = ScoreAggregate::kMax;
  double percentile = 90;    // top_confidence: threshold = this percentile of recent scores
  int warmup_frames = 100;   // top_confidence: frames scored before any is taken
  int window_frames = 600;   // the percentile follows the last N scores (scenes change)
  uint64_t seed = 1;

  Status Validate() const;
};

// What the sampler may look at for one frame. The pointers are borrowed for the call only.
struct FrameFeatures {
  int64_t index = 0;
  double time_s = 0;  // capture time, seconds; drives the rate budget
  const Detections* detections = nullptr;         // the student's; nullptr = none
  const std::vector<float>* embedding = nullptr;  // the student's image embedding, if any
  bool model_from_server = false;                 // false: cold start
};

// Not thread-safe: one capture thread owns it.
class Sampler {
 public:
  virtual ~Sampler();
  // True: send this frame. Call once per frame, in capture order.
  virtual bool Consider(const FrameFeatures& frame) = 0;
  virtual int64_t taken() const = 0;
};

// InvalidArgument for bad options or an unknown strategy.
StatusOr<std::unique_ptr<Sampler>> CreateSampler(const SamplerOptions& options);

}  // namespace sd
