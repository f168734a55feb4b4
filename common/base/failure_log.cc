#include "common/base/failure_log.h"

#include <spdlog/spdlog.h>

namespace sd {

FailureLog::FailureLog(std::string what, Clock* clock, double interval_s)
    : what_(std::move(what)), clock_(clock), interval_s_(interval_s) {}

void FailureLog::Failed(const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  ++failures_;
  ++run_failures_;
  const double now = clock_->NowSeconds();
  if (!failing_) {
    failing_ = true;
    unreported_ = 0;
    last_report_s_ = now;
    spdlog::error("{} failed: {}", what_, why.ToString());
    return;
  }
  ++unreported_;
  if (now - last_report_s_ >= interval_s_) {
    spdlog::error("{} still failing ({} more failures in the last {:.0f}s): {}", what_, unreported_,
                  now - last_report_s_, why.ToString());
    unreported_ = 0;
    last_report_s_ = now;
  }
}

void FailureLog::Succeeded() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failing_) return;
  spdlog::info("{} works again after {} failures", what_, run_failures_);
  failing_ = false;
  run_failures_ = 0;
  unreported_ = 0;
}

bool FailureLog::failing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failing_;
}

int64_t FailureLog::failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

}  // namespace sd
