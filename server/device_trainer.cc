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
  if (iterations < 1) return Status::InvalidArgument("round iterations must be >= 1");
  if (replay_frames < 1) return Status::InvalidArgument("round replay_frames must be >= 1");
  if (!(max_map50_drop >= 0)) return Status::InvalidArgument("round max_map50_drop must be >= 0");
  if (!(max_forgetting >= 0)) return Status::InvalidArgument("round max_forgetting must be >= 0");
  if (min_validation_frames < 0) return Status::InvalidArgument("round min_validation_frames must be >= 0");
  if (!(sparse_fraction >= 0 && sparse_fraction < 1))
    return Status::InvalidArgument("round sparse_fraction must be in [0, 1) (0: dense rounds)");
  if (!(eval_score_threshold >= 0 && eval_score_threshold < 1))
    return Status::InvalidArgument("round eval_score_threshold must be in [0, 1)");
  return trainer.Validate();
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
  if (!valid.ok()) return valid.WithContext(what);
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

// ---------------------------------------------------------------------------------------------
// RoundScheduler.

namespace {

// Weights of the newest image score in the two running means of the drift signal: the recent
// one follows the last few frames, the long-run one the last few dozen.
constexpr double kRecentScoreWeight = 0.3;
constexpr double kLongRunScoreWeight = 0.05;

double Mix(double mean, double value, double weight) { return mean < 0 ? value : mean + weight * (value - mean); }

}  // namespace

int RoundIterations(int iterations, const ScheduledRound& round, const SchedulerOptions& options) {
  const int floor = std::max(1, (iterations + 3) / 4);
  const int new_frames = round.new_frames;
  if (round.others_waiting == 0 || new_frames >= options.min_new_frames || options.min_new_frames <= 0)
    return iterations;
  const int scaled = static_cast<int>(std::ceil(static_cast<double>(iterations) * new_frames / options.min_new_frames));
  return std::clamp(scaled, floor, iterations);
}

RoundScheduler::RoundScheduler(SchedulerOptions o) : options_(o) {}

RoundScheduler::DeviceState& RoundScheduler::Entry(const std::string& device, double now_s) {
  auto it = index_.find(device);
  if (it == index_.end()) {
    it = index_.emplace(device, devices_.size()).first;
    // A device's wait for its first round counts from its first frame.
    DeviceState fresh;
    fresh.name = device;
    fresh.last_round_s = now_s;
    devices_.push_back(fresh);
  }
  return devices_[it->second];
}

void RoundScheduler::SetPaused(const std::string& device, bool paused, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceState& d = Entry(device, now_s);
  d.paused = paused;
  if (paused) d.requested = false;
}

void RoundScheduler::RequestRound(const std::string& device, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry(device, now_s).requested = true;
}

void RoundScheduler::OnNewFrame(const std::string& device, double now_s, double image_score) {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceState& d = Entry(device, now_s);
  ++d.new_frames;
  if (std::isfinite(image_score)) {
    d.recent_score = Mix(d.recent_score, image_score, kRecentScoreWeight);
    d.longrun_score = Mix(d.longrun_score, image_score, kLongRunScoreWeight);
  }
}

bool RoundScheduler::HasWork(const DeviceState& d, double now_s) const {
  return !d.running && !d.paused &&
         (d.requested || d.new_frames >= options_.min_new_frames ||
                        (d.new_frames >= 1 && now_s - d.last_round_s >= options_.max_wait_s));
}

double RoundScheduler::BenefitOf(const DeviceState& d, double now_s) const {
  const double data = std::min(1.0, d.new_frames / (2.0 * std::max(1, options_.min_new_frames)));
  const double deficit = d.map50 < 0 ? 1.0 : 1.0 - std::clamp(d.map50, 0.0, 1.0);
  const double drift = d.recent_score < 0 ? 0.0 : std::clamp(4 * (d.longrun_score - d.recent_score), 0.0, 1.0);
  const double waiting = std::max(0.0, now_s - d.last_round_s) / std::max(1e-3, options_.max_wait_s);
  return data + deficit + drift + waiting;
}

std::optional<size_t> RoundScheduler::PickRoundRobin(double now_s) {
  const size_t n = devices_.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (cursor_ + k) % n;
    if (!HasWork(devices_[i], now_s)) continue;
    cursor_ = (i + 1) % n;
    return i;
  }
  return std::nullopt;
}

