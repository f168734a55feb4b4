#include "edge/uplink.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <random>
#include <set>

#include <spdlog/spdlog.h>

#include "common/base/clock.h"
#include "common/link/grpc_status.h"
#include "common/link/update_codec.h"
#include "streamdistill.grpc.pb.h"

namespace sd {

using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;

namespace {

// google.rpc codes of a FrameAck that mean "not stored now, send it again later": the server's
// storage is unavailable (a full disk) or it is overloaded. Any other non-zero code is final.
constexpr int kUnavailable = 14;
constexpr int kResourceExhausted = 8;
bool IsRetryable(int code) { return code == kUnavailable || code == kResourceExhausted; }

std::shared_ptr<grpc::ChannelCredentials> Credentials(const TlsClientOptions& tls) {
  if (tls.ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls.ca;
  ssl.pem_cert_chain = tls.cert;
  ssl.pem_private_key = tls.key;
  return grpc::SslCredentials(ssl);
}

}  // namespace

// The gRPC metadata key that carries the device id (lower case, as HTTP/2 requires).
constexpr char kDeviceIdHeader[] = "sd-device-id";

// One stream's life: a writer (the Run thread) and a reader thread.
class Uplink::Connection {
 public:
  Connection(Uplink* owner, std::shared_ptr<grpc::Channel> channel) : owner_(owner) {
    stub_ = streamdistill::v1::EdgeLink::NewStub(channel);
    // Routing only (HAProxy hashes it to pick the device's replica, docs/scale-out.md): the
    // hello, not this header, is what the server authenticates.
    context_.AddMetadata(kDeviceIdHeader, owner->options_.device_id);
    stream_ = stub_->Connect(&context_);
  }

  // Runs the whole stream; returns its final status.
  Status Serve() {
    MarkActive(/*heard=*/false);
    std::thread watchdog([this] { CancelWhenStalled(); });
    EdgeMessage hello;
    auto* h = hello.mutable_hello();
    h->set_device_id(owner_->options_.device_id);
    h->set_token(owner_->options_.token);
    h->set_architecture(owner_->architecture_);
    h->set_model_version(owner_->sink_->ServingVersion());
    h->set_weights_checksum(owner_->sink_->ServingChecksum());
    h->set_software("streamdistill-edge 0.1.0");
    if (Write(hello)) {
      std::thread reader([this] { ReadLoop(); });
      WriteLoop();
      context_.TryCancel();  // unblocks the reader if the writer stopped first
      reader.join();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      serving_done_ = true;
      cv_.notify_all();
    }
    watchdog.join();
    Status status = Finish();
    std::lock_guard<std::mutex> lock(mu_);
    if (!stall_.empty()) return Status::Unavailable(stall_);
    return status;
  }

  void Cancel() { context_.TryCancel(); }

  void Wake() {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }

 private:
  bool Write(const EdgeMessage& message) {
    if (!stream_->Write(message)) return false;
    MarkActive(/*heard=*/false);
    std::lock_guard<std::mutex> lock(owner_->mu_);
    const int64_t bytes = message.ByteSizeLong() + kGrpcFramingBytes;
    owner_->stats_.bytes_up += bytes;
    const bool frame = message.kind_case() == EdgeMessage::kFrame;
    (frame ? owner_->stats_.bytes_up_frames : owner_->stats_.bytes_up_control) += bytes;
    if (frame) ++owner_->stats_.frames_sent;
    return true;
  }

