#include "server/edge_link_service.h"

#include <deque>
#include <mutex>
#include <optional>

#include <spdlog/spdlog.h>

#include "common/link/grpc_status.h"
#include "server/edge_session.h"

namespace sd {
namespace {

using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;

class EdgeStream;

// What a stream writes, in order, one write in flight. It outlives its reactor: labelling
// callbacks and the core hold it, and it forwards to the reactor only while that is alive.
class Outbox : public SessionOutput {
 public:
  Outbox(EdgeStream* stream, int chunk_bytes) : stream_(stream), chunk_bytes_(chunk_bytes) {}

  void Send(ServerMessage message) override;
  void SendUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) override;
  void Close(const Status& status) override;
  void SetByteCounter(std::function<void(int64_t)> counter) override;
  bool WaitForBacklogBelow(size_t limit, std::function<void()> fn) override;

  void WriteDone(bool ok);  // a write completed; starts the next one
  void Detach();            // the reactor is gone

 private:
  // Deltas queued behind each other beyond this are replaced by one full model.
  static constexpr size_t kMaxQueuedUpdates = 4;

  void MaybeWriteLocked();
  bool NextMessageLocked(ServerMessage* out);

  std::mutex mu_;  // guards everything below; a leaf lock (nothing else is taken under it but the reactor's own)
  EdgeStream* stream_;
  const int chunk_bytes_;
  std::function<void(int64_t)> count_bytes_;
  bool writing_ = false;
  bool broken_ = false;
  std::optional<grpc::Status> finish_;
  bool finished_ = false;
  std::deque<ServerMessage> messages_;
  std::function<void()> drained_;  // waits for messages_ to shrink to drain_level_
  size_t drain_level_ = 0;
  std::shared_ptr<const ModelUpdate> sending_;  // the update being chunked out
  uint32_t next_chunk_ = 0;
  // Updates not yet started, in version order: a full model replaces everything before it;
  // deltas queue behind each other, since each applies only to its predecessor.
  std::deque<std::shared_ptr<const ModelUpdate>> pending_updates_;
  ServerMessage current_;
};

class EdgeStream : public grpc::ServerBidiReactor<EdgeMessage, ServerMessage> {
 public:
  EdgeStream(ServerCore* core, grpc::CallbackServerContext* context)
      : outbox_(std::make_shared<Outbox>(this, core->config().update_chunk_bytes)),
        session_(EdgeSession::Create(core, outbox_, context->peer(), [this] { ReadNext(); })) {
    ReadNext();
  }

  void WriteMessage(const ServerMessage* message) { StartWrite(message); }
  void FinishStream(const grpc::Status& status) { Finish(status); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      session_->OnEndOfStream(/*malformed=*/!in_.has_update_result() || in_.update_result().message() != kReadMarker);
      return;
    }
    if (session_->OnMessage(in_) == EdgeSession::Next::kRead) ReadNext();
  }

  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }

  // A stream paused for flow control has no operation that could fail: without this it
  // would never finish, and a server shutdown would wait for it forever.
  void OnCancel() override { session_->OnCancelled(); }

  void OnDone() override {
    session_->Detach();  // after this no resume can reach us
    outbox_->Detach();
    delete this;
  }

 private:
  // gRPC reports a half-close and a message that does not parse the same way (ok = false).
  // Protobuf clears a message before parsing into it, so this marker survives only a
  // half-close (or a cancelled stream, which sees no status anyway).
  static constexpr char kReadMarker[] = "\x01streamdistill-read-marker";

  void ReadNext() {
    in_.Clear();
    in_.mutable_update_result()->set_message(kReadMarker);
    StartRead(&in_);
  }

  std::shared_ptr<Outbox> outbox_;
  std::shared_ptr<EdgeSession> session_;
  EdgeMessage in_;
};

void Outbox::Send(ServerMessage message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_ || broken_) return;
  messages_.push_back(std::move(message));
  MaybeWriteLocked();
}

void Outbox::SendUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_ || broken_) return;
  // An admin's pin is never stale, however old: it replaces whatever waits (it is a full
  // model), after the one on its way.
  if (update->pinned) {
    pending_updates_.assign(1, std::move(update));
    MaybeWriteLocked();
    return;
  }
  // One already being sent is finished first, so the edge never sees two updates interleaved.
  if (!pending_updates_.empty() && pending_updates_.back()->new_version >= update->new_version) return;  // stale
  if (sending_ && sending_->new_version >= update->new_version && sending_->base_version == 0) return;  // on its way
  if (update->base_version == 0) pending_updates_.clear();  // a full model makes older ones moot
  pending_updates_.push_back(std::move(update));
  // A client that does not read lets deltas pile up: one full model of the newest replaces them.
  if (pending_updates_.size() > kMaxQueuedUpdates && full) pending_updates_.assign(1, std::move(full));
  MaybeWriteLocked();
}

void Outbox::Close(const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!finish_) finish_ = ToGrpcStatus(status);
  MaybeWriteLocked();
}

void Outbox::SetByteCounter(std::function<void(int64_t)> counter) {
  std::lock_guard<std::mutex> lock(mu_);
  count_bytes_ = std::move(counter);
}

bool Outbox::WaitForBacklogBelow(size_t limit, std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (messages_.size() <= limit || finished_ || broken_) return false;
  drain_level_ = limit / 2;
  drained_ = std::move(fn);
  return true;
}

void Outbox::WriteDone(bool ok) {
  std::function<void()> drained;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) broken_ = true;
    if (drained_ && (messages_.size() <= drain_level_ || broken_)) drained.swap(drained_);
    MaybeWriteLocked();
  }
  if (drained) drained();  // resumes reading; outside the lock, it may send right away
}

void Outbox::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  stream_ = nullptr;
  drained_ = nullptr;
}

bool Outbox::NextMessageLocked(ServerMessage* out) {
  if (!messages_.empty()) {  // acks first: they free the edge's spool
    *out = std::move(messages_.front());
    messages_.pop_front();
    return true;
  }
  if (!sending_ && !pending_updates_.empty()) {
    sending_ = std::move(pending_updates_.front());
    pending_updates_.pop_front();
    next_chunk_ = 0;
  }
  if (!sending_) return false;
  const uint32_t count = UpdateChunkCount(*sending_, chunk_bytes_);
  *out->mutable_update() = MakeUpdateChunk(*sending_, next_chunk_, chunk_bytes_);
  if (++next_chunk_ >= count) sending_.reset();
  return true;
}

void Outbox::MaybeWriteLocked() {
  if (!stream_ || writing_ || finished_) return;
  // Finishing drains what is queued unless the stream broke, then finishes exactly once.
  if (!broken_ && NextMessageLocked(&current_)) {
    writing_ = true;
    if (count_bytes_) count_bytes_(static_cast<int64_t>(current_.ByteSizeLong()));
    stream_->WriteMessage(&current_);
    return;
  }
  if (!broken_ && !finish_) return;  // idle, waiting for more to send
  finished_ = true;
  messages_.clear();
  pending_updates_.clear();
  sending_.reset();
  stream_->FinishStream(finish_ ? *finish_ : grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broken"));
}

}  // namespace

grpc::ServerBidiReactor<EdgeMessage, ServerMessage>* EdgeLinkService::Connect(grpc::CallbackServerContext* context) {
  return new EdgeStream(core_, context);
}

}  // namespace sd
