// Logs a failure that repeats, such as every frame's write while a disk is full, without
// flooding the log: the first failure after a success at error level with its reason, then at
// most one reminder per interval while it persists (with how many failed meanwhile), and one
// line when the operation works again. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "common/base/clock.h"
#include "common/base/status.h"

namespace sd {

class FailureLog {
 public:
  // `what` names the operation in the log ("spool: storing sampled frames").
  explicit FailureLog(std::string what, Clock* clock = Clock::Real(), double interval_s = 30);

  void Failed(const Status& why);
  void Succeeded();  // logs once when it ends a run of failures

  bool failing() const;
  int64_t failures() const;  // since construction

 private:
  const std::string what_;
  Clock* const clock_;
  const double interval_s_;
  mutable std::mutex mu_;  // guards everything below
  bool failing_ = false;
  int64_t failures_ = 0;
  int64_t run_failures_ = 0;        // in the current run of failures
  int64_t unreported_ = 0;          // since the last line
  double last_report_s_ = 0;
};

}  // namespace sd