  // Sends spooled frames oldest first, at most max_in_flight unacked, plus control messages.
  // Frames the server asked to re-send go first, but only once the back-off has passed.
  void WriteLoop() {
    uint64_t last_sent = 0;
    while (!owner_->stopping_) {
      std::deque<EdgeMessage> control;
      std::optional<uint64_t> next;
      bool is_retry = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        const double paused_for = pause_until_ - SteadySeconds();
        const auto wait = paused_for > 0 ? std::min(std::chrono::milliseconds(200),
                                                    std::chrono::milliseconds(1 + static_cast<int>(paused_for * 1000)))
                                         : std::chrono::milliseconds(200);
        // Nothing but the hello goes before the welcome: frames sent into a stream that is
        // refused (a proxy with no server up answers 503 at once) are wasted uplink, and
        // HAProxy 2.6 then does not credit them to the connection's flow-control window.
        cv_.wait_for(lock, wait, [&] {
          return reader_done_ || owner_->stopping_ || (welcomed_ && (!control_.empty() || HasWork(last_sent)));
        });
        if (reader_done_) return;
        if (!welcomed_) continue;
        control.swap(control_);
        if (CanSendFrame()) {
          if (!retry_.empty()) {
            next = *retry_.begin();
            retry_.erase(retry_.begin());
            is_retry = true;
          } else {
            next = owner_->spool_->NextPendingAfter(last_sent);
          }
        }
        if (next) in_flight_.insert(*next);
      }
      for (const EdgeMessage& m : control)
        if (!Write(m)) return;
      if (!next) continue;
      if (!is_retry) last_sent = *next;
      auto bytes = owner_->spool_->Read(*next);
      if (!bytes.ok()) {  // dropped from the spool meanwhile (bound reached): skip it
        std::lock_guard<std::mutex> lock(mu_);
        in_flight_.erase(*next);
        continue;
      }
      EdgeMessage frame;
      if (!frame.mutable_frame()->ParseFromString(*bytes)) {
        spdlog::error("spooled frame {} is corrupt; dropping it", *next);
        owner_->spool_->Remove(*next);
        std::lock_guard<std::mutex> lock(mu_);
        in_flight_.erase(*next);
        continue;
      }
      if (!Write(frame)) return;
    }
  }

  // Caller holds mu_.
  bool CanSendFrame() const {
    return static_cast<int>(in_flight_.size()) < owner_->options_.max_in_flight && SteadySeconds() >= pause_until_;
  }

  // Caller holds mu_.
  bool HasWork(uint64_t last_sent) const {
    if (!CanSendFrame()) return false;
    return !retry_.empty() || owner_->spool_->NextPendingAfter(last_sent).has_value();
  }

  void Queue(EdgeMessage message) {
    std::lock_guard<std::mutex> lock(mu_);
    control_.push_back(std::move(message));
    cv_.notify_all();
  }

  void ReadLoop() {
    ServerMessage message;
    while (stream_->Read(&message)) {
      MarkActive(/*heard=*/true);
      {
        std::lock_guard<std::mutex> lock(owner_->mu_);
        const int64_t bytes = message.ByteSizeLong() + kGrpcFramingBytes;
        owner_->stats_.bytes_down += bytes;
        (message.kind_case() == ServerMessage::kUpdate ? owner_->stats_.bytes_down_updates
                                                       : owner_->stats_.bytes_down_control) += bytes;
      }
      switch (message.kind_case()) {
        case ServerMessage::kWelcome: OnWelcome(message.welcome()); break;
        case ServerMessage::kAck: OnAck(message.ack()); break;
        case ServerMessage::kUpdate: OnChunk(message.update()); break;
        default: break;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    reader_done_ = true;
    cv_.notify_all();
  }

  void OnWelcome(const streamdistill::v1::Welcome& welcome) {
    spdlog::info("connected to {}: server holds version {}, {} frames stored", owner_->options_.server,
                 welcome.latest_version(), welcome.last_stored_sequence());
    // An edge whose spool was wiped must not reuse sequences the server already stored: the
    // server would take new frames for re-sends and drop them.
    owner_->spool_->AdvanceSequence(welcome.last_stored_sequence() + 1);
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      owner_->stats_.connected = true;
      ++owner_->stats_.connects;
    }
    std::lock_guard<std::mutex> lock(mu_);
    welcomed_ = true;
    cv_.notify_all();
  }

  // Progress on the stream: a message read from the server (`heard`) or one written to it.
  void MarkActive(bool heard) {
    std::lock_guard<std::mutex> lock(mu_);
    last_active_s_ = SteadySeconds();
    if (heard) heard_any_ = true;
  }

  // Ends a stream that awaits the server (the welcome to its hello, the ack of a frame in
  // flight) with no progress either way for stall_timeout_s: the connection under it may be
  // wedged (a proxy that holds the stream while no server reads it, a flow-control window
  // that never reopens). Writes count as progress, so a thin uplink still pushing a large
  // frame is not taken for a stall.
  void CancelWhenStalled() {
    const double timeout_s = owner_->options_.stall_timeout_s;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        cv_.wait_for(lock, std::chrono::milliseconds(200));
        if (serving_done_) return;
        const bool awaiting = !welcomed_ || !in_flight_.empty();
        const double silent_s = SteadySeconds() - last_active_s_;
        if (awaiting && silent_s > timeout_s) {
          stall_ = fmt::format("no answer for {:.0f} s while awaiting {}{}: stream given up, the next one goes on a "
                               "new connection",
                               silent_s, welcomed_ ? "frame acks" : "the welcome",
                               heard_any_ ? "" : " (nothing heard on this stream)");
          break;
        }
      }
    }
    context_.TryCancel();
  }

