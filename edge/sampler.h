// Per-frame sampling decisions on the edge: which of the frames the student just scored are
// worth the uplink and the teacher's time (stream-based active distillation, SBAD, and its
// diversity extension D-SBAD; the adaptive sampling rate of Adaptive Model Streaming, AMS).
//
// Every decision is a strategy's wish gated by a budget:
//  - a token bucket over capture time (frame.time_s, never the wall clock, so replays and
//    tests are deterministic): budget_per_minute tokens a minute, at most
//    max(1, budget_per_minute / 6) saved up (a burst of ten seconds' worth);
//  - an optional total count.
// A frame is sent when it arrives, held by the strategy for a later choice
// (top_confidence_diversity, paced_confidence_diversity), or never: a frame the budget refuses
// is not kept back.
//
// Strategies (SamplerOptions::strategy; the YAML key `strategy` names them by these words):
//  uniform          evenly spaced: every uniform_every-th frame, or a uniform_probability share
//                   of the frames at even spacing (deterministic).
//  random           each frame independently with probability uniform_probability (seeded).
//  first_n          every frame until budget_total are sent.
//  top_confidence   image score (aggregate) >= the percentile (default 90) of the last
//                   window_frames scores, after warmup_frames scored frames.
//  least_confidence image score <= the percentile (default 10), same window and warm-up.
//                   Both confidence strategies skip frames with no detection.
//  diversity        farthest-first against the last diversity_history sent embeddings: a
//                   frame goes when its distance to the nearest of them is above the percentile
//                   (default 90) of the recent such distances, and never when it is 0.
//  top_confidence_diversity
//                   D-SBAD: top_confidence frames are held as candidates until gamma x pool
//                   budget are held; k-center greedy, seeded with the recently sent embeddings,
//                   picks the pool budget of them (sent as the rate budget allows, most diverse
//                   first) and drops the rest.
//  ams_adaptive     AMS: evenly spaced at r frames per second of capture time; r follows the
//                   server's teacher agreement (OnTeacherAgreement).
//  paced_confidence_diversity
//                   one frame per slot of 60 / budget_per_minute s of capture time, the slot's
//                   best by image score (0 without detections) + diversity_weight x its
//                   distance to the nearest of the last diversity_history sent embeddings
//                   (halved: in [0, 1]). Uniform's pace, D-SBAD's choice within it: a slot
//                   always sends, so no scene is starved. The slot's best is held (kHold) until
//                   the slot's last frame.
// Frames without an embedding are never taken by the two diversity strategies, except as
// coverage frames.
//
// Coverage floor (coverage_share, for top_confidence, least_confidence, diversity and
// top_confidence_diversity): a frame is also sent, whatever the strategy thinks of it, when
// none was sent for 60 / (budget_per_minute x coverage_share) s of capture time. A strategy
// that ranks frames by what the student sees can otherwise starve itself: after a change of
// scene a student that finds nothing confident sends nothing more, so it is never trained on the
// new scene (issue 13). coverage_share 0 is each strategy exactly as published.
//
// Cold start: until the edge runs a model from the server (model_from_server), the student's
// scores and embeddings say little, so every strategy samples with `uniform` (the uniform_*
// options).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/vision/detection.h"
#include "common/base/status.h"

