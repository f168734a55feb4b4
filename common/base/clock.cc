#include "common/base/clock.h"

#include <chrono>
#include <thread>

namespace sd {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Clock::~Clock() = default;

namespace {

class RealClock : public Clock {
 public:
  double NowSeconds() override { return SteadySeconds(); }
  void SleepUntil(double t) override {
    const double wait = t - NowSeconds();
    if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
  }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* const clock = new RealClock();
  return clock;
}

}  // namespace sd
