// The budgets every sampler's wishes pass through (edge/sampler.h): a token bucket over capture
// time with an optional total count, and the coverage floor. Internal to the samplers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/base/token_bucket.h"
#include "edge/sampler.h"

namespace sd {

// What may be sent: budget_per_minute tokens a minute of capture time, at most
// max(1, budget_per_minute / 6) saved up (the bucket starts full, so the first frames after
// start-up can go), and at most budget_total frames in all.
class Budget {
 public:
  explicit Budget(const SamplerOptions& options)
      : total_(options.budget_total),
        bucket_(options.budget_per_minute / 60.0, std::max(1.0, options.budget_per_minute / 6.0)) {}

  // Capture time of the frame being offered: refills the bucket, and TryTake takes at it.
  void Advance(double time_s) {
    now_s_ = time_s;
    bucket_.Advance(time_s);
  }
  // A new frames-per-minute budget from now on (BudgetController); tokens saved are kept up to
  // the new burst.
  void SetRate(double budget_per_minute) {
    bucket_.SetRate(budget_per_minute / 60.0, std::max(1.0, budget_per_minute / 6.0));
  }
  bool Exhausted() const { return total_ > 0 && taken_ >= total_; }
  int64_t Remaining() const { return total_ > 0 ? total_ - taken_ : std::numeric_limits<int64_t>::max(); }
  bool TryTake() {
    if (Exhausted() || !bucket_.TryTake(now_s_)) return false;
    ++taken_;
    return true;
  }
  int64_t taken() const { return taken_; }

 private:
  int64_t total_;
  int64_t taken_ = 0;
  TokenBucket bucket_;  // a rate of 0 (budget_per_minute 0): no limit
  double now_s_ = 0;
};

// The coverage floor (SamplerOptions::coverage_share): due when nothing was sent for gap_s of
// capture time since the later of the last frame sent and the first frame seen.
class CoverageFloor {
 public:
  explicit CoverageFloor(double gap_s) : gap_s_(gap_s) {}

  bool Due(double time_s) {
    if (!std::isfinite(gap_s_)) return false;
    // No reference yet, or capture time going backwards (a looping source): start counting.
    if (!has_reference_ || time_s < reference_s_) {
      Sent(time_s);
      return false;
    }
    return time_s - reference_s_ >= gap_s_ - 1e-9;
  }
  void Sent(double time_s) {
    reference_s_ = time_s;
    has_reference_ = true;
  }

 private:
  double gap_s_;
  double reference_s_ = 0;
  bool has_reference_ = false;
};

}  // namespace sd
