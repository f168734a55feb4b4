// One camera's student on the server: training rounds, and the update gate that decides
// whether a round's result is sent to the edge (the scheduler that shares training time among
// cameras is server/round_scheduler.h).
//
// A round trains a *copy* of the published weights (the candidate) on the camera's recent
// frames, then scores candidate and published weights on held-out frames. Only a candidate
// that does not lose held-out mAP50 becomes the next version; a rejected one is thrown away,
// so a bad round (label noise, a drift the replay window has not caught up with) never
// reaches the camera. The data comes in as arguments: storage is someone else's concern.
// This header keeps torch out.
#pragma once

#include <atomic>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/link/model_update.h"
#include "common/base/status.h"
#include "common/student/student.h"
#include "common/eval/student_eval.h"
#include "common/student/student_trainer.h"

namespace sd {

struct RoundOptions {
  int iterations = 100;           // Adam steps per round (K)
  int replay_frames = 300;        // train on the most recent N training frames (replay horizon)
  double max_map50_drop = 0.02;   // publish only if held-out mAP50 did not fall by more than this
  // ... and only if mAP50 on the long-term held-out set (LongTermMemory::validation) did not
  // fall by more than this: what a round may forget of earlier conditions to learn the new one.
  double max_forgetting = 0.1;
  int min_validation_frames = 5;  // below this the gate only checks that training ran (bootstrapping)
  // Batch size, learning rate, augmentation and seed. Per round, total_steps is replaced by
  // `iterations` and warmup_steps is capped at it, so each round runs a short warm-up and one
  // cosine that ends at final_lr_fraction of the rate; the defaults keep that nearly constant
  // because rounds continue one another rather than start over. A round's seed follows from
  // trainer.seed, the version it starts from and the rounds discarded since that version:
  // reproducible, yet every round (a retry too) draws new batches.
  TrainerOptions trainer = DefaultTrainer();
  // Detections under this score are dropped before mAP is computed (mAP wants the low ones).
  float eval_score_threshold = 0.01f;
  // AMS's gradient-guided sparse rounds, when in (0, 1): after the round's first step on every
  // parameter, the `sparse_fraction` of parameters with the largest gradient are kept, the
  // rest go back to the published values, and the remaining steps train only that set.
  // BatchNorm statistics follow the batches and are always part of the set (sent, never
  // stale). 0: every weight trains. Rounds from version 0 train every weight: their update
  // is a full model anyway.
  double sparse_fraction = 0;

  // The round's numbers, then trainer.Validate(). A round field's message starts with its name
  // (YamlReader::Check maps it to the `training:` key of the same name).
  Status Validate() const;
  static TrainerOptions DefaultTrainer();
};

// How a candidate reaches the edge: `payload` in `encoding` turns `base` (the published weights)
// into `delivered`, which may differ from the candidate by the encoding's rounding. The gate
// scores the delivered weights and they become the published ones, so the server holds
// exactly what the edge runs and the next round starts from there.
struct DeliveredUpdate {
  UpdateEncoding encoding = UpdateEncoding::kFullFp32;
  std::string payload;  // empty: no update was made (no encoder)
  std::vector<float> delivered;
};
// `base_version` 0: the edge may hold anything, so the update must be a full model.
using UpdateEncoder = std::function<StatusOr<DeliveredUpdate>(
    uint64_t base_version, const std::vector<float>& base, const std::vector<float>& candidate)>;

// A round's long-term memory (docs/architecture.md, "Memory against forgetting"): frames of
// what the camera saw before its recent windows, chosen to cover every look (k-center). The
// round trains on `replay` beside its recent frames, and the gate checks on `validation` that
// the candidate did not forget those looks. Both may be empty (a new camera has no past).
struct LongTermMemory {
  std::vector<TrainingSample> replay;
  std::vector<LabelledFrame> validation;
};

struct RoundResult {
  bool published = false;
  uint64_t version = 0;  // the published version after the round (unchanged when discarded)
  // On the (recent) validation frames; -1 when not measured (no validation frames).
  double map50_before = -1, map50_after = -1;
  // On the long-term validation frames; -1 when not measured (none).
  double longterm_map50_before = -1, longterm_map50_after = -1;
  int train_frames = 0, val_frames = 0;     // recent training frames (replay window), recent validation frames
  int memory_frames = 0, longterm_val_frames = 0;  // long-term training and validation frames
  int iterations = 0;        // Adam steps run
  double seconds = 0;        // the whole round
  double train_seconds = 0;  // of which the Adam steps
  double final_loss = 0;     // mean loss of the last steps (up to 10) of the round
  std::string reason;        // one line: why it was published or discarded
  int changed_weights = 0;   // weights whose value differs from the start of the round
  DeliveredUpdate update;    // with an encoder, the published version's update (else empty)
};

// What the gate saw of a round: mAP50 before and after on each held-out set, whether the set
// holds any label at all (else mAP cannot tell two students apart), and the training loss.
struct GateScores {
  double final_loss = 0;
  int recent_frames = 0;
  bool recent_labelled = false;
  double recent_before = -1, recent_after = -1;
  int longterm_frames = 0;
  bool longterm_labelled = false;
  double longterm_before = -1, longterm_after = -1;
};
struct GateDecision {
  bool publish = false;
  std::string reason;  // one line, with the figures
};
// The gate: a finite loss; then, with at least min_validation_frames recent held-out frames
// that hold labels, recent mAP50 may fall by max_map50_drop at most (fewer frames: the round
// passes, bootstrapping); and with at least min_validation_frames labelled long-term frames,
// long-term mAP50 may fall by max_forgetting at most. So a round that gains on the scene as it
// is now is discarded for an earlier condition's sake only when it forgets beyond that margin.
GateDecision DecideGate(const GateScores& scores, const RoundOptions& options);

// AMS's selection: every index `always` marks, plus the ceil(fraction x n) of the other n
// indices of largest |magnitude| (ties: lower index first; NaN counts as 0).
std::vector<bool> SparseSelection(const std::vector<float>& magnitude, const std::vector<bool>& always,
                                  double fraction);

class DeviceTrainer {
 public:
  // Starts from `initial_weights` (StudentModel::SerializeWeights bytes, whose architecture
  // must equal `arch`) as version `initial_version`. Empty `initial_weights` starts from
  // fresh weights seeded with options.trainer.seed.
  static StatusOr<std::unique_ptr<DeviceTrainer>> Create(const std::string& device_id, const StudentArchitecture& arch,
                                                         const std::string& initial_weights, uint64_t initial_version,
                                                         const RoundOptions& options, UpdateEncoder encoder = {});
  ~DeviceTrainer();

