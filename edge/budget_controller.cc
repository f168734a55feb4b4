#include "edge/budget_controller.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

#include "common/vision/appearance.h"

namespace sd {
namespace {

// SceneWatch's means: the last few seconds against the last minute or so of capture time.
constexpr double kFastSeconds = 2;
constexpr double kSlowSeconds = 60;
// Capture time the slow mean needs before it is compared (at start and after a change).
constexpr double kWarmupSeconds = 10;

struct ReasonWord {
  BudgetReason reason;
  const char* name;
};
constexpr ReasonWord kReasonWords[] = {
    {BudgetReason::kStart, "start"},
    {BudgetReason::kAgreement, "agreement"},
    {BudgetReason::kAgreementFell, "agreement_fell"},
    {BudgetReason::kSceneChange, "scene_change"},
    {BudgetReason::kServer, "server"},
};

}  // namespace

StatusOr<BudgetMode> ParseBudgetMode(const std::string& name) {
  if (name == "adaptive") return BudgetMode::kAdaptive;
  if (name == "fixed") return BudgetMode::kFixed;
  return Status::InvalidArgument("mode: '" + name + "' unknown (adaptive | fixed)");
}

const char* BudgetModeName(BudgetMode mode) { return mode == BudgetMode::kFixed ? "fixed" : "adaptive"; }

const char* BudgetReasonName(BudgetReason reason) {
  for (const ReasonWord& word : kReasonWords)
    if (word.reason == reason) return word.name;
  return "?";
}

const std::vector<BudgetReason>& AllBudgetReasons() {
  static const std::vector<BudgetReason> all = [] {
    std::vector<BudgetReason> out;
    for (const ReasonWord& word : kReasonWords) out.push_back(word.reason);
    return out;
  }();
  return all;
}

BudgetOptions BudgetOptions::Resolved(double sampling_per_minute) const {
  BudgetOptions out = *this;
  if (out.ceiling_per_minute == 0) out.ceiling_per_minute = sampling_per_minute;
  if (out.floor_per_minute == 0) out.floor_per_minute = out.ceiling_per_minute / 5;
  if (!(sampling_per_minute > 0) && ceiling_per_minute == 0) out.mode = BudgetMode::kFixed;
  return out;
}

Status BudgetOptions::Validate() const {
  auto str = [](double v) { return std::to_string(v); };
  auto bad = [](const std::string& what) { return Status::InvalidArgument(what); };
  // Negative rates are wrong in either mode; fixed mode runs at the sampling section's budget.
  if (!(floor_per_minute >= 0) || !std::isfinite(floor_per_minute))
    return bad("floor_per_minute: must be > 0 (0 or absent: a fifth of the ceiling), got " + str(floor_per_minute));
  if (!(ceiling_per_minute >= 0) || !std::isfinite(ceiling_per_minute))
    return bad("ceiling_per_minute: must be > 0 (0 or absent: sampling.budget_per_minute), got " +
               str(ceiling_per_minute));
  if (mode == BudgetMode::kFixed) return Status::Ok();
  if (!(floor_per_minute > 0) || !std::isfinite(floor_per_minute))
    return bad("floor_per_minute: must be > 0 (frames a minute that keep the held-out set and the gate fed), got " +
               str(floor_per_minute));
  if (!(ceiling_per_minute > 0) || !std::isfinite(ceiling_per_minute))
    return bad("ceiling_per_minute: must be > 0, got " + str(ceiling_per_minute));
  if (floor_per_minute > ceiling_per_minute)
    return bad("floor_per_minute: " + str(floor_per_minute) + " is above ceiling_per_minute " +
               str(ceiling_per_minute));
  if (!(agreement_target >= 0 && agreement_target <= 1))
    return bad("agreement_target: must be in [0, 1], got " + str(agreement_target));
  if (!(agreement_low >= 0 && agreement_low <= agreement_target))
    return bad("agreement_low: must be in [0, agreement_target], got " + str(agreement_low));
  if (!(agreement_fall > 0 && agreement_fall <= 1))
    return bad("agreement_fall: must be in (0, 1], got " + str(agreement_fall));
  if (!(smoothing > 0 && smoothing <= 1)) return bad("smoothing: must be in (0, 1], got " + str(smoothing));
  if (!(down_factor > 0 && down_factor < 1)) return bad("down_factor: must be in (0, 1), got " + str(down_factor));
  if (!(hold_s >= 0) || !std::isfinite(hold_s)) return bad("hold_s: must be >= 0, got " + str(hold_s));
  if (!(scene_change >= 0) || !std::isfinite(scene_change))
    return bad("scene_change: must be >= 0 (0: not watched), got " + str(scene_change));
  if (mode != BudgetMode::kAdaptive) return bad("mode: out of range");
  return Status::Ok();
}

bool SceneWatch::Observe(const cv::Mat& bgr, double time_s) {
  if (!(threshold_ > 0)) return false;
  std::vector<float> look = AppearanceEmbedding(bgr);
  if (look.empty()) return false;
  // The first frame, another size of embedding, or capture time going backwards (a looping
  // source): start over.
  if (fast_.size() != look.size() || time_s < last_s_) {
    fast_ = slow_ = look;
    last_s_ = time_s;
    seen_s_ = 0;
    return false;
  }
  const double dt = time_s - last_s_;
  last_s_ = time_s;
  seen_s_ += dt;
  const auto fast_w = static_cast<float>(1 - std::exp(-dt / kFastSeconds));
  const auto slow_w = static_cast<float>(1 - std::exp(-dt / kSlowSeconds));
  for (size_t i = 0; i < look.size(); ++i) {
    fast_[i] += fast_w * (look[i] - fast_[i]);
    slow_[i] += slow_w * (look[i] - slow_[i]);
  }
  last_distance_ = std::sqrt(SquaredDistance(fast_, slow_) / static_cast<double>(look.size()));
  if (seen_s_ < kWarmupSeconds || last_distance_ < threshold_) return false;
  // Both means start over from the new look, so one change is reported once.
  fast_ = slow_ = look;
  seen_s_ = 0;
  return true;
}

BudgetController::BudgetController(const BudgetOptions& options, double fixed_per_minute, Clock* clock)
    : options_(options),
      clock_(clock),
      bad_agreement_log_("agreement reports from the server", clock),
      budget_(options.mode == BudgetMode::kFixed ? fixed_per_minute : options.ceiling_per_minute),
      reason_(BudgetReason::kStart),
      changes_(AllBudgetReasons().size(), 0) {}

void BudgetController::Set(double per_minute, BudgetReason reason) {
  const double before = EffectiveLocked();
  budget_ = per_minute;
  reason_ = reason;
  // Counted when what is sent moves by more than rounding (a bounded budget does not move).
  if (std::abs(EffectiveLocked() - before) > 1e-6) ++changes_[static_cast<size_t>(reason)];
}

void BudgetController::OnAgreement(double agreement) {
  if (agreement == -1) return;  // the protocol's unknown: a rejected frame, a re-send
  if (!(agreement >= 0 && agreement <= 1)) {
    // NaN, infinities and anything else outside [0, 1]: a broken or hostile server must not
    // steer the budget (a huge value would pin it at the floor). Logged on change, then
    // rate-limited.
    bad_agreement_log_.Failed(Status::InvalidArgument("agreement " + std::to_string(agreement) +
                                                      " outside [0, 1] ignored"));
    return;
  }
  bad_agreement_log_.Succeeded();
  if (options_.mode == BudgetMode::kFixed) {
    std::lock_guard<std::mutex> lock(mu_);
    fast_ = fast_ < 0 ? agreement : fast_ + options_.smoothing * (agreement - fast_);
    return;
  }
  const double now = clock_->NowSeconds();
  std::lock_guard<std::mutex> lock(mu_);
  fast_ = fast_ < 0 ? agreement : fast_ + options_.smoothing * (agreement - fast_);
  // The slow mean is the level the camera has reached: a fall is measured against it.
  slow_ = slow_ < 0 ? agreement : slow_ + 0.2 * options_.smoothing * (agreement - slow_);
  ++reports_;
  const bool settled = reports_ >= 3;  // one frame's agreement alone says little
  if (settled && (fast_ < options_.agreement_low || fast_ < slow_ - options_.agreement_fall)) {
    if (budget_ < options_.ceiling_per_minute) {
      spdlog::info("sampling budget {:.1f} -> {:.1f} frames/min: the teacher's agreement with the student fell to "
                   "{:.2f} (was {:.2f})", budget_, options_.ceiling_per_minute, fast_, slow_);
      Set(options_.ceiling_per_minute, BudgetReason::kAgreementFell);
      raised_s_ = now;
    }
    slow_ = fast_;  // the new level: one fall is answered once
    return;
  }
  if (settled && fast_ >= options_.agreement_target && now - raised_s_ >= options_.hold_s &&
      budget_ > options_.floor_per_minute) {
    const double lower = options_.floor_per_minute + (budget_ - options_.floor_per_minute) * options_.down_factor;
    // Within a hundredth of a frame a minute of the floor: at the floor.
    Set(lower - options_.floor_per_minute < 0.01 ? options_.floor_per_minute : lower, BudgetReason::kAgreement);
    if (budget_ == options_.floor_per_minute)
      spdlog::info("sampling budget at its floor, {:.1f} frames/min: the teacher agrees with the student ({:.2f})",
                   budget_, fast_);
  }
}

void BudgetController::OnServerBudget(double per_minute) {
  std::lock_guard<std::mutex> lock(mu_);
  const double before = EffectiveLocked();
  server_ = per_minute > 0 && std::isfinite(per_minute) ? per_minute : 0;
  if (std::abs(EffectiveLocked() - before) > 1e-6) ++changes_[static_cast<size_t>(BudgetReason::kServer)];
}

void BudgetController::OnSceneChange() {
  if (options_.mode == BudgetMode::kFixed) return;
  const double now = clock_->NowSeconds();
  std::lock_guard<std::mutex> lock(mu_);
  raised_s_ = now;
  reports_ = 0;  // the agreement measured on the old scene says nothing of the new one
  fast_ = slow_ = -1;
  if (budget_ < options_.ceiling_per_minute) {
    spdlog::info("sampling budget {:.1f} -> {:.1f} frames/min: the scene changed", budget_,
                 options_.ceiling_per_minute);
    Set(options_.ceiling_per_minute, BudgetReason::kSceneChange);
  }
}

double BudgetController::EffectiveLocked() const {
  if (!(budget_ > 0)) return server_;  // no limit of its own (fixed at 0): the server's, if any
  return server_ > 0 ? std::min(budget_, server_) : budget_;
}

BudgetReason BudgetController::ReasonLocked() const {
  return server_ > 0 && (!(budget_ > 0) || server_ < budget_) ? BudgetReason::kServer : reason_;
}

double BudgetController::Effective() const {
  std::lock_guard<std::mutex> lock(mu_);
  return EffectiveLocked();
}

double BudgetController::Requested() const {
  std::lock_guard<std::mutex> lock(mu_);
  return budget_;
}

BudgetReason BudgetController::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ReasonLocked();
}

double BudgetController::smoothed_agreement() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fast_;
}

double BudgetController::server_budget() const {
  std::lock_guard<std::mutex> lock(mu_);
  return server_;
}

std::vector<int64_t> BudgetController::changes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return changes_;
}

}  // namespace sd
