#include "server/edge_session.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <spdlog/spdlog.h>

#include "common/link/grpc_status.h"
#include "common/vision/image_header.h"
#include "common/base/clock.h"
#include "common/base/log_safe.h"

namespace sd {
namespace {

using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;

// Sequences stay exact as doubles (JSON, SQLite tools, spreadsheets) and far from the signed
// 64-bit edge where SQLite's INTEGER ends: a client must not be able to store a sequence
// after which the real edge could not number its frames.
constexpr uint64_t kMaxSequence = (uint64_t{1} << 53) - 1;
constexpr int kMaxPrivacyMasks = 64;

// The declaration as stored: "masks=a,b;faces=2" (either part may be absent).
std::string FormatPrivacy(const streamdistill::v1::PrivacyDeclaration& privacy) {
  std::string text;
  for (int i = 0; i < privacy.masks_size(); ++i) text += (i == 0 ? "masks=" : ",") + privacy.masks(i);
  if (privacy.faces()) text += (text.empty() ? "" : ";") + std::string("faces=") + std::to_string(privacy.faces_found());
  return text;
}

// Mask names as the edge's config allows them: they are stored and shown on the dashboard.
bool IsMaskName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}
constexpr int kMaxSourceSide = 65535;
// The edge sends at most 100 (edge/frame_encoding.h); room for another edge's choice.
constexpr int kMaxStudentDetections = 1000;

// 1, 10, 100, ...: repeated refusals are logged, but not once per message of a flood.
bool IsPowerOfTen(uint64_t n) {
  while (n >= 10 && n % 10 == 0) n /= 10;
  return n == 1;
}

}  // namespace

std::shared_ptr<EdgeSession> EdgeSession::Create(ServerCore* core, std::shared_ptr<SessionOutput> output,
                                                 std::string peer, std::function<void()> resume) {
  return std::shared_ptr<EdgeSession>(new EdgeSession(core, std::move(output), std::move(peer), std::move(resume)));
}

EdgeSession::EdgeSession(ServerCore* core, std::shared_ptr<SessionOutput> output, std::string peer,
                         std::function<void()> resume)
    : core_(core), output_(std::move(output)), peer_(std::move(peer)), resume_(std::move(resume)) {}

EdgeSession::Next EdgeSession::OnMessage(const EdgeMessage& message) {
  {
    // The core may have ended the stream from another thread (a newer stream, a disabled
    // device): nothing it sends is handled any more.
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return Next::kClosed;
  }
  if (device_id_.empty()) return HandleHello(message);
  core_->CountBytes(device_id_, static_cast<int64_t>(message.ByteSizeLong()) + kGrpcFramingBytes, 0);
  switch (message.kind_case()) {
    case EdgeMessage::kFrame:
      return HandleFrame(message.frame());
    case EdgeMessage::kModelRequest:
      HandleModelRequest(message.model_request());
      break;
    case EdgeMessage::kUpdateResult:
      if (message.update_result().applied()) {
        spdlog::info("device {}: serving version {}", device_id_, message.update_result().version());
        core_->SetServedVersion(device_id_, message.update_result().version());
      } else {
        spdlog::warn("device {}: could not apply version {}: {}", device_id_, message.update_result().version(),
                     LogSafe(message.update_result().message(), 256));
      }
      break;
    case EdgeMessage::kHello:
      Close(Status::FailedPrecondition("hello sent twice"));
      return Next::kClosed;
    case EdgeMessage::KIND_NOT_SET:
      break;  // a kind from a newer protocol: ignored, as protobuf ignores unknown fields
  }
  return ReadIfOutputDrained();
}

void EdgeSession::OnEndOfStream(bool malformed) {
  Close(malformed ? Status::InvalidArgument("a message could not be parsed as a streamdistill.v1.EdgeMessage")
                  : Status::Ok());
}

void EdgeSession::Detach() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    resume_ = nullptr;
  }
  if (!device_id_.empty()) {
    core_->DetachSession(device_id_, this);
    spdlog::info("device {}: stream closed", device_id_);
  }
}

