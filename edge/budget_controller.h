// How many frames a minute the edge may send, apart from which frames its sampling strategy
// chooses (issue 26). Every strategy runs under this one number (Sampler::SetBudgetPerMinute):
// the teacher's time goes where the student still has something to learn.
//
// adaptive (the default) moves the budget between floor_per_minute and ceiling_per_minute:
//  - down while the teacher agrees with the student: the server scores the student's detections
//    that travel with each frame against the teacher's labels (LabelAgreement, mAP50 both ways)
//    and returns the agreement in the frame's ack. While the smoothed agreement is at or above
//    agreement_target the budget falls by down_factor per report (never below the floor);
//  - back to the ceiling at once when the smoothed agreement falls (below agreement_low, or
//    agreement_fall below its slow mean), or when the edge sees its scene change (SceneWatch);
//    for hold_s after a raise the budget does not fall again;
//  - the floor is never left, so every camera keeps feeding the server's held-out set and gate.
// fixed: budget_per_minute of the sampling section, whatever the agreement (the release before).
// In both modes the server's budget (the ack's budget_per_minute: its labelling capacity shared
// among cameras) bounds what is sent; the rate the edge asks for travels with each frame.
//
// Thread-safe: the uplink's reader reports acks, the capture thread reads the budget and
// reports scene changes.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/clock.h"
#include "common/base/failure_log.h"
#include "common/base/status.h"

namespace sd {

enum class BudgetMode { kAdaptive, kFixed };
// "adaptive" | "fixed".
StatusOr<BudgetMode> ParseBudgetMode(const std::string& name);
const char* BudgetModeName(BudgetMode mode);

// Why the budget is what it is; each is a word in logs, metrics and the frames' budget_reason.
enum class BudgetReason {
  kStart,          // the ceiling at start (adaptive) or the fixed budget
  kAgreement,      // lowered: the teacher agrees with the student
  kAgreementFell,  // raised: the agreement fell
  kSceneChange,    // raised: the scene changed
  kServer,         // bounded by the server's budget
};
const char* BudgetReasonName(BudgetReason reason);
const std::vector<BudgetReason>& AllBudgetReasons();

struct BudgetOptions {
  BudgetMode mode = BudgetMode::kAdaptive;
  double floor_per_minute = 0;    // 0: a fifth of the ceiling
  double ceiling_per_minute = 0;  // 0: the sampling section's budget_per_minute
  double agreement_target = 0.6;  // smoothed agreement at or above: the budget goes down (AMS's 0.6)
  double agreement_low = 0.3;     // smoothed agreement below: back to the ceiling
  double agreement_fall = 0.25;   // smoothed agreement this far below its slow mean: back to the ceiling
  double smoothing = 0.3;         // weight of the newest report in the smoothed agreement
  double down_factor = 0.9;       // per agreeing report: budget <- floor + (budget - floor) x this
  double hold_s = 30;             // after a raise, no fall for this long
  // SceneWatch: the RMS difference of appearance (common/vision/appearance.h) between the last
  // few seconds and the last minute above which the scene changed; 0: not watched.
  double scene_change = 0.06;
  // The options with the derived values filled in from the sampling section's budget (which
  // fixed mode keeps); a sampler without a rate limit (budget_per_minute 0) has nothing to
  // adapt, so the mode is fixed then.
  BudgetOptions Resolved(double sampling_per_minute) const;
  // Of resolved options. Each field named first in its message (YamlReader::Check maps it to
  // `budget.<field>`).
  Status Validate() const;
};

// The appearance of the camera's frames, fast (about 2 s) against slow (about 60 s) means of
// their 16x12 thumbnails and colour statistics: a change of light, weather or framing moves
// the fast mean away from the slow one. People walking through a fixed view barely do.
class SceneWatch {
 public:
  explicit SceneWatch(double threshold) : threshold_(threshold) {}
  // One frame at capture time `time_s`; true when the scene has just changed (both means
  // then restart from this frame, so one change is reported once).
  bool Observe(const cv::Mat& bgr, double time_s);
  double last_distance() const { return last_distance_; }

 private:
  double threshold_;
  std::vector<float> fast_, slow_;
  double last_s_ = 0;
  double seen_s_ = 0;  // capture time observed since the slow mean (re)started
  double last_distance_ = 0;
};

class BudgetController {
 public:
  // `options` resolved and valid; `fixed_per_minute` the sampling section's budget_per_minute
  // (fixed mode).
  BudgetController(const BudgetOptions& options, double fixed_per_minute, Clock* clock = Clock::Real());

  // The student-teacher agreement of one stored frame (the ack's student_agreement); a value
  // outside [0, 1] (a hostile or broken peer) is ignored and logged, rate-limited; -1 is the
  // protocol's unknown and is ignored silently.
  void OnAgreement(double agreement);
  // The server's budget for this edge (the ack's budget_per_minute); <= 0 or not finite: none.
  void OnServerBudget(double per_minute);
  // The edge saw its scene change (SceneWatch).
  void OnSceneChange();

  // What the sampler runs under: the edge's own budget bounded by the server's.
  double Effective() const;
  // The edge's own budget (before the server's bound): what it asks the server for.
  double Requested() const;
  BudgetReason reason() const;       // why Effective() is what it is
  double smoothed_agreement() const;  // -1 before any report
  double server_budget() const;       // 0: none told
  // Times the budget moved, by reason (indexed by BudgetReason).
  std::vector<int64_t> changes() const;

 private:
  // With mu_ held: the edge's own budget becomes `per_minute` for `reason`.
  void Set(double per_minute, BudgetReason reason);
  double EffectiveLocked() const;
  BudgetReason ReasonLocked() const;

  const BudgetOptions options_;
  Clock* const clock_;
  FailureLog bad_agreement_log_;
  mutable std::mutex mu_;  // guards everything below
  double budget_;         // the edge's own, in [floor, ceiling] (adaptive)
  BudgetReason reason_;   // why budget_ is what it is
  double server_ = 0;
  double fast_ = -1, slow_ = -1;  // smoothed agreement, and its slow mean
  int reports_ = 0;               // since the last raise
  double raised_s_ = -1e300;      // clock time of the last raise
  std::vector<int64_t> changes_;
};

}  // namespace sd
