// A frame source that outlives its camera: when a live source (an RTSP stream, a camera)
// fails with Unavailable, it is reopened with exponential back-off and jitter until it comes
// back, and the frames go on as if nothing happened (indices keep rising, a new resolution or
// frame rate is simply what the next frames have). The outage is counted for /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "common/base/clock.h"
#include "common/base/failure_log.h"
#include "common/base/status.h"
#include "common/video/frame_source.h"

namespace sd {

struct ReopenOptions {
  // The wait before the n-th attempt in a row is min(backoff_max_s, backoff_initial_s x 2^n),
  // times a random factor in [0.5, 1): cameras that dropped together do not all knock at once.
  double backoff_initial_s = 0.5;
  double backoff_max_s = 10;
  Status Validate() const;  // the message starts with the field's name
};

// What the edge reports about its source (streamdistill_edge_source_* in /metrics).
struct SourceHealth {
  bool up = true;
  int64_t drops = 0;          // times the source failed and had to be reopened
  int64_t reconnects = 0;     // reopens that delivered frames again
  int64_t failed_opens = 0;   // reopen attempts that could not open the source
  double outage_s = 0;        // time without a source, the current outage included
};

class ReopeningSource : public FrameSource {
 public:
  using Opener = std::function<StatusOr<std::unique_ptr<FrameSource>>()>;
  // `first` is the source already open (start-up failures stay start-up errors); `open` opens
  // a fresh one. The clock paces the back-off and measures outages; it must outlive this.
  ReopeningSource(std::unique_ptr<FrameSource> first, Opener open, const ReopenOptions& options,
                  Clock* clock = Clock::Real());
  ~ReopeningSource() override;

  // Frames of the current source; an Unavailable error starts an outage that Next() waits out
  // (reopening) before it returns. Ok(false) at the end of a finite source, or once Interrupt()
  // was called. Other errors pass through.
  StatusOr<bool> Next(Frame* frame) override;
  double fps() const override;
  int64_t frame_count() const override;
  std::string description() const override;
  int64_t skipped_count() const override;

  // Ends a back-off wait (from any thread): Next() returns Ok(false) from then on.
  void Interrupt() { interrupted_ = true; }
  SourceHealth health() const;  // thread-safe

 private:
  // Opens a new source, waiting between attempts; false when interrupted first.
  bool Reopen();
  // The reopened source delivered its first frame: the outage is over.
  void Recovered();
  // Waits until `deadline` on the clock, in short steps so that Interrupt() is seen promptly.
  void WaitUntil(double deadline);

  std::unique_ptr<FrameSource> current_;  // null during an outage
  const Opener open_;
  const ReopenOptions options_;
  Clock* const clock_;
  FailureLog reopen_log_;  // failed reopens, rate-limited
  std::mt19937 jitter_;
  std::atomic<bool> interrupted_{false};
  int attempt_ = 0;            // reopen attempts in this outage (the back-off's exponent)
  bool reopened_ = false;      // current_ was reopened and has not delivered a frame yet
  int64_t index_offset_ = 0;   // added to the current source's indices
  int64_t next_index_ = 0;     // one past the last index delivered
  // Of the last source that was open, for fps() and description() during an outage.
  double last_fps_ = 0;
  std::string last_description_;
  int64_t skipped_before_ = 0;  // skipped_count() of sources already closed

  mutable std::mutex mu_;  // guards health_ and outage_start_s_
  SourceHealth health_;
  double outage_start_s_ = 0;
};

}  // namespace sd
