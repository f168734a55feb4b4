// The edge's link to the server: one long-lived gRPC stream that sends spooled frames in
// order, removes them from the spool when the server acks them, re-sends unacked frames
// after a reconnect (the server dedupes), reconnects with jittered exponential back-off, and
// assembles model updates for the UpdateSink.
//
// Acks: code 0 (stored, or a duplicate) and any final rejection (e.g. 3, an undecodable
// frame) remove the frame from the spool. UNAVAILABLE (14: the server cannot store it now,
// e.g. its disk is full) and RESOURCE_EXHAUSTED (8) keep it: it is sent again after a
// jittered exponential back-off (backoff_initial_s .. backoff_max_s) during which no frame
// goes out, and the back-off starts over once a frame is stored.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/base/failure_log.h"
#include "common/link/model_update.h"
#include "common/base/status.h"
#include "edge/edge_config.h"
#include "edge/spool.h"

namespace sd {

// Implemented by the edge agent: applies an update (or refuses it, keeping its model).
class UpdateSink {
 public:
  virtual ~UpdateSink() = default;
  virtual Status ApplyUpdate(const ModelUpdate& update) = 0;
  virtual uint64_t ServingVersion() const = 0;
  virtual std::string ServingChecksum() const = 0;
};

struct UplinkStats {
  // gRPC messages incl. their 5-byte framing (HTTP/2 and TLS framing, a few % more, are not
  // visible to the application), in total and by kind.
  int64_t bytes_up = 0, bytes_down = 0;
  int64_t bytes_up_frames = 0, bytes_up_control = 0;        // frames; hello, model requests, results
  int64_t bytes_down_updates = 0, bytes_down_control = 0;   // model chunks; welcome, acks
  int64_t frames_sent = 0, frames_acked = 0, frames_rejected = 0;
  int64_t frames_retried = 0;  // retryable acks (14, 8): kept in the spool, sent again later
  int64_t updates_applied = 0, updates_refused = 0;
  int64_t connects = 0;
  bool connected = false;
  std::string last_error;
};

class Uplink {
 public:
  Uplink(UplinkOptions options, std::string architecture, Spool* spool, UpdateSink* sink);
  ~Uplink();  // Stop()
  void Start();
  void Stop();               // cancels the stream and joins; idempotent
  void NotifyFrameQueued();  // wakes the sender
  // What an ack says, as the edge uses it.
  struct Ack {
    uint64_t sequence = 0;
    int code = 0;  // google.rpc code
    // The teacher's agreement with this edge's previous stored frame, and the student's
    // detections' agreement with the teacher's labels of this one; -1: unknown (a rejected
    // frame, a re-send the server had stored already).
    double teacher_agreement = -1;
    double student_agreement = -1;
    double budget_per_minute = 0;  // the server's budget for this edge; 0: none
  };
  // Called on the reader thread for every ack. Set before Start().
  using AckObserver = std::function<void(const Ack& ack)>;
  void SetAckObserver(AckObserver observer) { ack_observer_ = std::move(observer); }
  UplinkStats stats() const;
  // True once every spooled frame is acked (or rejected).
  bool Drained() const;

 private:
  class Connection;
  void Run();
  double NextBackoff(int attempt);

  const UplinkOptions options_;
  const std::string architecture_;
  Spool* spool_;
  UpdateSink* sink_;
  AckObserver ack_observer_;
  FailureLog retry_log_;  // retryable acks, logged on change and then rate-limited
  std::atomic<bool> stopping_{false};
  std::thread thread_;

  mutable std::mutex mu_;  // guards stats_, connection_
  UplinkStats stats_;
  std::shared_ptr<Connection> connection_;
  std::condition_variable wake_cv_;
};

}  // namespace sd