  void OnAck(const streamdistill::v1::FrameAck& ack) {
    if (IsRetryable(ack.code())) {
      OnRetryableAck(ack);
      return;
    }
    const bool stored = ack.code() == 0;
    if (!stored)
      spdlog::warn("server rejected frame {}: {} (code {}); dropping it", ack.sequence(), ack.message(), ack.code());
    // Rejected frames are dropped too: sending them again would be rejected again.
    Status removed = owner_->spool_->Remove(ack.sequence());
    if (!removed.ok()) spdlog::error("spool: {}", removed.ToString());
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      ++(stored ? owner_->stats_.frames_acked : owner_->stats_.frames_rejected);
    }
    if (stored) owner_->retry_log_.Succeeded();
    if (owner_->ack_observer_) {
      Uplink::Ack seen;
      seen.sequence = ack.sequence();
      seen.code = ack.code();
      // Only a newly stored frame was compared with the previous one, and scored.
      const bool fresh = stored && !ack.duplicate();
      seen.teacher_agreement = fresh ? ack.teacher_agreement() : -1.0;
      seen.student_agreement = fresh ? ack.student_agreement() : -1.0;
      seen.budget_per_minute = ack.budget_per_minute();
      owner_->ack_observer_(seen);
    }
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(ack.sequence());
    if (stored) retry_attempt_ = 0;
    cv_.notify_all();
  }

  // The server could not store the frame now (its disk is full, say): the frame stays in the
  // spool and goes again after a back-off, and no frame at all is sent before then, so a
  // server in trouble gets at most max_in_flight frames per back-off period.
  void OnRetryableAck(const streamdistill::v1::FrameAck& ack) {
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      ++owner_->stats_.frames_retried;
    }
    double delay = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.erase(ack.sequence());
      retry_.insert(ack.sequence());
      const double now = SteadySeconds();
      if (now >= pause_until_) {  // the acks of frames already in flight do not stretch the pause
        delay = owner_->NextBackoff(retry_attempt_++);
        pause_until_ = now + delay;
      }
      cv_.notify_all();
    }
    owner_->retry_log_.Failed(Status::Unavailable(
        "frame " + std::to_string(ack.sequence()) + " not stored (code " + std::to_string(ack.code()) +
        "): " + ack.message() + "; kept in the spool" +
        (delay > 0 ? fmt::format(", sending again in {:.1f} s", delay) : std::string())));
    if (owner_->ack_observer_) {
      Uplink::Ack seen;
      seen.sequence = ack.sequence();
      seen.code = ack.code();
      seen.budget_per_minute = ack.budget_per_minute();
      owner_->ack_observer_(seen);
    }
  }

  void OnChunk(const streamdistill::v1::ModelUpdateChunk& chunk) {
    // The rest of an update already refused says nothing new: one refusal, one request.
    if (chunk.new_version() == refused_version_ && chunk.chunk_index() != 0) return;
    refused_version_ = 0;
    auto assembled = assembler_.Add(chunk);
    if (!assembled.ok()) {
      RefuseUpdate(chunk.new_version(), assembled.status());
      return;
    }
    if (!assembled->has_value()) return;  // more chunks to come
    const ModelUpdate& update = **assembled;
    Status applied = owner_->sink_->ApplyUpdate(update);
    if (!applied.ok()) {
      RefuseUpdate(update.new_version, applied);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      ++owner_->stats_.updates_applied;
    }
    EdgeMessage result;
    result.mutable_update_result()->set_version(update.new_version);
    result.mutable_update_result()->set_applied(true);
    Queue(std::move(result));
  }

  // Keeps serving the current model and asks for a full one.
  void RefuseUpdate(uint64_t version, const Status& why) {
    spdlog::warn("update to version {} refused: {}; asking for the full model", version, why.ToString());
    assembler_.Reset();
    refused_version_ = version;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      ++owner_->stats_.updates_refused;
    }
    EdgeMessage result;
    result.mutable_update_result()->set_version(version);
    result.mutable_update_result()->set_applied(false);
    result.mutable_update_result()->set_message(why.message());
    Queue(std::move(result));
    EdgeMessage request;
    request.mutable_model_request()->set_have_version(owner_->sink_->ServingVersion());
    request.mutable_model_request()->set_full(true);
    request.mutable_model_request()->set_reason(why.message());
    Queue(std::move(request));
  }

  Status Finish() {
    stream_->WritesDone();
    grpc::Status status = stream_->Finish();
    return FromGrpcStatus(status);
  }

  Uplink* owner_;
  grpc::ClientContext context_;
  std::unique_ptr<streamdistill::v1::EdgeLink::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<EdgeMessage, ServerMessage>> stream_;
  ModelUpdateAssembler assembler_;  // only the reader thread uses it
  uint64_t refused_version_ = 0;  // its later chunks are dropped quietly (reader thread)

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<EdgeMessage> control_;
  std::set<uint64_t> in_flight_;
  std::set<uint64_t> retry_;   // the server asked to re-send these (retryable ack); oldest first
  double pause_until_ = 0;     // steady seconds: no frame is sent before (retry back-off)
  int retry_attempt_ = 0;      // retryable acks in a row, for the back-off; reset by a stored frame
  bool reader_done_ = false;
  bool welcomed_ = false;
  bool heard_any_ = false;
  bool serving_done_ = false;   // Serve's stream has ended: the watchdog stops
  double last_active_s_ = 0;    // steady seconds of the last message read or written
  std::string stall_;           // why the watchdog ended the stream; empty: it did not
};