void EdgeSession::OnUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) {
  output_->SendUpdate(std::move(update), std::move(full));
}

void EdgeSession::End(const Status& why) { Close(why); }

void EdgeSession::OnCancelled() { Close(Status::Aborted("stream cancelled")); }

void EdgeSession::Close(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
  }
  output_->Close(status);
}

EdgeSession::Next EdgeSession::HandleHello(const EdgeMessage& message) {
  if (message.kind_case() != EdgeMessage::kHello) {
    Close(Status::Unauthenticated("the first message must be a hello"));
    return Next::kClosed;
  }
  const auto& hello = message.hello();
  Status auth = core_->AttachSession(hello.device_id(), hello.token(), hello.architecture(), shared_from_this());
  if (!auth.ok()) {
    spdlog::warn("rejected stream from {}: {}", LogSafe(peer_, 128), auth.ToString());
    Close(auth);
    return Next::kClosed;
  }
  device_id_ = hello.device_id();
  core_->CountBytes(device_id_, static_cast<int64_t>(message.ByteSizeLong()) + kGrpcFramingBytes, 0);
  output_->SetByteCounter(
      [core = core_, id = device_id_](int64_t bytes) { core->CountBytes(id, 0, bytes + kGrpcFramingBytes); });
  spdlog::info("device {}: connected from {} serving version {}", device_id_, LogSafe(peer_, 128),
               hello.model_version());
  core_->SetServedVersion(device_id_, hello.model_version());

  auto latest = core_->LatestUpdate(device_id_);
  ServerMessage welcome;
  welcome.mutable_welcome()->set_latest_version(latest.ok() && *latest ? (*latest)->new_version : 0);
  highest_sequence_ = core_->LastStoredSequence(device_id_);
  welcome.mutable_welcome()->set_last_stored_sequence(highest_sequence_);
  welcome.mutable_welcome()->set_max_message_bytes(core_->config().max_message_bytes);
  output_->Send(std::move(welcome));
  if (latest.ok() && *latest) {
    const ModelUpdate& l = **latest;
    // A pinned version goes to a device that runs any other, older or newer.
    if (l.new_version > hello.model_version() || (l.pinned && l.new_version != hello.model_version()) ||
        (l.new_version == hello.model_version() && l.weights_checksum != hello.weights_checksum())) {
      if (core_->AllowFullModelSend(device_id_))
        output_->SendUpdate(*latest, *latest);
      else
        spdlog::warn("device {}: reconnects too often for a full model each time; it gets the next version",
                     device_id_);
    } else if (l.new_version < hello.model_version()) {
      spdlog::warn("device {}: serves version {}, newer than this server's {} (server state reset?); it keeps "
                   "its model until the server publishes a newer one", device_id_, hello.model_version(),
                   l.new_version);
    }
  }
  return ReadIfOutputDrained();
}

void EdgeSession::HandleModelRequest(const streamdistill::v1::ModelRequest& request) {
  auto latest = core_->LatestUpdate(device_id_);
  // Only a newer version helps (a pinned one: any other): re-sending one the edge refused as
  // not newer (its state outlived a wiped server) would loop.
  if (!latest.ok() || !*latest) return;
  const uint64_t version = (*latest)->new_version;
  if ((*latest)->pinned ? version == request.have_version() : version <= request.have_version()) return;
  if (!core_->AllowFullModelSend(device_id_)) {
    if (IsPowerOfTen(++full_model_refusals_))
      spdlog::warn("device {}: full-model requests over the limit ({} refused on this stream)", device_id_,
                   full_model_refusals_);
    return;
  }
  output_->SendUpdate(*latest, *latest);
}