namespace sd {

enum class ScoreAggregate { kMax, kMin, kMean, kSum };

// "max" | "min" | "mean" | "sum".
StatusOr<ScoreAggregate> ParseScoreAggregate(const std::string& name);
const char* ScoreAggregateName(ScoreAggregate aggregate);

// The image's confidence: the aggregate of its detection scores; nullopt when there are no
// detections.
std::optional<float> ImageScore(const Detections& detections, ScoreAggregate aggregate);

enum class SamplerStrategy {
  kUniform,
  kRandom,
  kFirstN,
  kTopConfidence,
  kLeastConfidence,
  kDiversity,
  kTopConfidenceDiversity,
  kAmsAdaptive,
  kPacedConfidenceDiversity,
};

// The strategy a word of the list above names; InvalidArgument "strategy '<name>' unknown
// (<the words>)" for any other (the caller adds where the word came from).
StatusOr<SamplerStrategy> ParseSamplerStrategy(const std::string& name);
const char* SamplerStrategyName(SamplerStrategy strategy);  // its word in the list above
// Every strategy, in the order of the list above.
const std::vector<SamplerStrategy>& AllSamplerStrategies();
// Their words, in the same order (the benchmark's grid names runs by them).
const std::vector<std::string>& SamplerStrategies();
bool IsSamplerStrategy(const std::string& name);

struct SamplerOptions {
  SamplerStrategy strategy = SamplerStrategy::kUniform;  // see the list above
  double budget_per_minute = 6;      // frames per minute of capture time; 0 = no rate limit
  int64_t budget_total = 0;          // stop after this many frames; 0 = unlimited (first_n: required)
  double uniform_probability = 0.1;  // uniform: share of frames kept; random: probability per frame
  int uniform_every = 0;             // uniform, when > 0: the 1st, (k+1)th, ... considered frame
  ScoreAggregate aggregate = ScoreAggregate::kMax;
  // Threshold percentile of the recent scores (confidence strategies) or nearest-sent distances
  // (diversity). Unset: 10 for least_confidence, 90 for the others.
  std::optional<double> percentile;
  int warmup_frames = 100;  // frames observed before any is taken (confidence, diversity)
  int window_frames = 600;  // the percentile follows the last N observations (scenes change)
  uint64_t seed = 1;        // random
  int diversity_history = 32;  // sent embeddings that new frames must differ from (diversity*)
  // top_confidence_diversity: frames sent per pool (the pool holds gamma x that many
  // candidates); 0 = budget_per_minute x pool_window_s / 60.
  int pool_size = 0;
  double pool_window_s = 60;
  double gamma = 2;
  // ams_adaptive: frames per second of capture time, kept in [ams_min_rate, ams_max_rate];
  // updated after every ams_update_every agreement reports.
  double ams_initial_rate = 1.0;
  double ams_min_rate = 0.1;
  double ams_max_rate = 1.0;
  int ams_update_every = 5;
  // paced_confidence_diversity: weight of a frame's novelty against its confidence.
  double diversity_weight = 0.5;
  // Share of the rate budget that the coverage floor guarantees (see above); 0: off.
  double coverage_share = 0.25;

  // The one check of these options (CreateSampler runs it; a config reader runs it after
  // reading): InvalidArgument "<field>: <problem>", the field first (`aggregate` is the YAML
  // key `score`), so that YamlReader::Check reports it at the key's path and line.
  Status Validate() const;
  double EffectivePercentile() const;
  // top_confidence_diversity: frames sent per pool, as configured or derived (valid options).
  int PoolBudget() const;
  // Seconds of capture time without a sent frame after which the coverage floor sends one;
  // +inf when the floor is off (coverage_share 0, no rate budget, or a strategy without it).
  double CoverageGapSeconds() const;
};

// What the sampler may look at for one frame. The pointers are borrowed for the call only.
struct FrameFeatures {
  int64_t index = 0;
  double time_s = 0;  // capture time, seconds; drives the rate budget
  const Detections* detections = nullptr;         // the student's; nullptr = none
  const std::vector<float>* embedding = nullptr;  // the student's L2-normalised image embedding, if any
  bool model_from_server = false;                 // false: cold start
};

enum class SampleDecision {
  kSkip,  // not sent
  kTake,  // send now
  kHold,  // keep it (encoded): a later TakeReleased() or TakeDropped() names it
};

// One capture thread owns it; only OnTeacherAgreement may be called from another thread.
class Sampler {
 public:
  virtual ~Sampler();
  // Call once per frame, in capture order. After each call (whatever it returned) collect
  // TakeReleased() and TakeDropped(): they may name the frame just held.
  virtual SampleDecision Offer(const FrameFeatures& frame) = 0;
  // Indices of held frames to send now, in order; each is named once.
  virtual std::vector<int64_t> TakeReleased();
  // Indices of held frames that will never be sent.
  virtual std::vector<int64_t> TakeDropped();
  // The server's agreement in [0, 1] between the teacher's labels of this edge's consecutive
  // stored frames (AMS). Negative = unknown, ignored. Thread-safe.
  virtual void OnTeacherAgreement(double agreement);
  // Frames sent so far (kTake plus released).
  virtual int64_t taken() const = 0;
  // The frames-per-minute budget from the next frame on, > 0 (edge/budget_controller.h: the
  // budget moves apart from the strategy's choice). Capture thread, like Offer.
  virtual void SetBudgetPerMinute(double per_minute) = 0;
};

// InvalidArgument for bad options or an unknown strategy.
StatusOr<std::unique_ptr<Sampler>> CreateSampler(const SamplerOptions& options);

// `options` for a sampler that sees every `detect_every`-th frame only (the edge's
// detect_every): its per-frame share, spacing and warm-up are of the frames it sees, so they are
// scaled to keep the configured rate per frame of video. (The fleet's cameras at detect_every 4
// sent 7.5 frames a minute instead of 20 without this.)
SamplerOptions ForDetectEvery(SamplerOptions options, int detect_every);

}  // namespace sd
