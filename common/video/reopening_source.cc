#include "common/video/reopening_source.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

namespace sd {

Status ReopenOptions::Validate() const {
  if (!(backoff_initial_s > 0) || !(backoff_max_s >= backoff_initial_s) || !std::isfinite(backoff_max_s))
    return Status::InvalidArgument("backoff_max_s: need 0 < backoff_initial_s <= backoff_max_s");
  return Status::Ok();
}

ReopeningSource::ReopeningSource(std::unique_ptr<FrameSource> first, Opener open, const ReopenOptions& options,
                                 Clock* clock)
    : current_(std::move(first)),
      open_(std::move(open)),
      options_(options),
      clock_(clock),
      reopen_log_("reopening the frame source", clock),
      jitter_(std::random_device{}()) {
  last_fps_ = current_->fps();
  last_description_ = current_->description();
}

ReopeningSource::~ReopeningSource() = default;

StatusOr<bool> ReopeningSource::Next(Frame* frame) {
  while (!interrupted_) {
    if (!current_ && !Reopen()) return false;
    StatusOr<bool> got = current_->Next(frame);
    if (got.ok()) {
      if (!*got) return false;  // a finite source ended: nothing to reopen
      frame->index += index_offset_;
      next_index_ = frame->index + 1;
      if (reopened_) Recovered();
      return true;
    }
    if (got.status().code() != Status::Code::kUnavailable) return got.status();
    skipped_before_ += current_->skipped_count();
    current_.reset();
    if (reopened_) {
      // Opened but failed before its first frame (a camera still booting, a stream that
      // cannot be decoded): the same outage goes on, and the back-off with it.
      reopen_log_.Failed(got.status());
      reopened_ = false;
      continue;
    }
    // A live source dropped: count the outage from here, carry on where it left off.
    spdlog::warn("frame source lost: {}; reopening with back-off (detection and sampling pause, the uplink goes on)",
                 got.status().ToString());
    attempt_ = 0;
    std::lock_guard<std::mutex> lock(mu_);
    health_.up = false;
    ++health_.drops;
    outage_start_s_ = clock_->NowSeconds();
  }
  return false;
}

bool ReopeningSource::Reopen() {
  for (; !interrupted_; ++attempt_) {
    const double ceiling =
        std::min(options_.backoff_max_s, options_.backoff_initial_s * std::pow(2.0, std::min(attempt_, 30)));
    const double delay = ceiling * std::uniform_real_distribution<double>(0.5, 1.0)(jitter_);
    WaitUntil(clock_->NowSeconds() + delay);
    if (interrupted_) break;
    StatusOr<std::unique_ptr<FrameSource>> opened = open_();
    if (!opened.ok()) {
      reopen_log_.Failed(opened.status());
      std::lock_guard<std::mutex> lock(mu_);
      ++health_.failed_opens;
      continue;
    }
    current_ = std::move(opened).value();
    ++attempt_;
    reopened_ = true;  // back once it delivers a frame
    // Its first frame comes right after the last one delivered, whatever index it starts at.
    index_offset_ = next_index_;
    last_fps_ = current_->fps();
    last_description_ = current_->description();
    return true;
  }
  return false;
}

void ReopeningSource::Recovered() {
  reopened_ = false;
  reopen_log_.Succeeded();
  double outage = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    outage = clock_->NowSeconds() - outage_start_s_;
    health_.outage_s += outage;
    health_.up = true;
    ++health_.reconnects;
  }
  spdlog::info("frame source back after {:.1f} s ({} attempts): {}", outage, attempt_, last_description_);
  attempt_ = 0;
}

void ReopeningSource::WaitUntil(double deadline) {
  constexpr double kStep = 0.1;  // how long Interrupt() may go unseen
  for (double now = clock_->NowSeconds(); now < deadline && !interrupted_; now = clock_->NowSeconds())
    clock_->SleepUntil(std::min(deadline, now + kStep));
}

double ReopeningSource::fps() const { return current_ ? current_->fps() : last_fps_; }

int64_t ReopeningSource::frame_count() const { return current_ ? current_->frame_count() : -1; }

std::string ReopeningSource::description() const {
  return current_ ? current_->description() : last_description_ + " (reopening)";
}

int64_t ReopeningSource::skipped_count() const {
  return skipped_before_ + (current_ ? current_->skipped_count() : 0);
}

SourceHealth ReopeningSource::health() const {
  std::lock_guard<std::mutex> lock(mu_);
  SourceHealth h = health_;
  if (!h.up) h.outage_s += clock_->NowSeconds() - outage_start_s_;
  return h;
}

}  // namespace sd
