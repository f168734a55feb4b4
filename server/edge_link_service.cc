#include "server/edge_link_service.h"

#include <deque>
#include <mutex>

#include <spdlog/spdlog.h>

#include "common/grpc_status.h"

namespace sd {
namespace {

using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;

constexpr int64_t kFramingBytes = 5;  // gRPC's length prefix per message

class EdgeStream;

// The part of a stream that outlives its reactor: labelling callbacks and update listeners
// hold it, and it forwards to the reactor only while the reactor is alive.
class Outbox : public UpdateListener {
 public:
  explicit Outbox(EdgeStream* stream, int chunk_bytes) : stream_(stream), chunk_bytes_(chunk_bytes) {}
  void Push(ServerMessage message);
  void OnUpdate(std::shared_ptr<const EncodedUpdate> update) override;
  // Called by the reactor when a write completed; starts the next one.
  void WriteDone(bool ok);
  // Finish once everything queued has been written (or at once when a write failed).
  void RequestFinish(grpc::Status status);
  void Detach();  // the reactor is gone

 private:
  void MaybeWriteLocked();
  bool NextMessageLocked(ServerMessage* out);

  std::mutex mu_;  // guards everything below
  EdgeStream* stream_;
  const int chunk_bytes_;
  bool writing_ = false;
  bool broken_ = false;
  std::optional<grpc::Status> finish_;
  bool finished_ = false;
  std::deque<ServerMessage> messages_;
  std::shared_ptr<const EncodedUpdate> sending_;  // the update being chunked out
  uint32_t next_chunk_ = 0;
  // Updates not yet started, in version order: a full model replaces everything before it;
  // deltas queue behind each other, since each applies only to its predecessor.
  std::deque<std::shared_ptr<const EncodedUpdate>> pending_updates_;
  ServerMessage current_;
};

class EdgeStream : public grpc::ServerBidiReactor<EdgeMessage, ServerMessage> {
 public:
  EdgeStream(ServerCore* core, grpc::CallbackServerContext* context)
      : core_(core), context_(context),
        outbox_(std::make_shared<Outbox>(this, core->config().update_chunk_bytes)) {
    StartRead(&in_);
  }

  void Write(const ServerMessage* message) {
    if (!device_id_.empty()) core_->CountBytes(device_id_, 0, message->ByteSizeLong() + kFramingBytes);
    StartWrite(message);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the edge closed its side or the stream broke
      outbox_->RequestFinish(grpc::Status::OK);
      return;
    }
    if (!device_id_.empty()) core_->CountBytes(device_id_, in_.ByteSizeLong() + kFramingBytes, 0);
    if (device_id_.empty()) {
      HandleHello();
      return;
    }
    switch (in_.kind_case()) {
      case EdgeMessage::kFrame: HandleFrame(); return;
      // Only a newer version helps: re-sending one the edge refused as not newer (its state
      // outlived a wiped server) would loop.
      case EdgeMessage::kModelRequest: SendLatest(/*only_if_newer=*/true, in_.model_request().have_version()); break;
      case EdgeMessage::kUpdateResult:
        if (in_.update_result().applied())
          spdlog::info("device {}: serving version {}", device_id_, in_.update_result().version());
        else
          spdlog::warn("device {}: could not apply version {}: {}", device_id_, in_.update_result().version(),
                       in_.update_result().message());
        break;
      case EdgeMessage::kHello:
        outbox_->RequestFinish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "hello sent twice"));
        return;
      default: break;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }

  void OnDone() override {
    outbox_->Detach();
    if (!device_id_.empty()) {
      core_->Unsubscribe(device_id_, outbox_.get());
      spdlog::info("device {}: stream closed", device_id_);
    }
    delete this;
  }

 private:
  void HandleHello() {
    if (in_.kind_case() != EdgeMessage::kHello) {
      outbox_->RequestFinish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the first message must be a hello"));
      return;
    }
    const auto& hello = in_.hello();
    Status auth = core_->Authenticate(hello.device_id(), hello.token(), hello.architecture());
    if (!auth.ok()) {
      spdlog::warn("rejected stream from {}: {}", context_->peer(), auth.ToString());
      outbox_->RequestFinish(ToGrpcStatus(auth));
      return;
    }
    device_id_ = hello.device_id();
    core_->CountBytes(device_id_, in_.ByteSizeLong() + kFramingBytes, 0);
    spdlog::info("device {}: connected from {} serving version {}", device_id_, context_->peer(), hello.model_version());
    core_->Subscribe(device_id_, outbox_);
    auto latest = core_->LatestUpdate(device_id_);
    ServerMessage welcome;
    welcome.mutable_welcome()->set_latest_version(latest.ok() && *latest ? (*latest)->new_version : 0);
    welcome.mutable_welcome()->set_last_stored_sequence(core_->LastStoredSequence(device_id_));
    welcome.mutable_welcome()->set_max_message_bytes(core_->config().max_message_bytes);
    outbox_->Push(std::move(welcome));
    if (latest.ok() && *latest) {
      const EncodedUpdate& l = **latest;
      if (l.new_version > hello.model_version() ||
          (l.new_version == hello.model_version() && l.weights_checksum != hello.weights_checksum())) {
        outbox_->OnUpdate(*latest);
      } else if (l.new_version < hello.model_version()) {
        spdlog::warn("device {}: serves version {}, newer than this server's {} (server state reset?); it keeps "
                     "its model until the server publishes a newer one", device_id_, hello.model_version(),
                     l.new_version);
      }
    }
    StartRead(&in_);
  }

