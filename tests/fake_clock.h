// A Clock (common/base/clock.h) that only moves when told to, for tests that pace frame
// sources without sleeping.
#pragma once

#include "common/base/clock.h"

namespace sd {

// A clock that only moves when told to; SleepUntil jumps ahead instead of waiting.
class FakeClock : public Clock {
 public:
  explicit FakeClock(double now = 0) : now_(now) {}
  double NowSeconds() override { return now_; }
  void SleepUntil(double t) override {
    if (t <= now_) return;
    now_ = t;
    ++sleeps_;
  }
  void Advance(double seconds) { now_ += seconds; }
  int sleeps() const { return sleeps_; }  // calls to SleepUntil that moved the clock

 private:
  double now_;
  int sleeps_ = 0;
};

}  // namespace sd