Status EdgeSession::ValidateFrame(const streamdistill::v1::SampledFrame& frame) const {
  const ServerLimits& limits = core_->config().limits;
  if (frame.sequence() == 0 || frame.sequence() > kMaxSequence)
    return Status::InvalidArgument("sequence " + std::to_string(frame.sequence()) + " is outside [1, 2^53-1]");
  if (frame.sequence() > highest_sequence_ && frame.sequence() - highest_sequence_ > limits.max_sequence_gap)
    return Status::InvalidArgument("sequence " + std::to_string(frame.sequence()) + " is more than " +
                                   std::to_string(limits.max_sequence_gap) + " past the highest one so far (" +
                                   std::to_string(highest_sequence_) + ")");
  if (frame.jpeg().empty()) return Status::InvalidArgument("frame without an image");
  if (!std::isfinite(frame.capture_time_s())) return Status::InvalidArgument("capture_time_s is not finite");
  if (!std::isfinite(frame.image_score()) || frame.image_score() < 0)
    return Status::InvalidArgument("image_score must be finite and >= 0");
  if (frame.frame_index() < 0) return Status::InvalidArgument("frame_index must be >= 0");
  if (frame.source_width() < 0 || frame.source_width() > kMaxSourceSide || frame.source_height() < 0 ||
      frame.source_height() > kMaxSourceSide)
    return Status::InvalidArgument("source size must be in [0, 65535]");
  if (frame.embedding_size() > limits.max_embedding)
    return Status::InvalidArgument("embedding of " + std::to_string(frame.embedding_size()) + " values exceeds " +
                                   std::to_string(limits.max_embedding));
  for (float v : frame.embedding())
    if (!std::isfinite(v)) return Status::InvalidArgument("embedding has a value that is not finite");
  const bool declared = frame.has_privacy() && (frame.privacy().masks_size() > 0 || frame.privacy().faces());
  if (frame.privacy().masks_size() > kMaxPrivacyMasks)
    return Status::InvalidArgument("privacy declaration names more than " + std::to_string(kMaxPrivacyMasks) + " masks");
  for (const std::string& mask : frame.privacy().masks())
    if (!IsMaskName(mask)) return Status::InvalidArgument("privacy declaration: a mask name is not [A-Za-z0-9_.-]{1,64}");
  if (!declared && core_->config().PrivacyRequired(device_id_))
    return Status::FailedPrecondition("device " + device_id_ +
                                      " is configured privacy: required on the server, and this frame carries no "
                                      "privacy-mask declaration; configure privacy: in the edge's config");
  if (frame.student_detections_size() > kMaxStudentDetections)
    return Status::InvalidArgument(std::to_string(frame.student_detections_size()) +
                                   " student detections exceed " + std::to_string(kMaxStudentDetections));
  auto unit = [](float v) { return v >= 0 && v <= 1; };  // false for NaN too
  for (const auto& d : frame.student_detections())
    if (!unit(d.x1()) || !unit(d.y1()) || !unit(d.x2()) || !unit(d.y2()) || d.x1() > d.x2() || d.y1() > d.y2() ||
        !std::isfinite(d.score()) || d.class_id() < 0)
      return Status::InvalidArgument("a student detection is not a box within [0, 1] with a finite score");
  if (!std::isfinite(frame.budget_per_minute()) || frame.budget_per_minute() < 0)
    return Status::InvalidArgument("budget_per_minute must be finite and >= 0");
  return CheckJpegSize(frame.jpeg(), limits.image).status();
}

void EdgeSession::Reject(uint64_t sequence, const Status& status) {
  ServerMessage ack;
  ack.mutable_ack()->set_sequence(sequence);
  ack.mutable_ack()->set_code(GrpcCode(status));
  ack.mutable_ack()->set_message(status.message());
  ack.mutable_ack()->set_teacher_agreement(-1);
  ack.mutable_ack()->set_student_agreement(-1);
  output_->Send(std::move(ack));
}

