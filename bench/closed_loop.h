// The closed loop of streamdistill-bench (--closed-loop): the edge and the server in turn, as
// deployed. The offline grid samples the whole stream with the start student and trains once
// at the end, so it cannot reward a sampler for adapting sooner after a change of scene. Here
// the sampler sees the student of the latest round, a round runs every `round_every` stream
// frames on the newest `replay_frames` frames sent (the server's replay window), and every
// round's student is scored on the held-out frames: the figure is the mean over the rounds that end
// after `score_from`, i.e. how fast and how far mAP50 recovers after the change.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/replay.h"

namespace sd {

struct ClosedLoopOptions {
  int round_every = 100;    // stream frames between rounds; a last round ends the stream
  int steps = 20;           // Adam steps per round
  int replay_frames = 30;   // the newest frames sent that each round trains on
  int64_t score_from = 0;   // stream position: the rounds that end after it are averaged

  Status Validate() const;
};

struct ClosedLoopRound {
  int64_t position = 0;  // the stream frames seen when the round ran
  int sent = 0;          // frames sent by then
  std::vector<EvalResult> evals;  // the round's student on each held-out set
};

struct ClosedLoopRun {
  Sampled sampled;
  std::vector<ClosedLoopRound> rounds;
  // Per held-out set, mAP50 and mAP50-95 averaged over the rounds that end after score_from.
  std::vector<EvalResult> scored;
};

// `training` gives the batch, rate, augmentation and seed (each round's seed is seed + round);
// its total_steps is replaced by loop.steps. The student starts from `start_weights` and keeps
// learning from round to round, every round published (the gate is measured apart, --memory).
StatusOr<ClosedLoopRun> ReplayClosedLoop(const std::string& start_weights, const Stream& stream,
                                         const SamplerOptions& sampler, const ClosedLoopOptions& loop,
                                         const TrainerOptions& training, const InferenceOptions& inference,
                                         const std::vector<std::vector<LabelledFrame>>& evals);

}  // namespace sd
