#include "edge/edge_agent.h"

#include <charconv>
#include <optional>
#include <chrono>
#include <thread>

#include <opencv2/core.hpp>
#include <spdlog/spdlog.h>

#include "common/link/update_codec.h"
#include "edge/frame_encoding.h"
#include "edge/frame_sequence.h"

namespace sd {

namespace {
constexpr char kDeployedFile[] = "deployed.sdw";
constexpr char kLegacyVersionFile[] = "deployed.version";
}  // namespace

EdgeAgent::EdgeAgent(const EdgeConfig& config, Clock* clock, std::unique_ptr<FrameSource> source)
    : config_(config), clock_(clock), frame_log_("processing frames", clock), source_(std::move(source)) {}

EdgeAgent::~EdgeAgent() {
  if (http_) http_->Stop();
  Stop();
  if (uplink_) uplink_->Stop();
  if (mqtt_) mqtt_->Stop();
}

StatusOr<std::unique_ptr<EdgeAgent>> EdgeAgent::Create(const EdgeConfig& config, Clock* clock,
                                                       std::unique_ptr<FrameSource> source) {
  std::unique_ptr<EdgeAgent> agent(new EdgeAgent(config, clock, std::move(source)));
  SD_RETURN_IF_ERROR(agent->Init());
  return agent;
}

Status EdgeAgent::Init() {
  // Before any parallel work, for libtorch and for OpenCV (decoding, resizing, encoding): a
  // camera box's `threads` is its whole compute budget.
  SetTorchThreads(config_.threads);
  cv::setNumThreads(config_.threads);
  Env* env = config_.env;
  SD_RETURN_IF_ERROR(env->CreateDir(config_.state_dir).WithContext("cannot create the state directory"));

  // The start model: the last deployed version if this edge ran before, else the
  // configured checkpoint, else random weights.
  uint64_t version = 0;
  std::unique_ptr<StudentModel> model;
  const std::string deployed = config_.state_dir + "/" + kDeployedFile;
  if (env->FileExists(deployed)) {
    auto loaded = LoadDeployed();
    if (loaded.ok() && loaded->second->architecture().Fingerprint() == config_.student.Fingerprint()) {
      version = loaded->first;
      model = std::move(loaded->second);
      spdlog::info("resuming deployed model version {}", version);
    } else {
      spdlog::warn("{}: ignoring the saved model ({})", deployed,
                   loaded.ok() ? "another architecture" : loaded.status().ToString());
    }
  }
  if (!model && !config_.init_weights.empty()) {
    SD_ASSIGN_OR_RETURN(model, StudentModel::LoadFromFile(config_.init_weights, env));
    if (model->architecture().Fingerprint() != config_.student.Fingerprint())
      return Status::InvalidArgument(config_.init_weights + ": weights are for '" +
                                     model->architecture().Fingerprint() + "', config says '" +
                                     config_.student.Fingerprint() + "'");
  }
  if (!model) {
    SD_ASSIGN_OR_RETURN(model, StudentModel::Create(config_.student, config_.model_seed));
  }
  initial_weights_ = model->SerializeWeights();
  // What this run started from, so that a run can be scored before and after.
  SD_RETURN_IF_ERROR(model->SaveToFile(config_.state_dir + "/initial.sdw", env));
  scratch_ = std::move(model);
  SD_ASSIGN_OR_RETURN(auto served, BuildServed(version, scratch_->FlatWeights()));
  serving_.Swap(served);

  if (!source_) {
    // A source that cannot be opened at start is a start-up error (exit 2: a wrong URL should
    // not look like a camera that is merely down); once running, a dropped one is reopened.
    SD_ASSIGN_OR_RETURN(auto first, OpenFrameSource(config_.source, clock_));
    const FrameSourceOptions options = config_.source;
    Clock* clock = clock_;
    auto reopening = std::make_unique<ReopeningSource>(
        std::move(first), [options, clock] { return OpenFrameSource(options, clock); }, config_.reconnect, clock_);
    reopening_ = reopening.get();
    source_ = std::move(reopening);
  }
  if (config_.privacy.any()) {
    StatusOr<std::unique_ptr<PrivacyFilter>> privacy = PrivacyFilter::Create(config_.privacy);
    if (!privacy.ok()) return privacy.status().WithContext("privacy.faces.cascade");
    privacy_ = std::move(privacy).value();
  }
  SD_ASSIGN_OR_RETURN(sink_, DetectionSink::Open(config_.sink));
  SD_ASSIGN_OR_RETURN(sampler_, CreateSampler(ForDetectEvery(config_.sampling, config_.detect_every)));
  const BudgetOptions budget = config_.Budget();
  SD_RETURN_IF_ERROR(budget.Validate().WithContext("budget"));
  budget_ = std::make_unique<BudgetController>(budget, config_.sampling.budget_per_minute, clock_);
  if (budget.mode == BudgetMode::kAdaptive) scene_ = std::make_unique<SceneWatch>(budget.scene_change);
  feeder_ = std::make_unique<SampleFeeder<std::string>>(sampler_.get());
  SpoolOptions spool_options = config_.spool;
  spool_options.env = env;
  SD_ASSIGN_OR_RETURN(spool_, Spool::Open(spool_options));
  if (spool_->pending_count() > 0)
    spdlog::info("spool holds {} unacked frames from an earlier run; they go first", spool_->pending_count());
  uplink_ = std::make_unique<Uplink>(config_.uplink, config_.student.Fingerprint(), spool_.get(), this);
  // Runs on the uplink's reader thread; ack_observer_ is set before Run() starts that thread.
  uplink_->SetAckObserver([this](const Uplink::Ack& ack) {
    sampler_->OnTeacherAgreement(ack.teacher_agreement);
    budget_->OnAgreement(ack.student_agreement);
    // A stored frame's ack carries the server's budget as it stands (0: none); others may not.
    if (ack.code == 0) budget_->OnServerBudget(ack.budget_per_minute);
    if (ack_observer_) ack_observer_(ack.sequence, ack.code);
  });
  if (config_.mqtt.enabled) {
    tracker_ = std::make_unique<ObjectTracker>(config_.tracking);
    SD_ASSIGN_OR_RETURN(event_sequence_, EventSequence::Open(env, config_.state_dir + "/event_sequence"));
    SD_ASSIGN_OR_RETURN(mqtt_, MqttPublisher::Create(config_.mqtt, clock_));
  }
  RegisterMetrics();
  SD_RETURN_IF_ERROR(metrics_.status());
  if (config_.http.enabled) {
    http_ = std::make_unique<HttpEndpoint>(config_.http, "streamdistill-edge");
    SD_RETURN_IF_ERROR(http_->ServeMetrics(&metrics_));
    SD_RETURN_IF_ERROR(http_->Start());
  }
  return Status::Ok();
}

void EdgeAgent::RegisterMetrics() {
  using Type = MetricsRegistry::Type;
  using Emit = MetricsRegistry::Emit;
  // Every series carries the device, so that queries can join an edge's numbers with the
  // server's (which label by device too).
  const std::string device = config_.uplink.device_id;
  auto stat = [this, device](std::function<double(const EdgeStats&)> value) {
    return [this, device, value = std::move(value)](const Emit& emit) { emit({device}, value(stats())); };
  };
  auto counter = [&](const char* name, const char* help, std::function<double(const EdgeStats&)> value) {
    metrics_.AddCallback(Type::kCounter, name, help, {"device"}, stat(std::move(value)));
  };
  auto gauge = [&](const char* name, const char* help, std::function<double(const EdgeStats&)> value) {
    metrics_.AddCallback(Type::kGauge, name, help, {"device"}, stat(std::move(value)));
  };
  counter("streamdistill_edge_frames_read_total", "Frames read from the source.",
          [](const EdgeStats& s) { return s.frames; });
  counter("streamdistill_edge_frames_detected_total", "Frames the student ran on (every detect_every-th).",
          [](const EdgeStats& s) { return s.detected; });
  counter("streamdistill_edge_frames_sampled_total", "Frames the sampler chose and the spool took for the server.",
          [](const EdgeStats& s) { return s.queried; });
  counter("streamdistill_edge_spool_failures_total", "Sampled frames lost because the spool could not store them.",
          [](const EdgeStats& s) { return s.spool_failures; });
  counter("streamdistill_edge_frames_acked_total", "Spooled frames the server acked as stored.",
          [](const EdgeStats& s) { return s.uplink.frames_acked; });
  counter("streamdistill_edge_frames_rejected_total", "Spooled frames the server refused for good (dropped).",
          [](const EdgeStats& s) { return s.uplink.frames_rejected; });
  counter("streamdistill_edge_sent_bytes_total", "Bytes of gRPC messages to the server, with their 5-byte framing.",
          [](const EdgeStats& s) { return s.uplink.bytes_up; });
  counter("streamdistill_edge_received_bytes_total",
          "Bytes of gRPC messages from the server, with their 5-byte framing.",
          [](const EdgeStats& s) { return s.uplink.bytes_down; });
  counter("streamdistill_edge_link_connects_total", "Streams to the server that were established.",
          [](const EdgeStats& s) { return s.uplink.connects; });
  gauge("streamdistill_edge_model_version", "The model version serving (0: the start model).",
        [](const EdgeStats& s) { return s.model_version; });
  gauge("streamdistill_edge_link_up", "1 while the stream to the server is established, else 0.",
        [](const EdgeStats& s) { return s.uplink.connected ? 1 : 0; });
  gauge("streamdistill_edge_source_up", "1 while frames come from the source, 0 while it is being reopened.",
        [](const EdgeStats& s) { return s.source.up ? 1 : 0; });
  counter("streamdistill_edge_source_drops_total", "Times the source (a stream, a camera) failed and was reopened.",
          [](const EdgeStats& s) { return s.source.drops; });
  counter("streamdistill_edge_source_reconnects_total", "Reopens of a dropped source that worked.",
          [](const EdgeStats& s) { return s.source.reconnects; });
  counter("streamdistill_edge_source_reopen_failures_total", "Attempts to reopen a dropped source that failed.",
          [](const EdgeStats& s) { return s.source.failed_opens; });
  counter("streamdistill_edge_source_outage_seconds_total",
          "Seconds without a source, the outage in progress included.",
          [](const EdgeStats& s) { return s.source.outage_s; });
  metrics_.AddCallback(Type::kCounter, "streamdistill_edge_updates_total",
                       "Model updates from the server by outcome: applied, or refused (the model kept serving).",
                       {"device", "outcome"}, [this, device](const Emit& emit) {
                         const UplinkStats s = uplink_->stats();
                         emit({device, "applied"}, s.updates_applied);
                         emit({device, "refused"}, s.updates_refused);
                       });
  metrics_.AddCallback(Type::kGauge, "streamdistill_edge_spool_frames", "Frames in the spool waiting for an ack.",
                       {"device"}, [this, device](const Emit& emit) { emit({device}, spool_->pending_count()); });
  metrics_.AddCallback(Type::kGauge, "streamdistill_edge_spool_bytes", "Bytes of the frames in the spool.", {"device"},
                       [this, device](const Emit& emit) { emit({device}, spool_->pending_bytes()); });
  gauge("streamdistill_edge_budget_per_minute",
        "Frames a minute the sampler may send now: the edge's budget bounded by the server's.",
        [this](const EdgeStats&) { return budget_->Effective(); });
  gauge("streamdistill_edge_budget_requested_per_minute",
        "The edge's own budget (adaptive: between budget.floor_per_minute and ceiling_per_minute).",
        [this](const EdgeStats&) { return budget_->Requested(); });
  gauge("streamdistill_edge_server_budget_per_minute", "The server's budget for this edge (0: none told).",
        [this](const EdgeStats&) { return budget_->server_budget(); });
  gauge("streamdistill_edge_student_agreement",
        "The teacher's agreement with the student on the frames sent, smoothed (-1: none yet).",
        [this](const EdgeStats&) { return budget_->smoothed_agreement(); });
  metrics_.AddCallback(Type::kGauge, "streamdistill_edge_budget_reason",
                       "1 for why the budget is what it is now (start, agreement, agreement_fell, scene_change, "
                       "server), 0 for the others.",
                       {"device", "reason"}, [this, device](const Emit& emit) {
                         const BudgetReason now = budget_->reason();
                         for (BudgetReason r : AllBudgetReasons()) emit({device, BudgetReasonName(r)}, r == now ? 1 : 0);
                       });
  metrics_.AddCallback(Type::kCounter, "streamdistill_edge_budget_changes_total",
                       "Times the budget moved, by why.", {"device", "reason"}, [this, device](const Emit& emit) {
                         const std::vector<int64_t> changes = budget_->changes();
                         for (BudgetReason r : AllBudgetReasons())
                           emit({device, BudgetReasonName(r)}, static_cast<double>(changes[static_cast<size_t>(r)]));
                       });
  if (mqtt_) {
    counter("streamdistill_edge_mqtt_events_published_total", "Object events the MQTT broker acknowledged.",
            [](const EdgeStats& s) { return s.mqtt.published; });
    gauge("streamdistill_edge_mqtt_events_queued", "Object events waiting for the broker or in flight.",
          [](const EdgeStats& s) { return s.mqtt.queued; });
    counter("streamdistill_edge_mqtt_events_dropped_total",
            "Object events dropped because the queue was full (mqtt.queue_max_events / queue_max_bytes).",
            [](const EdgeStats& s) { return s.mqtt.dropped; });
    gauge("streamdistill_edge_mqtt_connected", "1 while connected to the MQTT broker.",
          [](const EdgeStats& s) { return s.mqtt.connected ? 1 : 0; });
    counter("streamdistill_edge_mqtt_reconnects_total", "Connections to the MQTT broker after the first.",
            [](const EdgeStats& s) { return s.mqtt.reconnects; });
    counter("streamdistill_edge_mqtt_connect_failures_total",
            "Connection attempts that failed or that the broker refused (wrong credentials).",
            [](const EdgeStats& s) { return s.mqtt.connect_failures; });
  }
  inference_seconds_ = &metrics_
                            .AddHistogram("streamdistill_edge_inference_seconds",
                                          "The student's time per detected frame.", buckets::kInferenceSeconds,
                                          {"device"})
                            .With({device});
}

StatusOr<std::shared_ptr<const ServedModel>> EdgeAgent::BuildServed(uint64_t version, std::vector<float> flat) const {
  // Runs on the uplink's thread for updates: the capture thread keeps serving meanwhile.
  SD_RETURN_IF_ERROR(scratch_->SetFlatWeights(flat));
  auto served = std::make_shared<ServedModel>();
  served->version = version;
  served->weights_checksum = WeightsChecksum(flat);
  served->flat = std::move(flat);
  SD_ASSIGN_OR_RETURN(served->detector, scratch_->MakeDetector(config_.inference));
  return std::shared_ptr<const ServedModel>(served);
}

StatusOr<std::pair<uint64_t, std::unique_ptr<StudentModel>>> EdgeAgent::LoadDeployed() const {
  const std::string path = config_.state_dir + "/" + kDeployedFile;
  SD_ASSIGN_OR_RETURN(std::string bytes, config_.env->ReadFile(path));
  if (!IsDeployedWeights(bytes)) {
    // The layout of earlier releases: bare weights, the version in deployed.version (two
    // files, so a crash between them could pair new weights with an old version). Read once;
    // the next applied update replaces both with the one file.
    SD_ASSIGN_OR_RETURN(auto model, StudentModel::FromBytes(bytes));
    const std::string version_path = config_.state_dir + "/" + kLegacyVersionFile;
    SD_ASSIGN_OR_RETURN(const std::string text, config_.env->ReadFile(version_path));
    uint64_t version = 0;
    const char* end = text.data() + text.size();
    while (end > text.data() && (end[-1] == '\n' || end[-1] == ' ')) --end;
    auto r = std::from_chars(text.data(), end, version);
    if (r.ec != std::errc() || r.ptr != end) return Status::DataLoss(version_path + ": not a version number");
    return std::make_pair(version, std::move(model));
  }
  StatusOr<DeployedWeights> deployed = DecodeDeployedWeights(bytes);
  if (!deployed.ok()) return deployed.status().WithContext(path);
  SD_ASSIGN_OR_RETURN(auto model, StudentModel::FromBytes(deployed->weights));
  const std::string checksum = WeightsChecksum(model->FlatWeights());
  if (checksum != deployed->weights_checksum)
    return Status::DataLoss(path + ": weights checksum " + checksum + " differs from the recorded " +
                            deployed->weights_checksum);
  return std::make_pair(deployed->version, std::move(model));
}

Status EdgeAgent::SaveDeployed(const ServedModel& served) const {
  DeployedWeights deployed;
  deployed.version = served.version;
  deployed.weights_checksum = served.weights_checksum;
  deployed.weights = scratch_->SerializeWeights();  // BuildServed just set these weights
  SD_RETURN_IF_ERROR(
      WriteFileDurably(config_.env, config_.state_dir + "/" + kDeployedFile, EncodeDeployedWeights(deployed)));
  // The version file of the old layout is obsolete now (the one file wins when both exist).
  config_.env->RemoveFile(config_.state_dir + "/" + kLegacyVersionFile).ok();
  return Status::Ok();
}

Status EdgeAgent::ApplyUpdate(const ModelUpdate& update) {
  std::lock_guard<std::mutex> lock(update_mu_);
  auto current = serving_.Current();
  if (update.base_version != 0 && update.base_version != current->version)
    return Status::FailedPrecondition("update is for base version " + std::to_string(update.base_version) +
                                      ", serving " + std::to_string(current->version));
  // A pin (a full model) may go back to an older version; anything else only forward.
  if (update.pinned && !IsFullEncoding(update.encoding))
    return Status::InvalidArgument("a pinned version must be a full model");
  if (!update.pinned && update.new_version <= current->version && current->version != 0)
    return Status::FailedPrecondition("update to version " + std::to_string(update.new_version) +
                                      " is not newer than the served " + std::to_string(current->version));
  SD_ASSIGN_OR_RETURN(std::vector<float> flat,
                      DecodeUpdate(update.encoding, current->flat, update.payload, current->flat.size()));
  const std::string checksum = WeightsChecksum(flat);
  if (checksum != update.weights_checksum)
    return Status::DataLoss("weights checksum " + checksum + " differs from the server's " + update.weights_checksum);
  SD_ASSIGN_OR_RETURN(auto served, BuildServed(update.new_version, std::move(flat)));
  serving_.Swap(served);  // the next frame uses it; frames in flight finish on the old one
  Status saved = SaveDeployed(*served);
  if (!saved.ok()) spdlog::warn("deployed model not saved: {}", saved.ToString());
  if (update_observer_) update_observer_(update, served);
  return Status::Ok();
}

uint64_t EdgeAgent::ServingVersion() const { return serving_.Current()->version; }
std::string EdgeAgent::ServingChecksum() const { return serving_.Current()->weights_checksum; }

StatusOr<std::string> EdgeAgent::EncodeFrame(const Frame& frame, double video_time_s, const StudentOutput& out,
                                             uint64_t version, const PrivacyApplied* masked) const {
  const SampledBudget budget{budget_->Requested(), BudgetReasonName(budget_->reason())};
  if (masked != nullptr || !privacy_)
    return EncodeSampledFrame(frame.bgr, frame.index, video_time_s, out, version, config_.Upload(), budget, masked);
  // Masked on a copy: the frame itself is the student's and the detections file's.
  cv::Mat image = frame.bgr.clone();
  SD_ASSIGN_OR_RETURN(const PrivacyApplied applied, privacy_->Apply(&image));
  return EncodeSampledFrame(image, frame.index, video_time_s, out, version, config_.Upload(), budget, &applied);
}

Status EdgeAgent::SpoolFrame(std::string encoded) {
  // Serialized once, by EncodeFrame: the sequence is appended to those bytes, not parsed in.
  const uint64_t sequence = spool_->NextSequence();
  SetFrameSequence(sequence, &encoded);
  const Status pushed = spool_->Push(sequence, encoded);
  if (!pushed.ok()) {
    if (pushed.code() == Status::Code::kInvalidArgument || pushed.code() == Status::Code::kAlreadyExists)
      return pushed;  // this frame's fault
    // The spool cannot grow (disk full or failing): the frame is lost to training, detection
    // goes on. The spool has logged why (rate-limited); Push tries again with the next frame.
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.spool_failures;
    return Status::Ok();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.queried;
  }
  uplink_->NotifyFrameQueued();
  return Status::Ok();
}

Status EdgeAgent::ProcessFrame(const Frame& frame, double video_time_s) {
  auto served = serving_.Current();  // one version for the whole frame, whatever swaps meanwhile
  // privacy.student_sees: masked: the student, the detections file and the upload all get the
  // masked frame, masked once here.
  Frame masked_frame;
  std::optional<PrivacyApplied> masked;
  if (privacy_ && config_.privacy.student_sees_masked) {
    masked_frame.bgr = frame.bgr.clone();
    masked_frame.index = frame.index;
    masked_frame.capture_time_s = frame.capture_time_s;
    SD_ASSIGN_OR_RETURN(masked, privacy_->Apply(&masked_frame.bgr));
  }
  const Frame& seen = masked ? masked_frame : frame;
  const auto t0 = std::chrono::steady_clock::now();
  SD_ASSIGN_OR_RETURN(StudentOutput out, served->detector->Detect(seen.bgr));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  inference_seconds_->Observe(ms / 1000);
  // Ignore zones drop their detections before anything sees them: the output, the sampler and
  // the image score sent with the frame.
  ZoneTags zone_tags;
  if (!config_.zones.empty()) {
    CheckZonesFit(seen.bgr.size());
    ApplyZones(config_.zones, seen.bgr.size(), &out.detections, &zone_tags);
  }
  const ZoneTags* zones = config_.zones.empty() ? nullptr : &zone_tags;
  SD_RETURN_IF_ERROR(sink_->Write(frame.index, video_time_s, served->version, out.detections, &seen.bgr, zones));
  if (tracker_) SD_RETURN_IF_ERROR(TrackObjects(frame.index, video_time_s, served->version, out.detections, zones));
  FrameFeatures features;
  features.index = frame.index;
  features.time_s = video_time_s;
  features.detections = &out.detections;
  features.embedding = &out.embedding;
  features.model_from_server = served->version > 0;
  // The budget moves apart from the strategy: a changed scene raises it at once, and the
  // sampler runs under whatever it is now.
  if (scene_ && scene_->Observe(frame.bgr, video_time_s)) budget_->OnSceneChange();
  const double per_minute = budget_->Effective();
  if (per_minute != sampler_budget_) {
    sampler_->SetBudgetPerMinute(per_minute);
    sampler_budget_ = per_minute;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.student_ms += (ms - stats_.student_ms) / (++stats_.detected);
  }
  // The frame is encoded only when the sampler takes or holds it; a held frame whose encoding
  // failed then goes missing at release.
  std::vector<std::string> send;
  Status result = feeder_->Offer(
      features, [&] { return EncodeFrame(seen, video_time_s, out, served->version, masked ? &*masked : nullptr); },
      &send);
  for (std::string& encoded : send) {
    Status spooled = SpoolFrame(std::move(encoded));
    if (!spooled.ok() && result.ok()) result = spooled;
  }
  return result;
}

Status EdgeAgent::TrackObjects(int64_t frame_index, double video_time_s, uint64_t version,
                               const Detections& detections, const ZoneTags* zones) {
  last_frame_index_ = frame_index;
  last_video_time_s_ = video_time_s;
  tracker_->Observe(frame_index, video_time_s, version, detections, zones, &events_);
  return EmitEvents();
}

Status EdgeAgent::EmitEvents() {
  // The file's line and the MQTT payload are one text, so a consumer can match them by `seq`.
  Status result;
  for (const ObjectEvent& event : events_) {
    const uint64_t seq = event_sequence_->Next();
    std::string line = ObjectEventJsonLine(event, seq, config_.uplink.device_id);
    Status written = sink_->WriteLine(line);
    if (!written.ok() && result.ok()) result = written;
    mqtt_->Enqueue(seq, std::move(line));  // published even when the file failed
  }
  events_.clear();
  return result;
}

void EdgeAgent::CheckZonesFit(cv::Size frame) {
  if (frame == zones_checked_for_) return;
  zones_checked_for_ = frame;
  for (size_t i = 0; i < config_.zones.size(); ++i) {
    const Status fits = config_.zones[i].polygon.Fits(frame);
    if (!fits.ok())
      spdlog::warn("zones[{}] '{}': {}; matched as given, so part of it matches nothing", i, config_.zones[i].name,
                   fits.message());
  }
}

Status EdgeAgent::Run() {
  start_time_ = clock_->NowSeconds();
  uplink_->Start();
  if (mqtt_) mqtt_->Start();
  const bool timed_source = source_->frame_count() >= 0 && source_->fps() > 0;
  Status result;
  Frame frame;
  while (!stopping_) {
    auto got = source_->Next(&frame);
    if (!got.ok()) {
      result = got.status();
      break;
    }
    if (!*got) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.frames;
    }
    if (frame.index % config_.detect_every != 0) continue;
    // Budgets are per minute of video: a file replayed faster than real time is sampled as
    // if it were live.
    const double video_time = timed_source ? frame.index / source_->fps() : frame.capture_time_s;
    Status processed = ProcessFrame(frame, video_time);
    if (processed.ok()) {
      frame_log_.Succeeded();
    } else {
      frame_log_.Failed(processed.WithContext("frame " + std::to_string(frame.index)));
    }
  }
  // The objects still in view end with the run, so that every `new` has its `end`.
  if (tracker_) {
    tracker_->EndAll(last_frame_index_, last_video_time_s_, &events_);
    Status emitted = EmitEvents();
    if (!emitted.ok()) frame_log_.Failed(emitted);
  }
  // Linger: let the uplink deliver what is spooled and receive updates.
  const double linger_until = clock_->NowSeconds() + config_.linger_s;
  while (!stopping_ && clock_->NowSeconds() < linger_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  uplink_->Stop();
  if (mqtt_) mqtt_->Stop();  // delivers what is queued for up to mqtt.drain_s
  if (!result.ok()) spdlog::error("frame source: {}", result.ToString());
  return result;
}

void EdgeAgent::Stop() {
  stopping_ = true;
  if (reopening_) reopening_->Interrupt();  // a back-off wait ends now
}

EdgeStats EdgeAgent::stats() const {
  EdgeStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
  }
  s.uplink = uplink_ ? uplink_->stats() : UplinkStats();
  if (mqtt_) s.mqtt = mqtt_->stats();
  s.model_version = serving_.Current()->version;
  if (reopening_) s.source = reopening_->health();
  if (budget_) {
    s.budget_mode = BudgetModeName(config_.Budget().mode);
    s.budget_per_minute = budget_->Effective();
    s.budget_reason = BudgetReasonName(budget_->reason());
  }
  const double start = start_time_;
  s.elapsed_s = start > 0 ? clock_->NowSeconds() - start : 0;
  return s;
}

}  // namespace sd