EdgeSession::Next EdgeSession::HandleFrame(const streamdistill::v1::SampledFrame& frame) {
  const double received_s = SteadySeconds();
  core_->metrics().frames_received.With({device_id_}).Inc();
  Status valid = ValidateFrame(frame);
  if (!valid.ok()) {
    core_->CountRejectedFrame(device_id_);
    if (IsPowerOfTen(++frames_refused_))
      spdlog::warn("device {}: frame {} refused: {} ({} refused on this stream)", device_id_, frame.sequence(),
                   valid.message(), frames_refused_);
    Reject(frame.sequence(), valid);
    return ReadIfOutputDrained();
  }
  highest_sequence_ = std::max(highest_sequence_, frame.sequence());
  held_meta_ = FrameRecord();
  held_meta_.device_id = device_id_;
  held_meta_.sequence = frame.sequence();
  held_meta_.frame_index = frame.frame_index();
  held_meta_.capture_time_s = frame.capture_time_s();
  held_meta_.source_width = frame.source_width();
  held_meta_.source_height = frame.source_height();
  held_meta_.image_score = frame.image_score();
  held_meta_.privacy = FormatPrivacy(frame.privacy());
  held_jpeg_ = std::make_shared<const std::string>(frame.jpeg());
  held_received_s_ = received_s;
  held_budget_ = FrameBudgetAsk();
  held_budget_.requested = frame.budget_per_minute();
  held_budget_.reason = BudgetReasonWord(frame.budget_reason());
  for (const auto& d : frame.student_detections()) {
    Detection detection;
    detection.box = {d.x1(), d.y1(), d.x2(), d.y2()};
    detection.score = d.score();
    detection.class_id = d.class_id();
    held_budget_.student.push_back(detection);
  }
  return SubmitHeldFrame();
}

EdgeSession::Next EdgeSession::SubmitHeldFrame() {
  std::weak_ptr<SessionOutput> weak_output = output_;
  const uint64_t sequence = held_meta_.sequence;
  auto done = [weak_output, sequence, core = core_, device = device_id_, ask = held_budget_,
               received_s = held_received_s_](FrameOutcome outcome) {
    auto output = weak_output.lock();
    if (!output) return;
    const FrameBudgetAnswer budget = core->AnswerFrameBudget(device, ask, outcome);
    ServerMessage ack;
    ack.mutable_ack()->set_sequence(sequence);
    ack.mutable_ack()->set_code(GrpcCode(outcome.status));
    ack.mutable_ack()->set_message(outcome.status.ok() ? "" : outcome.status.message());
    ack.mutable_ack()->set_duplicate(outcome.duplicate);
    ack.mutable_ack()->set_teacher_agreement(outcome.teacher_agreement);
    ack.mutable_ack()->set_student_agreement(static_cast<float>(budget.student_agreement));
    ack.mutable_ack()->set_budget_per_minute(budget.budget_per_minute);
    // Counted before it goes: whoever reads the ack then finds it in /metrics.
    if (outcome.status.ok()) core->metrics().frame_ack_seconds.Observe(SteadySeconds() - received_s);
    output->Send(std::move(ack));
  };
  while (!core_->TrySubmitFrame(device_id_, held_meta_, held_jpeg_, done)) {
    if (core_->stopping()) {  // the queue refuses everything now; the edge re-sends later
      Close(Status::Unavailable("server shutting down"));
      return Next::kClosed;
    }
    // The callback holds the session weakly: a stream that ends while it waits is simply
    // forgotten (its frame is re-sent by the edge on its next stream).
    std::weak_ptr<EdgeSession> weak = weak_from_this();
    if (core_->WaitForLabelQueueSpace([weak] {
          if (auto self = weak.lock()) self->RetryHeldFrame();
        }))
      return Next::kPaused;
  }
  held_jpeg_.reset();
  return ReadIfOutputDrained();
}

void EdgeSession::RetryHeldFrame() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
  }
  if (SubmitHeldFrame() == Next::kRead) Resume();
}

EdgeSession::Next EdgeSession::ReadIfOutputDrained() {
  const size_t limit = static_cast<size_t>(core_->config().limits.stream_backlog);
  std::weak_ptr<EdgeSession> weak = weak_from_this();
  if (output_->WaitForBacklogBelow(limit, [weak] {
        if (auto self = weak.lock()) self->Resume();
      }))
    return Next::kPaused;
  return Next::kRead;
}

void EdgeSession::Resume() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ended_ && resume_) resume_();
}

}  // namespace sd
