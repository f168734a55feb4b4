#include "bench/closed_loop.h"

#include <algorithm>

#include "bench/arrival_history.h"

namespace sd {

Status ClosedLoopOptions::Validate() const {
  // The field first, named as its YAML key (closed_loop.<field>), for the reader to point at it.
  if (round_every < 1) return Status::InvalidArgument("round_every: must be >= 1");
  if (steps < 1) return Status::InvalidArgument("steps: must be >= 1");
  if (replay_frames < 1) return Status::InvalidArgument("replay_frames: must be >= 1");
  if (score_from < 0) return Status::InvalidArgument("score_from: must be >= 0");
  return Status::Ok();
}

namespace {

// The student after `round` on the newest replay window of what was sent, and its scores.
StatusOr<ClosedLoopRound> RunRound(StudentModel* model, const Stream& stream, const Sampled& sent, int round,
                                   const ClosedLoopOptions& loop, TrainerOptions training,
                                   const InferenceOptions& inference,
                                   const std::vector<std::vector<LabelledFrame>>& evals) {
  // The newest replay window of what was sent, chosen as the server chooses it (nothing held out).
  RoundWindowSizes windows;
  windows.replay_frames = loop.replay_frames;
  windows.validation_frames = 0;
  SD_ASSIGN_OR_RETURN(RoundRecords chosen,
                      SelectRoundRecords(ArrivalHistory(sent.positions.size(), 0, [](size_t) { return std::vector<float>(); }),
                                         {"bench"}, windows));
  std::vector<TrainingSample> samples;
  for (const FrameRecord& r : chosen.train) samples.push_back(stream.frames[sent.positions[r.sequence - 1]].sample);
  training.total_steps = loop.steps;
  training.seed += static_cast<uint64_t>(round);
  SD_ASSIGN_OR_RETURN(auto trainer, StudentTrainer::Create(model, training));
  for (int step = 0; step < loop.steps; ++step) SD_RETURN_IF_ERROR(trainer->Step(samples).status());
  ClosedLoopRound out;
  out.sent = static_cast<int>(sent.positions.size());
  SD_ASSIGN_OR_RETURN(out.evals, EvaluateEach(*model, inference, evals));
  return out;
}

std::vector<EvalResult> MeanFrom(const std::vector<ClosedLoopRound>& rounds, int64_t score_from, size_t sets) {
  std::vector<EvalResult> mean(sets);
  int counted = 0;
  for (const ClosedLoopRound& r : rounds) {
    if (r.position <= score_from) continue;
    ++counted;
    for (size_t s = 0; s < sets; ++s) {
      mean[s].map50 += r.evals[s].map50;
      mean[s].map50_95 += r.evals[s].map50_95;
    }
  }
  for (EvalResult& m : mean) {
    m.map50 /= std::max(1, counted);
    m.map50_95 /= std::max(1, counted);
  }
  return mean;
}

}  // namespace

StatusOr<ClosedLoopRun> ReplayClosedLoop(const std::string& start_weights, const Stream& stream,
                                         const SamplerOptions& sampler, const ClosedLoopOptions& loop,
                                         const TrainerOptions& training, const InferenceOptions& inference,
                                         const std::vector<std::vector<LabelledFrame>>& evals) {
  SD_RETURN_IF_ERROR(loop.Validate().WithContext("closed loop"));
  if (stream.frames.empty()) return Status::InvalidArgument("closed loop: the stream has no frames");
  if (loop.score_from >= static_cast<int64_t>(stream.frames.size()))
    return Status::InvalidArgument("closed loop: score_from " + std::to_string(loop.score_from) +
                                   " is past the stream's " + std::to_string(stream.frames.size()) + " frames");
  SD_ASSIGN_OR_RETURN(auto model, StudentModel::FromBytes(start_weights));
  SD_ASSIGN_OR_RETURN(auto detector, model->MakeDetector(inference));
  SD_ASSIGN_OR_RETURN(SamplingPass pass, SamplingPass::Create(stream, sampler));
  ClosedLoopRun run;
  const size_t n = stream.frames.size();
  for (size_t i = 0; i < n; ++i) {
    // The edge runs the student of the latest round on every frame.
    SD_ASSIGN_OR_RETURN(StudentOutput output, detector->Detect(stream.frames[i].sample.bgr));
    pass.Offer(i, output);
    const bool round_due = (i + 1) % static_cast<size_t>(loop.round_every) == 0 || i + 1 == n;
    if (!round_due || pass.sampled().positions.empty()) continue;
    SD_ASSIGN_OR_RETURN(ClosedLoopRound round,
                        RunRound(model.get(), stream, pass.sampled(), static_cast<int>(run.rounds.size()), loop,
                                 training, inference, evals));
    round.position = static_cast<int64_t>(i + 1);
    run.rounds.push_back(std::move(round));
    SD_ASSIGN_OR_RETURN(detector, model->MakeDetector(inference));
  }
  run.sampled = pass.Finish();
  if (run.rounds.empty()) return Status::FailedPrecondition("closed loop: the sampler sent no frame, no round ran");
  run.scored = MeanFrom(run.rounds, loop.score_from, evals.size());
  return run;
}

}  // namespace sd