  void SendLatest(bool only_if_newer, uint64_t have_version) {
    auto latest = core_->LatestUpdate(device_id_);
    if (!latest.ok() || !*latest) return;
    if (only_if_newer && (*latest)->new_version <= have_version) return;
    outbox_->OnUpdate(*latest);
  }

  void HandleFrame() {
    const auto& frame = in_.frame();
    FrameRecord meta;
    meta.device_id = device_id_;
    meta.sequence = frame.sequence();
    meta.frame_index = frame.frame_index();
    meta.capture_time_s = frame.capture_time_s();
    meta.source_width = frame.source_width();
    meta.source_height = frame.source_height();
    meta.image_score = frame.image_score();
    if (frame.sequence() == 0 || frame.jpeg().empty()) {
      Ack(frame.sequence(), FrameOutcome{Status::InvalidArgument("frame without sequence or image")});
      StartRead(&in_);
      return;
    }
    pending_meta_ = meta;
    pending_jpeg_ = frame.jpeg();
    SubmitPending();
  }

  // Hands the held frame to the labellers; when their queue is full the stream stops
  // reading until there is room (flow control reaches the edge through gRPC's window).
  void SubmitPending() {
    std::weak_ptr<Outbox> weak = outbox_;
    std::string device = device_id_;
    const uint64_t sequence = pending_meta_.sequence;
    auto done = [weak, sequence](FrameOutcome outcome) {
      auto outbox = weak.lock();
      if (!outbox) return;
      ServerMessage ack;
      ack.mutable_ack()->set_sequence(sequence);
      ack.mutable_ack()->set_code(GrpcCode(outcome.status));
      ack.mutable_ack()->set_message(outcome.status.ok() ? "" : outcome.status.message());
      ack.mutable_ack()->set_duplicate(outcome.duplicate);
      ack.mutable_ack()->set_teacher_agreement(outcome.teacher_agreement);
      outbox->Push(std::move(ack));
    };
    if (core_->TrySubmitFrame(device, pending_meta_, pending_jpeg_, done)) {
      pending_jpeg_.clear();
      StartRead(&in_);
      return;
    }
    core_->OnLabelQueueSpace([this] { SubmitPending(); });
  }

  void Ack(uint64_t sequence, const FrameOutcome& outcome) {
    ServerMessage ack;
    ack.mutable_ack()->set_sequence(sequence);
    ack.mutable_ack()->set_code(GrpcCode(outcome.status));
    ack.mutable_ack()->set_message(outcome.status.message());
    outbox_->Push(std::move(ack));
  }

  ServerCore* core_;
  grpc::CallbackServerContext* context_;
  std::shared_ptr<Outbox> outbox_;
  EdgeMessage in_;
  std::string device_id_;  // set once the hello is accepted
  FrameRecord pending_meta_;
  std::string pending_jpeg_;
};

void Outbox::Push(ServerMessage message) {
  std::lock_guard<std::mutex> lock(mu_);
  messages_.push_back(std::move(message));
  MaybeWriteLocked();
}

void Outbox::OnUpdate(std::shared_ptr<const EncodedUpdate> update) {
  std::lock_guard<std::mutex> lock(mu_);
  // One already being sent is finished first, so the edge never sees two updates interleaved.
  if (!pending_updates_.empty() && pending_updates_.back()->new_version >= update->new_version) return;  // stale
  if (update->base_version == 0) pending_updates_.clear();  // a full model makes older ones moot
  pending_updates_.push_back(std::move(update));
  MaybeWriteLocked();
}

void Outbox::WriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  writing_ = false;
  if (!ok) broken_ = true;
  MaybeWriteLocked();
}

void Outbox::RequestFinish(grpc::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!finish_) finish_ = std::move(status);
  MaybeWriteLocked();
}

void Outbox::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  stream_ = nullptr;
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
  const EncodedUpdate& u = *sending_;
  const uint32_t count = std::max<size_t>(1, (u.payload.size() + chunk_bytes_ - 1) / chunk_bytes_);
  auto* chunk = out->mutable_update();
  chunk->set_base_version(u.base_version);
  chunk->set_new_version(u.new_version);
  chunk->set_encoding(u.encoding);
  chunk->set_chunk_index(next_chunk_);
  chunk->set_chunk_count(count);
  chunk->set_payload_size(u.payload.size());
  chunk->set_data(u.payload.substr(static_cast<size_t>(next_chunk_) * chunk_bytes_, chunk_bytes_));
  chunk->set_weights_checksum(u.weights_checksum);
  chunk->set_val_map50(u.val_map50);
  chunk->set_val_map50_previous(u.val_map50_previous);
  chunk->set_val_frames(u.val_frames);
  if (++next_chunk_ >= count) sending_.reset();
  return true;
}

void Outbox::MaybeWriteLocked() {
  if (!stream_ || writing_ || finished_) return;
  if (!broken_ && !finish_) {
    if (NextMessageLocked(&current_)) {
      writing_ = true;
      stream_->Write(&current_);
    }
    return;
  }
  // Finishing: drain what is queued unless the stream broke, then finish exactly once.
  if (!broken_ && NextMessageLocked(&current_)) {
    writing_ = true;
    stream_->Write(&current_);
    return;
  }
  finished_ = true;
  stream_->Finish(finish_ ? *finish_ : grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broken"));
}

}  // namespace

grpc::ServerBidiReactor<EdgeMessage, ServerMessage>* EdgeLinkService::Connect(grpc::CallbackServerContext* context) {
  return new EdgeStream(core_, context);
}

}  // namespace sd