std::optional<size_t> RoundScheduler::PickByBenefit(double now_s) const {
  std::optional<size_t> best, most_skipped;
  double best_benefit = 0, most_skipped_benefit = 0;
  for (size_t i = 0; i < devices_.size(); ++i) {
    const DeviceState& d = devices_[i];
    if (!HasWork(d, now_s)) continue;
    const double benefit = BenefitOf(d, now_s);
    // Among the devices passed over too often, the most passed over; of those the one that
    // gains most (a device never trained before one that was).
    if (d.skipped >= options_.max_skips &&
        (!most_skipped || d.skipped > devices_[*most_skipped].skipped ||
         (d.skipped == devices_[*most_skipped].skipped && benefit > most_skipped_benefit)))
      most_skipped = i, most_skipped_benefit = benefit;
    if (!best || benefit > best_benefit) best = i, best_benefit = benefit;
  }
  return most_skipped ? most_skipped : best;
}

std::optional<ScheduledRound> RoundScheduler::Next(double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  // An operator's request goes before the policy's pick.
  std::optional<size_t> chosen;
  for (size_t i = 0; i < devices_.size() && !chosen; ++i)
    if (devices_[i].requested && HasWork(devices_[i], now_s)) chosen = i;
  const bool requested = chosen.has_value();
  if (!chosen) chosen = options_.policy == SchedulePolicy::kRoundRobin ? PickRoundRobin(now_s) : PickByBenefit(now_s);
  if (!chosen) return std::nullopt;
  DeviceState& d = devices_[*chosen];
  ScheduledRound round{d.name, d.new_frames, 0, ""};
  char summary[160];
  std::snprintf(summary, sizeof summary, "%s, %d new frames, benefit %.2f, passed over %d times",
                requested                                   ? "requested by an admin"
                : options_.policy == SchedulePolicy::kRoundRobin ? "round robin"
                : d.skipped >= options_.max_skips           ? "passed over most"
                                                            : "largest benefit",
                d.new_frames, BenefitOf(d, now_s), d.skipped);
  round.why = summary;
  for (size_t i = 0; i < devices_.size(); ++i) {
    DeviceState& other = devices_[i];
    if (i == *chosen || !HasWork(other, now_s)) continue;
    ++round.others_waiting;
    std::snprintf(summary, sizeof summary, "%s %s %df %ds %.2f", round.others_waiting == 1 ? "; waiting:" : ",",
                  other.name.c_str(), other.new_frames, other.skipped, BenefitOf(other, now_s));
    round.why += summary;
    if (options_.policy == SchedulePolicy::kBenefit) ++other.skipped;  // passed over with work
  }
  d.new_frames = 0;
  d.skipped = 0;
  d.requested = false;
  d.running = true;
  return round;
}

void RoundScheduler::RoundDone(const std::string& device, double published_map50, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(device);
  if (it == index_.end()) return;
  DeviceState& d = devices_[it->second];
  if (d.running) d.last_round_s = now_s;
  d.running = false;
  d.map50 = published_map50;
}

void RoundScheduler::Regrouped(const std::map<std::string, std::vector<std::string>>& sources, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<DeviceState> made;
  std::set<std::string> gone;
  for (const auto& [into, from] : sources) {
    DeviceState unit;
    unit.name = into;
    unit.last_round_s = now_s;
    for (const std::string& old : from) {
      gone.insert(old);
      auto it = index_.find(old);
      if (it == index_.end()) continue;
      const DeviceState& d = devices_[it->second];
      unit.new_frames += d.new_frames;
      unit.map50 = std::max(unit.map50, d.map50);
      if (unit.recent_score < 0) unit.recent_score = d.recent_score, unit.longrun_score = d.longrun_score;
    }
    gone.insert(into);  // a key used again (a device alone once more) starts afresh
    made.push_back(unit);
  }
  std::vector<DeviceState> kept;
  for (DeviceState& d : devices_)
    if (!gone.count(d.name)) kept.push_back(std::move(d));
  kept.insert(kept.end(), made.begin(), made.end());
  devices_ = std::move(kept);
  index_.clear();
  for (size_t i = 0; i < devices_.size(); ++i) index_[devices_[i].name] = i;
  cursor_ = devices_.empty() ? 0 : cursor_ % devices_.size();
}

int RoundScheduler::pending_frames(const std::string& device) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(device);
  return it == index_.end() ? 0 : devices_[it->second].new_frames;
}

double RoundScheduler::Benefit(const std::string& device, double now_s) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(device);
  return it == index_.end() ? 0 : BenefitOf(devices_[it->second], now_s);
}

}  // namespace sd