  // One round: trains a candidate starting from the published weights on the last
  // `replay_frames` of `train` (ordered oldest to newest), evaluates candidate and published
  // weights on `validation` (mAP50 against its labels), and publishes the candidate as
  // version + 1 if the gate passes, else discards it. A discarded round is a result, not an
  // error; errors are bad input (no training frames, bad images) and library failures, and
  // leave the published weights unchanged too. Rounds of one trainer run one at a time (a
  // second caller waits); the accessors below stay available while a round runs. `iterations`
  // > 0 replaces options.iterations for this round (the scheduler's RoundIterations).
  // `memory` adds long-term frames to the training set (beside the replay window) and a
  // long-term held-out set to the gate (DecideGate).
  StatusOr<RoundResult> RunRound(const std::vector<TrainingSample>& train, const std::vector<LabelledFrame>& validation,
                                 int iterations = 0, const LongTermMemory& memory = {});

  // Makes a running round (and any later one) stop at its next step with Aborted, leaving
  // the published weights as they are: a shutdown must not wait for a round to end.
  void Cancel() { cancelled_ = true; }

  const std::string& device_id() const { return device_id_; }
  const StudentArchitecture& architecture() const { return arch_; }
  uint64_t version() const;
  std::string weights() const;  // serialized published weights
  std::vector<float> flat_weights() const;
  // Held-out mAP50 of the published version when it was published; -1 when unknown (the
  // initial weights, or a version published while bootstrapping without validation frames).
  double published_map50() const;
  // The published version scored on `frames` (mAP50 against their labels) the way the gate
  // scores it; safe while a round runs. Automatic grouping scores students on other devices'
  // frames with it.
  StatusOr<EvalResult> EvaluatePublished(const std::vector<LabelledFrame>& frames) const;

 private:
  struct Published;
  DeviceTrainer(std::string device_id, StudentArchitecture arch, RoundOptions options, UpdateEncoder encoder,
                std::shared_ptr<const Published> published);
  std::shared_ptr<const Published> Snapshot() const;

  const std::string device_id_;
  const StudentArchitecture arch_;
  const RoundOptions options_;
  const UpdateEncoder encoder_;

  std::atomic<bool> cancelled_{false};
  std::mutex round_mu_;  // held for a whole RunRound: one round at a time
  uint64_t discarded_since_publish_ = 0;  // guarded by round_mu_; varies the seed of retries

  mutable std::mutex mu_;
  // Guarded by mu_: the published version and its weights, an immutable snapshot replaced as
  // a whole on publish, so readers copy the pointer and use it without the lock.
  std::shared_ptr<const Published> published_;
};

}  // namespace sd