Uplink::Uplink(UplinkOptions options, std::string architecture, Spool* spool, UpdateSink* sink)
    : options_(std::move(options)),
      architecture_(std::move(architecture)),
      spool_(spool),
      sink_(sink),
      retry_log_("uplink: sending frames") {}

Uplink::~Uplink() { Stop(); }

void Uplink::Start() { thread_ = std::thread([this] { Run(); }); }

void Uplink::Stop() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (connection_) connection_->Cancel();
    wake_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void Uplink::NotifyFrameQueued() {
  std::lock_guard<std::mutex> lock(mu_);
  if (connection_) connection_->Wake();
}

UplinkStats Uplink::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool Uplink::Drained() const { return spool_->pending_count() == 0; }

double Uplink::NextBackoff(int attempt) {
  static thread_local std::mt19937 rng(std::random_device{}());
  const double base = std::min(options_.backoff_max_s, options_.backoff_initial_s * std::pow(2.0, attempt));
  return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng);  // jitter spreads a fleet's reconnects
}

void Uplink::Run() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.max_message_bytes);
  args.SetMaxSendMessageSize(options_.max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Each attempt on a connection of its own: gRPC would otherwise reuse the previous one
  // (its global subchannel pool), and a connection that a proxy wedged would take every
  // later stream down with it. (Cameras in one process, streamdistill-fleet, then also get a
  // connection each, as separate boxes do.)
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!options_.tls.server_name.empty()) args.SetSslTargetNameOverride(options_.tls.server_name);
  int attempt = 0;
  while (!stopping_) {
    auto channel = grpc::CreateCustomChannel(options_.server, Credentials(options_.tls), args);
    auto connection = std::make_shared<Connection>(this, channel);
    {
      std::lock_guard<std::mutex> lock(mu_);
      connection_ = connection;
      if (stopping_) connection->Cancel();
    }
    const int64_t connects_before = stats().connects;
    Status status = connection->Serve();
    {
      std::lock_guard<std::mutex> lock(mu_);
      connection_.reset();
      stats_.connected = false;
      stats_.last_error = status.ToString();
    }
    if (stopping_) break;
    if (stats().connects > connects_before) attempt = 0;  // it had worked: start the back-off over
    const double delay = NextBackoff(attempt++);
    if (status.code() == Status::Code::kUnauthenticated || status.code() == Status::Code::kFailedPrecondition)
      spdlog::error("server refused this edge: {}; retrying in {:.1f}s", status.ToString(), delay);
    else
      spdlog::warn("link to {} down: {}; retrying in {:.1f}s", options_.server, status.ToString(), delay);
    std::unique_lock<std::mutex> lock(mu_);
    wake_cv_.wait_for(lock, std::chrono::duration<double>(delay), [this] { return stopping_.load(); });
  }
}

}  // namespace sd
