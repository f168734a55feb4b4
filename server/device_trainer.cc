#include "server/device_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

namespace sd {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string Fixed3(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", v);
  return buf;
}

// Training needs 8-bit BGR: anything else (an empty or grey frame from a broken decode) is
// named by its position, `offset` + its index, after `what`.
Status CheckBgrFrames(const std::vector<TrainingSample>& frames, size_t offset, const std::string& what) {
  for (size_t i = 0; i < frames.size(); ++i)
    if (frames[i].bgr.empty() || frames[i].bgr.type() != CV_8UC3)
      return Status::InvalidArgument(what + std::to_string(offset + i) + " is not an 8-bit BGR image");
  return Status::Ok();
}

}  // namespace

std::vector<bool> SparseSelection(const std::vector<float>& magnitude, const std::vector<bool>& always,
                                  double fraction) {
  std::vector<bool> selected(magnitude.size(), false);
  std::vector<std::pair<float, size_t>> moved;  // (magnitude, index) of the candidates
  moved.reserve(magnitude.size());
  for (size_t k = 0; k < magnitude.size(); ++k) {
    if (k < always.size() && always[k]) selected[k] = true;
    else moved.push_back({std::isfinite(magnitude[k]) ? std::fabs(magnitude[k]) : 0.0f, k});
  }
  const size_t keep = std::min(moved.size(), static_cast<size_t>(std::ceil(fraction * moved.size())));
  // Largest change first; ties by index so the selection is reproducible.
  std::partial_sort(moved.begin(), moved.begin() + keep, moved.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (size_t i = 0; i < keep; ++i) selected[moved[i].second] = true;
  return selected;
}

// ---------------------------------------------------------------------------------------------
// Options.

TrainerOptions RoundOptions::DefaultTrainer() {
  TrainerOptions t;
  t.batch_size = 16;
  t.learning_rate = 1e-3f;
  t.warmup_steps = 10;
  t.total_steps = 100;  // replaced by `iterations` each round
  // Rounds continue one another, so a schedule that decays to almost nothing every round
  // would waste the end of each; keep the rate within ~3x over a round.
  t.final_lr_fraction = 0.3f;
  return t;
}

Status RoundOptions::Validate() const {
  auto invalid = [](const std::string& problem) { return Status::InvalidArgument(problem); };
  if (iterations < 1) return invalid("iterations: must be >= 1");
  if (replay_frames < 1) return invalid("replay_frames: must be >= 1");
  if (!(max_map50_drop >= 0)) return invalid("max_map50_drop: must be >= 0");
  if (!(max_forgetting >= 0)) return invalid("max_forgetting: must be >= 0");
  if (min_validation_frames < 0) return invalid("min_validation_frames: must be >= 0");
  if (!(sparse_fraction >= 0 && sparse_fraction < 1)) return invalid("sparse_fraction: must be in [0, 1) (0: dense rounds)");
  if (!(eval_score_threshold >= 0 && eval_score_threshold < 1)) return invalid("eval_score_threshold: must be in [0, 1)");
  Status trainer_valid = trainer.Validate();
  if (!trainer_valid.ok()) return invalid("trainer." + trainer_valid.message());
  return Status::Ok();
}

GateDecision DecideGate(const GateScores& scores, const RoundOptions& options) {
  constexpr double kEps = 1e-12;
  GateDecision d;
  if (!std::isfinite(scores.final_loss)) {
    d.reason = "training diverged (loss " + std::to_string(scores.final_loss) + ")";
    return d;
  }
  const std::string recent = "held-out mAP50 " + Fixed3(scores.recent_before) + " -> " + Fixed3(scores.recent_after);
  const bool check_longterm = scores.longterm_frames >= options.min_validation_frames && scores.longterm_labelled;
  const std::string longterm = "long-term held-out mAP50 " + Fixed3(scores.longterm_before) + " -> " +
                               Fixed3(scores.longterm_after) + " (" + std::to_string(scores.longterm_frames) +
                               " frames)";
  if (check_longterm && scores.longterm_after < scores.longterm_before - options.max_forgetting - kEps) {
    d.reason = longterm + " forgets more than " + Fixed3(options.max_forgetting) + " (" + recent + ")";
    return d;
  }
  const std::string longterm_note = check_longterm ? "; " + longterm + " within " + Fixed3(options.max_forgetting) : "";
  if (scores.recent_frames < options.min_validation_frames) {
    d.publish = true;
    d.reason = "bootstrapping: " + std::to_string(scores.recent_frames) + " validation frames < " +
               std::to_string(options.min_validation_frames) + ", gate checks training only" + longterm_note;
  } else if (!scores.recent_labelled) {
    // No reference box anywhere: mAP cannot tell the two apart, so this set cannot object.
    d.publish = true;
    d.reason = "validation frames hold no labels, gate checks training only" + longterm_note;
  } else if (scores.recent_after >= scores.recent_before - options.max_map50_drop - kEps) {
    d.publish = true;
    d.reason = recent + " within the allowed drop " + Fixed3(options.max_map50_drop) + longterm_note;
  } else {
    d.reason = recent + " drops more than " + Fixed3(options.max_map50_drop) + longterm_note;
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// DeviceTrainer.

struct DeviceTrainer::Published {
  uint64_t version = 0;
  std::shared_ptr<const StudentModel> model;
  std::string bytes;  // model->SerializeWeights(), kept because every new stream asks for it
  std::shared_ptr<const StudentDetector> detector;  // for scoring it against the next candidate
  double map50 = -1;
};

DeviceTrainer::DeviceTrainer(std::string device_id, StudentArchitecture arch, RoundOptions options,
                             UpdateEncoder encoder, std::shared_ptr<const Published> published)
    : device_id_(std::move(device_id)),
      arch_(std::move(arch)),
      options_(std::move(options)),
      encoder_(std::move(encoder)),
      published_(std::move(published)) {}

DeviceTrainer::~DeviceTrainer() = default;

namespace {

InferenceOptions EvalInference(const RoundOptions& options) {
  InferenceOptions inference;
  inference.score_threshold = options.eval_score_threshold;
  inference.device = options.trainer.device;
  return inference;
}

}  // namespace

StatusOr<std::unique_ptr<DeviceTrainer>> DeviceTrainer::Create(const std::string& device_id,
                                                               const StudentArchitecture& arch,
                                                               const std::string& initial_weights,
                                                               uint64_t initial_version, const RoundOptions& options,
                                                               UpdateEncoder encoder) {
  const std::string what = "device " + device_id;
  Status valid = arch.Validate();
  if (!valid.ok()) return valid.WithContext(what);
  valid = options.Validate();
  if (!valid.ok()) return valid.WithContext(what + ": round");
  std::unique_ptr<StudentModel> model;
  if (initial_weights.empty()) {
    SD_ASSIGN_OR_RETURN(model, StudentModel::Create(arch, options.trainer.seed));
  } else {
    StatusOr<std::unique_ptr<StudentModel>> loaded = StudentModel::FromBytes(initial_weights);
    if (!loaded.ok()) return loaded.status().WithContext(what + ": initial weights");
    model = std::move(loaded).value();
    if (model->architecture().Fingerprint() != arch.Fingerprint())
      return Status::InvalidArgument(what + ": initial weights are for '" + model->architecture().Fingerprint() +
                                     "', the device's student is '" + arch.Fingerprint() + "'");
  }
  auto published = std::make_shared<Published>();
  published->version = initial_version;
  published->bytes = model->SerializeWeights();
  StatusOr<std::shared_ptr<const StudentDetector>> detector = model->MakeDetector(EvalInference(options));
  if (!detector.ok()) return detector.status().WithContext(what);
  published->detector = std::move(detector).value();
  published->model = std::move(model);
  return std::unique_ptr<DeviceTrainer>(
      new DeviceTrainer(device_id, arch, options, std::move(encoder), std::move(published)));
}

std::shared_ptr<const DeviceTrainer::Published> DeviceTrainer::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

uint64_t DeviceTrainer::version() const { return Snapshot()->version; }
std::string DeviceTrainer::weights() const { return Snapshot()->bytes; }
std::vector<float> DeviceTrainer::flat_weights() const { return Snapshot()->model->FlatWeights(); }
double DeviceTrainer::published_map50() const { return Snapshot()->map50; }

StatusOr<EvalResult> DeviceTrainer::EvaluatePublished(const std::vector<LabelledFrame>& frames) const {
  const std::shared_ptr<const Published> current = Snapshot();
  StatusOr<EvalResult> result = EvaluateDetector(*current->detector, frames);
  if (!result.ok())
    return result.status().WithContext("device " + device_id_ + ": evaluating version " +
                                       std::to_string(current->version));
  return result;
}

StatusOr<RoundResult> DeviceTrainer::RunRound(const std::vector<TrainingSample>& train,
                                              const std::vector<LabelledFrame>& validation, int iterations,
                                              const LongTermMemory& memory) {
  std::lock_guard<std::mutex> round_lock(round_mu_);
  const auto round_start = std::chrono::steady_clock::now();
  const std::shared_ptr<const Published> current = Snapshot();
  const std::string what = "device " + device_id_ + " round from version " + std::to_string(current->version);

  RoundResult result;
  result.version = current->version;
  if (train.empty()) return Status::FailedPrecondition(what + ": no training frames");
  // The replay horizon: only the newest frames, so the student follows the scene as it is now.
  const size_t first = train.size() > static_cast<size_t>(options_.replay_frames) ? train.size() - options_.replay_frames : 0;
  std::vector<TrainingSample> replay(train.begin() + first, train.end());
  SD_RETURN_IF_ERROR(CheckBgrFrames(replay, first, what + ": training frame "));
  SD_RETURN_IF_ERROR(CheckBgrFrames(memory.replay, 0, what + ": long-term training frame "));
  result.train_frames = static_cast<int>(replay.size());
  result.val_frames = static_cast<int>(validation.size());
  result.memory_frames = static_cast<int>(memory.replay.size());
  result.longterm_val_frames = static_cast<int>(memory.validation.size());
  // Batches draw from both alike, so the memory's share of each batch is its share of frames.
  replay.insert(replay.end(), memory.replay.begin(), memory.replay.end());

  // The candidate is a copy: the published model is shared with readers and must not move
  // until the gate has passed.
  StatusOr<std::unique_ptr<StudentModel>> copy = StudentModel::FromBytes(current->bytes);
  if (!copy.ok()) return copy.status().WithContext(what + ": copying the published weights");
  std::shared_ptr<StudentModel> candidate = std::move(copy).value();

  const int steps = iterations > 0 ? iterations : options_.iterations;
  result.iterations = steps;
  TrainerOptions trainer_options = options_.trainer;
  trainer_options.total_steps = steps;
  trainer_options.warmup_steps = std::min(trainer_options.warmup_steps, steps);
  // New batches for every attempt: a retry after a discarded round must not replay the very
  // candidate that was just rejected.
  trainer_options.seed = options_.trainer.seed + 1000003 * current->version + discarded_since_publish_;
  {
    const auto train_start = std::chrono::steady_clock::now();
    StatusOr<std::unique_ptr<StudentTrainer>> trainer = StudentTrainer::Create(candidate.get(), trainer_options);
    if (!trainer.ok()) return trainer.status().WithContext(what);
    const int tail = std::min(10, steps);
    double tail_loss = 0;
    const std::vector<float> start = candidate->FlatWeights();
    std::vector<bool> trainable;  // sparse rounds: the weights this round may change
    for (int i = 0; i < steps; ++i) {
      if (cancelled_) return Status::Aborted("device " + device_id_ + ": round cancelled (shutting down)");
      StatusOr<StepStats> step = (*trainer)->Step(replay);
      if (!step.ok()) return step.status().WithContext(what + ": step " + std::to_string(i + 1));
      if (i >= steps - tail) tail_loss += step->loss;
      if (options_.sparse_fraction > 0 && current->version > 0) {
        // A fresh Adam's first step moves nearly every weight by the same +-lr (m / sqrt(v) is
        // +-1), so its |change| cannot rank them; the gradient that step followed can: rank by
        // the change a plain gradient step would have made.
        if (trainable.empty())
          trainable = SparseSelection(candidate->GradientMagnitudes(), candidate->StatisticsMask(),
                                      options_.sparse_fraction);
        std::vector<float> flat = candidate->FlatWeights();
        for (size_t k = 0; k < flat.size(); ++k)
          if (!trainable[k]) flat[k] = start[k];
        SD_RETURN_IF_ERROR(candidate->SetFlatWeights(flat).WithContext(what));
      }
    }
    result.final_loss = tail_loss / tail;
    result.train_seconds = SecondsSince(train_start);
  }

  if (encoder_) {
    StatusOr<DeliveredUpdate> update =
        encoder_(current->version, current->model->FlatWeights(), candidate->FlatWeights());
    if (!update.ok()) return update.status().WithContext(what + ": encoding the update");
    SD_RETURN_IF_ERROR(candidate->SetFlatWeights(update->delivered).WithContext(what + ": delivered weights"));
    result.update = std::move(update).value();
  }
  {
    const std::vector<float> before = current->model->FlatWeights(), after = candidate->FlatWeights();
    for (size_t k = 0; k < before.size(); ++k) result.changed_weights += before[k] != after[k];
  }

  const InferenceOptions inference = EvalInference(options_);
  StatusOr<std::shared_ptr<const StudentDetector>> candidate_detector = candidate->MakeDetector(inference);
  if (!candidate_detector.ok()) return candidate_detector.status().WithContext(what + ": candidate");
  // Published and candidate on one held-out set: (before, after, the set holds a label).
  auto score_both = [&](const std::vector<LabelledFrame>& frames, const std::string& set,
                        double* before_map50, double* after_map50, bool* labelled) -> Status {
    if (frames.empty()) return Status::Ok();
    StatusOr<EvalResult> before = EvaluateDetector(*current->detector, frames);
    if (!before.ok()) return before.status().WithContext(what + ": evaluating the published weights on " + set);
    StatusOr<EvalResult> after = EvaluateDetector(**candidate_detector, frames);
    if (!after.ok()) return after.status().WithContext(what + ": evaluating the candidate on " + set);
    *before_map50 = before->map50;
    *after_map50 = after->map50;
    *labelled = before->valid();
    return Status::Ok();
  };
  GateScores scores;
  scores.final_loss = result.final_loss;
  scores.recent_frames = result.val_frames;
  scores.longterm_frames = result.longterm_val_frames;
  SD_RETURN_IF_ERROR(score_both(validation, "the recent held-out frames", &result.map50_before, &result.map50_after,
                                &scores.recent_labelled));
  SD_RETURN_IF_ERROR(score_both(memory.validation, "the long-term held-out frames", &result.longterm_map50_before,
                                &result.longterm_map50_after, &scores.longterm_labelled));
  scores.recent_before = result.map50_before;
  scores.recent_after = result.map50_after;
  scores.longterm_before = result.longterm_map50_before;
  scores.longterm_after = result.longterm_map50_after;
  const bool labelled = scores.recent_labelled;

  const GateDecision gate = DecideGate(scores, options_);
  const bool pass = gate.publish;
  result.reason = gate.reason;

  if (pass) {
    auto next = std::make_shared<Published>();
    next->version = current->version + 1;
    next->bytes = candidate->SerializeWeights();
    next->detector = std::move(candidate_detector).value();
    next->map50 = labelled ? result.map50_after : -1;
    next->model = std::move(candidate);
    std::lock_guard<std::mutex> lock(mu_);
    published_ = std::move(next);
    result.version = published_->version;
    result.published = true;
    discarded_since_publish_ = 0;
  } else {
    ++discarded_since_publish_;
  }
  result.seconds = SecondsSince(round_start);
  return result;
}

}  // namespace sd
