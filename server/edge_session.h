// One edge's stream as the protocol sees it, without gRPC: the reactor in
// edge_link_service.cc feeds it every EdgeMessage it reads, and so does the fuzzer
// (fuzz/edge_session_fuzz.cc), so both exercise the same code. It authenticates the hello,
// validates frames before anything costly happens to them, hands them to the labellers with
// flow control, and answers through a SessionOutput.
//
// Flow control: OnMessage says whether the transport may read the next message at once. When
// it may not (the labelling queue is full, or too many messages wait to be written to this
// client), the session calls `resume` later, from another thread, exactly once per pause;
// until then the transport reads nothing, so gRPC's window pushes back on the edge.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "streamdistill.pb.h"

#include "common/base/status.h"
#include "server/server_core.h"

namespace sd {

// Where a session's answers go: the reactor's outbox, or a recorder in tests and fuzzers.
class SessionOutput {
 public:
  virtual ~SessionOutput() = default;
  virtual void Send(streamdistill::v1::ServerMessage message) = 0;  // welcome, acks
  virtual void SendUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) = 0;
  // Ends the stream with `status` once what is queued has been written.
  virtual void Close(const Status& status) = 0;
  // Counts the bytes this output writes from now on against the device.
  virtual void SetByteCounter(std::function<void(int64_t bytes)> counter) = 0;
  // When more than `limit` messages wait to be written: keeps `fn`, calls it once (on a
  // writer thread) when the backlog has drained to half of that, and returns true. Else
  // false, and `fn` is dropped.
  virtual bool WaitForBacklogBelow(size_t limit, std::function<void()> fn) = 0;
};

class EdgeSession : public DeviceSession, public std::enable_shared_from_this<EdgeSession> {
 public:
  enum class Next { kRead, kPaused, kClosed };

  // `peer` is for log lines; `resume` restarts reading after a kPaused.
  static std::shared_ptr<EdgeSession> Create(ServerCore* core, std::shared_ptr<SessionOutput> output,
                                             std::string peer, std::function<void()> resume);

  // One message from the edge. Never called again after kPaused until `resume` ran, nor
  // after kClosed. A stream that was ended (closed, replaced, revoked) reads no further.
  Next OnMessage(const streamdistill::v1::EdgeMessage& message);
  // The edge closed its side (`malformed` false) or sent bytes that are not an EdgeMessage.
  void OnEndOfStream(bool malformed);
  // The client or the server's shutdown cancelled the stream: end it even while paused.
  void OnCancelled();
  // The transport is gone: `resume` is never called again (waits for a running call), and
  // the device is free for its next stream.
  void Detach();

  const std::string& device_id() const { return device_id_; }  // empty until the hello passed

  // DeviceSession
  void OnUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) override;
  void End(const Status& why) override;

 private:
  EdgeSession(ServerCore* core, std::shared_ptr<SessionOutput> output, std::string peer, std::function<void()> resume);
  Next HandleHello(const streamdistill::v1::EdgeMessage& message);
  Next HandleFrame(const streamdistill::v1::SampledFrame& frame);
  void HandleModelRequest(const streamdistill::v1::ModelRequest& request);
  // Everything that can be checked before labelling: sequence range, numbers, image header.
  Status ValidateFrame(const streamdistill::v1::SampledFrame& frame) const;
  void Reject(uint64_t sequence, const Status& status);
  // Submits the held frame; kPaused when the labelling queue is full (RetryHeldFrame then
  // runs when there is room).
  Next SubmitHeldFrame();
  void RetryHeldFrame();
  // kRead, or kPaused when the output's backlog is over the limit.
  Next ReadIfOutputDrained();
  void Resume();
  void Close(const Status& status);

  ServerCore* const core_;
  const std::shared_ptr<SessionOutput> output_;
  const std::string peer_;
  std::string device_id_;
  // The frame waiting for room in the labelling queue. Only the thread that handles the
  // current message (or the one retrying it while reading is paused) touches these.
  FrameRecord held_meta_;
  FrameBudgetAsk held_budget_;  // what the held frame says of its edge's budget
  double held_received_s_ = 0;  // steady seconds when the held frame was read (its ack's latency)
  std::shared_ptr<const std::string> held_jpeg_;  // shared with the labeller and the store: copied once, here
  uint64_t frames_refused_ = 0, full_model_refusals_ = 0;  // for log lines (same thread)
  // The device's last stored sequence when the stream began, raised by every frame this stream
  // accepts since: the sequence gap is measured from it, so no frame costs a store query.
  uint64_t highest_sequence_ = 0;

  std::mutex mu_;  // guards the two below; held while calling resume_, so Detach waits for it
  std::function<void()> resume_;
  bool ended_ = false;  // closed, replaced or detached: never resume again
};

}  // namespace sd
