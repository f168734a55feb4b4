// The process's one reading of time. Code that a test steps by hand takes a Clock
// (common/video/frame_source.h) or an Env (common/base/env.h) instead; their real versions
// read these.
#pragma once

#include <cstdint>

namespace sd {

// Seconds on the steady (monotonic) clock, from an arbitrary origin: for intervals, rates and
// deadlines; never goes back.
double SteadySeconds();

// Milliseconds since the Unix epoch on the wall clock: for times stored or shown to people.
int64_t WallMillis();

// Time for code that waits or paces (frame sources, back-offs, rate-limited logs), so that tests
// can replace it (tests/fake_clock.h) and pace without sleeping.
class Clock {
 public:
  virtual ~Clock();
  virtual double NowSeconds() = 0;  // monotonic
  virtual void SleepUntil(double t) = 0;
  static Clock* Real();  // SteadySeconds(); never deleted
};

}  // namespace sd
