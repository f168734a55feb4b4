#include "server/server_core.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include <spdlog/spdlog.h>

#include "common/base/clock.h"
#include "common/base/log_safe.h"
#include "common/link/update_codec.h"

namespace sd {
namespace {

void LogAdminAction(const std::string& who, const std::string& what, const Status& outcome) {
  if (outcome.ok()) {
    spdlog::info("admin action by {}: {}: done", who, what);
  } else {
    spdlog::warn("admin action by {}: {}: failed: {}", who, what, outcome.ToString());
  }
}

// grouping.start together: the devices of server.yaml as one group ("all") to split from.
ServerConfig WithStartGroup(ServerConfig config) {
  const GroupingOptions& g = config.grouping;
  if (!g.automatic || !g.start_together || !config.groups.empty() || config.device_tokens.size() < 2) return config;
  std::vector<std::string>& all = config.groups["all"];
  for (const auto& [id, token] : config.device_tokens) all.push_back(id);
  return config;
}

}  // namespace

ServerCore::ServerCore(const ServerConfig& config) : config_(WithStartGroup(config)) {}

ServerCore::~ServerCore() {
  BeginShutdown();
  // Every thread ends before any part goes: the watcher reloads devices (which join the pool),
  // the workers find devices and publish, the labellers' callbacks find devices, store frames
  // and tell the pool.
  if (registry_) registry_->JoinWatcher();
  if (pool_) pool_->JoinWorkers();
  labeler_.reset();  // finishes the labelling jobs
}

void ServerCore::BeginShutdown() {
  stopping_ = true;
  if (cluster_) cluster_->StopKeeper();  // its events reach the registry and the pool
  if (pool_) pool_->BeginShutdown();            // workers see the shutdown before the gate drops a round
  if (publisher_) publisher_->BeginShutdown();  // waits out a version being stored
  if (registry_) registry_->BeginShutdown();
}

StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerConfig& config, TeacherFactory teachers) {
  std::unique_ptr<ServerCore> core(new ServerCore(config));
  SD_RETURN_IF_ERROR(core->Init(std::move(teachers)));
  return core;
}

Status ServerCore::Init(TeacherFactory teachers) {
  if (config_.storage.backend == StorageBackend::kPostgres) {
    SD_ASSIGN_OR_RETURN(cluster_, ClusterBackend::Open(config_));
    SD_ASSIGN_OR_RETURN(std::unique_ptr<PgFrameStore> pg_store, cluster_->MakeFrameStore(config_.env));
    pg_store_ = pg_store.get();
    store_ = std::move(pg_store);
  } else {
    SD_ASSIGN_OR_RETURN(store_, FrameStore::Open(config_.storage_dir, config_.env));
  }
  if (teachers) {
    SD_ASSIGN_OR_RETURN(labeler_, LabelerPool::Create(std::move(teachers), config_.labeler_workers, config_.labeler_queue));
  } else {
    SD_ASSIGN_OR_RETURN(labeler_, LabelerPool::Create(config_.teacher, config_.labeler_workers, config_.labeler_queue));
  }
  labeler_->SetMaxQueueSeconds(config_.labeler_max_queue_seconds);
  budget_ = std::make_unique<LabelBudget>(config_.label_budget);
  // After the teachers: a teacher's own thread setting is process-wide and must not leave
  // training on fewer threads than configured. (Each worker sets its own again: libtorch's
  // OpenMP thread count is per calling thread, and new threads start from this one.)
  SetTorchThreads(config_.threads_per_worker);
  SD_ASSIGN_OR_RETURN(auto layout_model, StudentModel::Create(config_.student, 0));
  if (!config_.init_weights.empty()) {  // checked now, not at the first device's first frame
    SD_ASSIGN_OR_RETURN(auto init, StudentModel::LoadFromFile(config_.init_weights));
    if (init->architecture().Fingerprint() != config_.student.Fingerprint())
      return Status::InvalidArgument(config_.init_weights + ": weights are for '" + init->architecture().Fingerprint() +
                                     "', the server trains '" + config_.student.Fingerprint() + "'");
  }
  // Before any device is made: a pinned or paused device starts so.
  if (cluster_) {
    SD_ASSIGN_OR_RETURN(std::unique_ptr<PgAdminStore> admin, cluster_->MakeAdminStore());
    pg_admin_ = admin.get();
    admin_ = std::move(admin);
  } else {
    SD_ASSIGN_OR_RETURN(admin_, FileAdminStore::Open(config_.env, config_.storage_dir));
  }
  publisher_ = std::make_unique<Publisher>(config_, store_.get());
  // The pool and the intake find devices in the registry, made below: by then it exists.
  auto find_device = [this](const std::string& id) { return registry_->Find(id); };
  TrainingPool::Deps pool;
  pool.config = &config_;
  pool.store = store_.get();
  pool.publisher = publisher_.get();
  pool.admin = admin_.get();
  pool.metrics = &metrics_;
  pool.find_device = find_device;
  pool.device_ids = [this] { return registry_->Ids(); };
  if (cluster_) {
    pool.served_here = [this](const std::string& id) { return cluster_->leases().Held(id) > 0; };
    pool.round_queue = &cluster_->rounds();
    pool.claimed_versions = pg_store_;
    pool.stored_elsewhere = [this](const std::string& id) { DeliverStoredVersion(id); };
  }
  pool_ = std::make_unique<TrainingPool>(std::move(pool), layout_model->TensorSizes());
  FrameIntake::Deps intake;
  intake.config = &config_;
  intake.store = store_.get();
  intake.labeler = labeler_.get();
  intake.pool = pool_.get();
  intake.metrics = &metrics_;
  intake.find_device = find_device;
  intake_ = std::make_unique<FrameIntake>(std::move(intake));
  // Bounds hold after a restart too, and before any stream adds to them.
  for (const std::string& id : store_->Devices()) intake_->Prune(id, /*at_start=*/true);
  // Every configured device is made now, its checkpoint read and its trainer built, so no
  // stream thread ever waits for that.
  DeviceRegistry::Options devices;
  devices.inline_tokens = config_.device_tokens;
  if (cluster_) {
    devices.source = cluster_->MakeEnrolmentSource();
    devices.poll_s = 1;  // one cheap query: devices enrolled through any replica arrive within a second
  } else if (!config_.devices_file.empty()) {
    devices.source = DevicesFileSource(config_.env, config_.devices_file);
    devices.poll_s = config_.devices_file_poll_s;
  }
  SD_ASSIGN_OR_RETURN(registry_, DeviceRegistry::Create(std::move(devices), [this](const std::string& id) {
                        return CreateDevice(id);
                      }));
  RegisterMetricCallbacks();
  SD_RETURN_IF_ERROR(metrics_.registry.status());
  registry_->StartWatching();
  if (cluster_) {
    ClusterBackend::Events events;
    events.lease_lost = [this](const std::string& id) { OnLeaseLost(id); };
    events.admin_changed = [this](const std::string& id) { ApplyAdminState(id); };
    cluster_->StartKeeper(pg_admin_, std::move(events));
  }
  pool_->StartWorkers();
  return Status::Ok();
}

StatusOr<std::unique_ptr<Device>> ServerCore::CreateDevice(const std::string& device_id) {
  auto device = std::make_unique<Device>(
      device_id, TokenBucket::WithRefillPeriod(config_.limits.full_model_refill_s, config_.limits.full_model_burst));
  SD_ASSIGN_OR_RETURN(std::shared_ptr<TrainingUnit> unit, pool_->Join(device_id));
  const DeviceTrainer& trainer = *unit->trainer;
  const uint64_t version = trainer.version();
  std::shared_ptr<const ModelUpdate> latest;
  if (version > 0) {
    SD_ASSIGN_OR_RETURN(auto full, publisher_->EncodeFull(device_id, version, trainer.flat_weights()));
    auto mutable_update = std::make_shared<ModelUpdate>(*full);
    mutable_update->val_map50 = unit->resumed_map50;
    latest = mutable_update;
    // A restart (or a device enrolled again) shows each device's state in the log at once.
    spdlog::info("device {}: resuming at version {} ({} training, {} validation frames stored)", device_id, version,
                 store_->Count(device_id, false), store_->Count(device_id, true));
  }
  const AdminState admin = admin_->Get(device_id);
  std::shared_ptr<const ModelUpdate> pinned;
  if (admin.pinned_version > 0) {
    auto pinned_update = publisher_->PinnedUpdate(device_id, admin.pinned_version);
    if (!pinned_update.ok())
      return pinned_update.status().WithContext("device " + LogSafe(device_id) + ": its pinned version (" +
                                                config_.storage_dir + "/admin_state.json)");
    pinned = *pinned_update;
    spdlog::info("device {}: pinned to version {} by an admin", device_id, admin.pinned_version);
  }
  {
    MutexLock lock(&device->mu);
    device->full_model_sends.Reset(SteadySeconds());
    device->latest_full = latest;
    device->pinned_full = pinned;
  }
  if (cluster_) pool_->RefreshPaused(device_id);  // not served here until its stream comes
  if (admin.paused) {
    if (!cluster_) pool_->RefreshPaused(device_id);
    spdlog::info("device {}: training paused by an admin ({})", device_id, unit->label);
  }
  return device;
}

Status ServerCore::AttachSession(const std::string& device_id, const std::string& token,
                                 const std::string& architecture, std::shared_ptr<DeviceSession> session) {
  const bool same_student = architecture == config_.student.Fingerprint();
  uint64_t epoch = 0;
  std::function<Status()> take_lease;
  if (cluster_) take_lease = [&]() -> Status {
      SD_ASSIGN_OR_RETURN(epoch, cluster_->leases().Acquire(device_id));
      return Status::Ok();
    };
  const DeviceSession* attached = session.get();
  SD_RETURN_IF_ERROR(registry_->Attach(device_id, token, same_student, std::move(session), take_lease));
  if (!same_student)
    return Status::FailedPrecondition("edge student is '" + LogSafe(architecture, 256) + "', server trains '" +
                                      config_.student.Fingerprint() + "'");
  if (cluster_) {
    {
      MutexLock lock(&epochs_mu_);
      session_epochs_[attached] = epoch;
    }
    // Until this stream's hello is heard, what the edge runs is unknown here: a version
    // another replica trained is then left to the welcome (Publisher::Deliver).
    if (auto device = registry_->Find(device_id); device.ok()) {
      MutexLock lock(&(*device)->mu);
      (*device)->counters.served_version = -1;
    }
    SD_RETURN_IF_ERROR(AdoptDevice(device_id).WithContext("device " + device_id + ": taking it over"));
  }
  return Status::Ok();
}

void ServerCore::DetachSession(const std::string& device_id, const DeviceSession* session) {
  const bool was_live = registry_->Detach(device_id, session);
  if (!cluster_) return;
  uint64_t epoch = 0;
  {
    MutexLock lock(&epochs_mu_);
    auto it = session_epochs_.find(session);
    if (it == session_epochs_.end()) return;
    epoch = it->second;
    session_epochs_.erase(it);
  }
  if (!was_live) return;  // a newer stream of the device holds the lease now
  cluster_->leases().Release(device_id, epoch);
  pool_->RefreshPaused(device_id);
}

Status ServerCore::AdoptDevice(const std::string& device_id) {
  SD_ASSIGN_OR_RETURN(Device * device, registry_->Find(device_id));
  SD_RETURN_IF_ERROR(pool_->CatchUp(device_id).status());
  // Its unit may be newer than the model this replica last had for it: caught up just now,
  // or (a group) by another member's catch-up while this device was served elsewhere.
  if (UnitIsAhead(device_id, LatestFullVersion(*device))) {
    SD_ASSIGN_OR_RETURN(std::shared_ptr<ModelUpdate> latest, CaughtUpFullModel(device_id));
    MutexLock lock(&device->mu);
    device->latest_full = std::move(latest);
  }
  ApplyAdminState(device_id);  // also lets its unit train here
  return Status::Ok();
}

bool ServerCore::UnitIsAhead(const std::string& device_id, uint64_t version) const {
  const std::shared_ptr<TrainingUnit> unit = pool_->UnitOf(device_id);
  return unit && unit->trainer->version() > version;
}

uint64_t ServerCore::LatestFullVersion(Device& device) {
  MutexLock lock(&device.mu);
  return device.latest_full ? device.latest_full->new_version : 0;
}

void ServerCore::OnLeaseLost(const std::string& device_id) {
  pool_->RefreshPaused(device_id);
  auto device = registry_->Find(device_id);
  if (!device.ok()) return;
  if (std::shared_ptr<DeviceSession> session = (*device)->Session())
    session->End(Status::Unavailable("device " + device_id + " is served by another replica now: reconnect"));
}

StatusOr<std::shared_ptr<ModelUpdate>> ServerCore::CaughtUpFullModel(const std::string& device_id) {
  const std::shared_ptr<TrainingUnit> unit = pool_->UnitOf(device_id);
  const DeviceTrainer& trainer = *unit->trainer;
  SD_ASSIGN_OR_RETURN(auto encoded, publisher_->EncodeFull(device_id, trainer.version(), trainer.flat_weights()));
  auto full = std::make_shared<ModelUpdate>(*encoded);
  full->val_map50 = unit->resumed_map50;
  return full;
}

void ServerCore::DeliverStoredVersion(const std::string& device_id) {
  Status caught_up = pool_->CatchUp(device_id).status();
  if (!caught_up.ok()) {
    spdlog::warn("device {}: {}", device_id, caught_up.ToString());
    return;
  }
  const std::shared_ptr<TrainingUnit> unit = pool_->UnitOf(device_id);
  if (!unit) return;
  // A group's version was stored for every member: each one served here gets it.
  for (const std::string& member : unit->members) {
    if (cluster_->leases().Held(member) == 0) continue;
    Status delivered = DeliverCaughtUpVersion(member);
    if (!delivered.ok()) spdlog::warn("device {}: {}", member, delivered.ToString());
  }
}

Status ServerCore::DeliverCaughtUpVersion(const std::string& device_id) {
  SD_ASSIGN_OR_RETURN(Device * device, registry_->Find(device_id));
  const uint64_t previous = LatestFullVersion(*device);  // what this replica sent the edge last
  // Checked before encoding: a group's member caught up by another member's call, or given
  // the version by its stream's attach, needs nothing.
  if (!UnitIsAhead(device_id, previous)) return Status::Ok();
  SD_ASSIGN_OR_RETURN(std::shared_ptr<const ModelUpdate> full, CaughtUpFullModel(device_id));
  const uint64_t version = full->new_version;
  std::shared_ptr<const ModelUpdate> live = full;
  // The round's own update, as PublishRound would send it, when the edge can apply it: a full
  // model in the device's policy (fp16: smaller), or a delta from the version this replica
  // sent it.
  SD_ASSIGN_OR_RETURN(const VersionRecord record, store_->LatestVersion(device_id));
  auto encoding = ParseUpdateEncoding(record.encoding);
  if (record.version == version && encoding.ok() &&
      (IsFullEncoding(*encoding) || (previous > 0 && record.base_version == previous && previous + 1 == version))) {
    if (auto payload = pg_store_->LoadUpdatePayload(device_id, version); payload.ok()) {
      auto update = std::make_shared<ModelUpdate>(*full);
      update->base_version = IsFullEncoding(*encoding) ? 0 : previous;
      update->encoding = *encoding;
      update->payload = *std::move(payload);
      live = std::move(update);
    }
  }
  spdlog::info("device {}: version {} (stored by a claimed round) sent as {} of {} bytes", device_id, version,
               UpdateEncodingName(live->encoding), live->payload.size());
  publisher_->Deliver(*device, live, full);
  return Status::Ok();
}

void ServerCore::ApplyAdminState(const std::string& device_id) {
  pool_->RefreshPaused(device_id);
  auto device = registry_->Find(device_id);
  if (!device.ok()) return;
  const AdminState admin = admin_->Get(device_id);
  std::shared_ptr<const ModelUpdate> pinned;
  if (admin.pinned_version > 0) {
    auto update = publisher_->PinnedUpdate(device_id, admin.pinned_version);
    if (!update.ok()) {
      spdlog::error("device {}: its pin to version {} cannot be applied: {}", device_id, admin.pinned_version,
                    update.status().ToString());
      return;
    }
    pinned = *update;
  }
  MutexLock sending(&(*device)->send_mu);  // ordered against a publish, as an admin action here is
  std::shared_ptr<DeviceSession> session;
  std::shared_ptr<const ModelUpdate> send;
  {
    MutexLock lock(&(*device)->mu);
    const uint64_t was = (*device)->pinned_full ? (*device)->pinned_full->new_version : 0;
    if (was == admin.pinned_version) return;
    (*device)->pinned_full = pinned;
    session = (*device)->session.lock();
    send = pinned ? pinned : (*device)->latest_full;
  }
  spdlog::info("device {}: {} by an admin on another replica", device_id,
               pinned ? "pinned to version " + std::to_string(admin.pinned_version) : std::string("unpinned"));
  if (session && send) session->OnUpdate(send, send);
}

bool ServerCore::AllowFullModelSend(const std::string& device_id) {
  auto device = registry_->Find(device_id);
  if (!device.ok()) return false;
  MutexLock lock(&(*device)->mu);
  return (*device)->full_model_sends.TryTake(SteadySeconds());
}

bool ServerCore::TrySubmitFrame(const std::string& device_id, const FrameRecord& meta,
                                std::shared_ptr<const std::string> jpeg, std::function<void(FrameOutcome)> done) {
  if (stopping_) return false;
  return intake_->TrySubmit(device_id, meta, std::move(jpeg), std::move(done));
}

bool ServerCore::WaitForLabelQueueSpace(std::function<void()> fn) { return labeler_->WaitForSpace(std::move(fn)); }

FrameBudgetAnswer ServerCore::AnswerFrameBudget(const std::string& device_id, const FrameBudgetAsk& ask,
                                                const FrameOutcome& outcome) {
  FrameBudgetAnswer answer;
  // Scored on newly stored frames only: a duplicate was scored when it was first stored.
  if (outcome.status.ok() && !outcome.duplicate && outcome.image_width > 0)
    answer.student_agreement = StudentAgreement(ask.student, outcome.labels, outcome.image_width, outcome.image_height);
  LabelCapacity capacity;
  capacity.workers = labeler_->workers();
  capacity.seconds_per_frame = labeler_->seconds_per_job();
  capacity.queued_seconds = labeler_->queued_seconds();
  capacity.max_queue_seconds = labeler_->max_queue_seconds();
  // The waiting term of a benefit grows without bound; past a few it says "long" and no more.
  auto benefit = [this](const std::string& id) { return std::min(4.0, pool_->Benefit(id)); };
  answer.budget_per_minute = budget_->OnFrame(device_id, ask.requested, ask.reason, answer.student_agreement,
                                              capacity, benefit, SteadySeconds());
  return answer;
}

uint64_t ServerCore::LastStoredSequence(const std::string& device_id) const {
  return store_->LastSequence(device_id);
}

StatusOr<std::shared_ptr<const ModelUpdate>> ServerCore::LatestUpdate(const std::string& device_id) {
  SD_ASSIGN_OR_RETURN(Device * device, registry_->Find(device_id));
  return device->CurrentModel();
}

StatusOr<std::optional<RoundResult>> ServerCore::RunScheduledRound() { return pool_->RunScheduledRound(); }

StatusOr<RoundResult> ServerCore::RunRound(const std::string& device_id, int iterations) {
  SD_RETURN_IF_ERROR(registry_->Find(device_id).status());
  return pool_->RunRound(device_id, iterations);
}

Status ServerCore::Regroup() { return pool_->Regroup(); }

Status ServerCore::ReloadDevices() { return registry_->Reload(); }

Status ServerCore::Pin(const std::string& device_id, uint64_t version, const std::string& who) {
  const std::string what = "pin device " + LogSafe(device_id) + " to version " + std::to_string(version);
  MutexLock admin(&admin_mu_);
  auto device = registry_->Find(device_id);
  StatusOr<std::shared_ptr<const ModelUpdate>> pinned =
      device.ok() ? publisher_->PinnedUpdate(device_id, version) : device.status();
  if (!pinned.ok()) {
    admin.Unlock();
    LogAdminAction(who, what, pinned.status());
    return pinned.status();
  }
  // Held until the pinned version is queued on the stream: a round published meanwhile reaches
  // the stream before it, never after.
  MutexLock sending(&(*device)->send_mu);
  const Status saved = admin_->Update(device_id, [version](AdminState& s) { s.pinned_version = version; });
  std::shared_ptr<DeviceSession> session;
  if (saved.ok()) {
    MutexLock lock(&(*device)->mu);
    (*device)->pinned_full = *pinned;
    session = (*device)->session.lock();
  }
  admin.Unlock();
  LogAdminAction(who, what, saved);
  if (session) session->OnUpdate(*pinned, *pinned);  // no lock held but send_mu: it writes to the stream
  return saved;
}

StatusOr<uint64_t> ServerCore::Rollback(const std::string& device_id, const std::string& who) {
  StatusOr<uint64_t> target = [&]() -> StatusOr<uint64_t> {
    SD_ASSIGN_OR_RETURN(Device * device, registry_->Find(device_id));
    uint64_t from = 0;
    if (const int64_t served = device->Counters().served_version; served > 0) {
      from = static_cast<uint64_t>(served);
    } else {
      SD_ASSIGN_OR_RETURN(VersionRecord newest, store_->LatestVersion(device_id));
      from = newest.version;
    }
    SD_ASSIGN_OR_RETURN(auto versions, store_->Versions(device_id, INT_MAX));
    uint64_t before = 0;
    for (const VersionRecord& v : versions)
      if (v.version < from) before = std::max(before, v.version);
    if (before == 0)
      return Status::FailedPrecondition("device " + LogSafe(device_id) + " serves version " + std::to_string(from) +
                                        "; no earlier version is stored");
    return before;
  }();
  if (!target.ok()) {
    LogAdminAction(who, "roll back device " + LogSafe(device_id), target.status());
    return target.status();
  }
  SD_RETURN_IF_ERROR(Pin(device_id, *target, who));
  return *target;
}

Status ServerCore::Unpin(const std::string& device_id, const std::string& who) {
  const std::string what = "unpin device " + LogSafe(device_id);
  MutexLock admin(&admin_mu_);
  auto device = registry_->Find(device_id);
  if (!device.ok()) {
    admin.Unlock();
    LogAdminAction(who, what, device.status());
    return device.status();
  }
  MutexLock sending(&(*device)->send_mu);  // held until the newest version is queued on the stream
  uint64_t was_pinned = 0;
  const Status saved = admin_->Update(device_id, [&was_pinned](AdminState& s) {
    was_pinned = s.pinned_version;
    s.pinned_version = 0;
  });
  std::shared_ptr<DeviceSession> session;
  std::shared_ptr<const ModelUpdate> newest;
  if (saved.ok()) {
    MutexLock lock(&(*device)->mu);
    (*device)->pinned_full = nullptr;
    session = (*device)->session.lock();
    newest = (*device)->latest_full;
  }
  admin.Unlock();
  LogAdminAction(who, what, saved);
  // A pinned device runs the pinned version: only a newer one is worth sending (the edge
  // refuses one that is not newer); an unpinned one has the newest already.
  if (session && newest && was_pinned > 0 && newest->new_version > was_pinned) session->OnUpdate(newest, newest);
  return saved;
}

Status ServerCore::SetPaused(const std::string& device_id, bool paused, const std::string& who) {
  Status outcome = [&]() -> Status {
    MutexLock lock(&admin_mu_);
    SD_RETURN_IF_ERROR(registry_->Find(device_id).status());
    SD_RETURN_IF_ERROR(admin_->Update(device_id, [paused](AdminState& s) { s.paused = paused; }));
    pool_->RefreshPaused(device_id);
    return Status::Ok();
  }();
  LogAdminAction(who, (paused ? "pause training of device " : "resume training of device ") + LogSafe(device_id),
                 outcome);
  return outcome;
}

Status ServerCore::RequestRound(const std::string& device_id, const std::string& who) {
  Status outcome = [&]() -> Status {
    MutexLock lock(&admin_mu_);
    SD_RETURN_IF_ERROR(registry_->Find(device_id).status());
    return pool_->RequestRound(device_id);
  }();
  LogAdminAction(who, "train device " + LogSafe(device_id) + " now", outcome);
  return outcome;
}

void ServerCore::CountBytes(const std::string& device_id, int64_t in, int64_t out) {
  if (auto device = registry_->Find(device_id); device.ok()) (*device)->CountBytes(in, out);
}

void ServerCore::CountRejectedFrame(const std::string& device_id) {
  auto device = registry_->Find(device_id);
  if (!device.ok()) return;
  metrics_.frames_rejected.With({device_id, "invalid"}).Inc();
  MutexLock lock(&(*device)->mu);
  ++(*device)->counters.frames_rejected;
}

DeviceCounters ServerCore::Counters(const std::string& device_id) const {
  auto device = registry_->Find(device_id);
  return device.ok() ? (*device)->Counters() : DeviceCounters();
}

void ServerCore::SetServedVersion(const std::string& device_id, uint64_t version) {
  metrics_.served_version.With({device_id}).Set(version);
  auto device = registry_->Find(device_id);
  if (!device.ok()) return;
  MutexLock lock(&(*device)->mu);
  (*device)->counters.served_version = static_cast<int64_t>(version);
}

std::vector<std::string> ServerCore::DeviceIds() const { return registry_->Ids(); }

StatusOr<DeviceState> ServerCore::State(const std::string& device_id) const {
  SD_ASSIGN_OR_RETURN(Device * device, registry_->Find(device_id));
  DeviceState state;
  state.id = device_id;
  state.enabled = registry_->Enabled(device_id);
  state.counters = device->Counters();
  state.admin = admin_->Get(device_id);
  if (std::shared_ptr<TrainingUnit> unit = pool_->UnitOf(device_id)) {
    state.version = unit->trainer->version();
    state.group = unit->group;
  }
  MutexLock lock(&device->mu);
  state.connected = !device->session.expired();
  state.rounds.assign(device->rounds.begin(), device->rounds.end());
  return state;
}

void ServerCore::RegisterMetricCallbacks() {
  using Type = MetricsRegistry::Type;
  MetricsRegistry& registry = metrics_.registry;
  // One series per device of the current set (removed ones included: their numbers stay).
  auto per_device = [this](std::function<double(Device&)> value) {
    return [this, value = std::move(value)](const MetricsRegistry::Emit& emit) {
      for (Device* device : registry_->All()) emit({device->id}, value(*device));
    };
  };
  registry.AddCallback(Type::kCounter, "streamdistill_server_received_bytes_total",
                       "Bytes of gRPC messages from the device, with their 5-byte framing.", {"device"},
                       per_device([](Device& d) { return static_cast<double>(d.bytes_in); }));
  registry.AddCallback(Type::kCounter, "streamdistill_server_sent_bytes_total",
                       "Bytes of gRPC messages to the device (acks, model updates), with their 5-byte framing.",
                       {"device"}, per_device([](Device& d) { return static_cast<double>(d.bytes_out); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_version",
                       "The device's newest published model version (0: none yet).", {"device"},
                       per_device([this](Device& d) {
                         std::shared_ptr<TrainingUnit> unit = pool_->UnitOf(d.id);
                         return unit ? static_cast<double>(unit->trainer->version()) : 0.0;
                       }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_pinned_version",
                       "The version an admin pinned the device to (0: not pinned).", {"device"},
                       per_device([this](Device& d) { return static_cast<double>(admin_->Get(d.id).pinned_version); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_paused",
                       "1 while an admin has paused the device's training, else 0.", {"device"},
                       per_device([this](Device& d) { return admin_->Get(d.id).paused ? 1.0 : 0.0; }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_stream_connected",
                       "1 while the device has an authenticated stream open, else 0.", {"device"},
                       per_device([](Device& d) { return d.Session() ? 1.0 : 0.0; }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_stored_frames",
                       "Frames the store holds for the device (training and held-out).", {"device"},
                       per_device([this](Device& d) { return static_cast<double>(store_->Usage(d.id).frames); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_stored_bytes",
                       "Bytes of the device's stored frame images.", {"device"},
                       per_device([this](Device& d) { return static_cast<double>(store_->Usage(d.id).bytes); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_labeler_queue_depth",
                       "Frames waiting for a labeller (not counting those being labelled).", {},
                       [this](const MetricsRegistry::Emit& emit) { emit({}, labeler_->queued()); });
  registry.AddCallback(Type::kGauge, "streamdistill_server_labeler_queued_seconds",
                       "Labelling work waiting, in seconds of the labellers (bounded by labeler.max_queue_seconds).",
                       {}, [this](const MetricsRegistry::Emit& emit) { emit({}, labeler_->queued_seconds()); });
  registry.AddCallback(Type::kGauge, "streamdistill_server_labeler_seconds_per_frame",
                       "Measured seconds of a labeller per frame (labelling and storing), smoothed.", {},
                       [this](const MetricsRegistry::Emit& emit) { emit({}, labeler_->seconds_per_job()); });
  registry.AddCallback(Type::kCounter, "streamdistill_server_labeler_busy_seconds_total",
                       "Seconds the labellers spent on frames (busy share: its rate / labeler.workers).", {},
                       [this](const MetricsRegistry::Emit& emit) { emit({}, labeler_->busy_seconds()); });
  registry.AddCallback(Type::kGauge, "streamdistill_server_labeler_capacity_per_minute",
                       "Frames a minute the server hands out among edges (labeler.target_utilisation of the measured "
                       "capacity, less while frames queue).",
                       {}, [this](const MetricsRegistry::Emit& emit) { emit({}, budget_->capacity_per_minute()); });
  // Each camera's budget: what its edge asks for and why, what it is told, its agreement.
  auto per_camera = [this](std::function<double(const CameraBudget&)> value) {
    return [this, value = std::move(value)](const MetricsRegistry::Emit& emit) {
      for (const auto& [id, camera] : budget_->Cameras()) emit({id}, value(camera));
    };
  };
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_budget_requested_per_minute",
                       "Frames a minute the device's edge asks for (its adaptive budget; 0: not said).", {"device"},
                       per_camera([](const CameraBudget& c) { return c.requested; }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_budget_per_minute",
                       "Frames a minute the server told the device it can label for it (0: nothing told).",
                       {"device"}, per_camera([](const CameraBudget& c) { return c.granted; }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_student_agreement",
                       "The student's detections against the teacher's labels of the device's frames, smoothed "
                       "(-1: unknown).",
                       {"device"}, per_camera([](const CameraBudget& c) { return c.agreement; }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_budget_reason",
                       "1 for the reason the device's edge gave for its budget (start, agreement, agreement_fell, "
                       "scene_change, server).",
                       {"device", "reason"}, [this](const MetricsRegistry::Emit& emit) {
                         for (const auto& [id, camera] : budget_->Cameras())
                           if (!camera.reason.empty()) emit({id, camera.reason}, 1);
                       });
  // The training units' decoded frames (training.decoded_cache_mb).
  auto decoded = [this](std::function<double(const DecodedFrameCache::Stats&)> value) {
    return [this, value = std::move(value)](const MetricsRegistry::Emit& emit) {
      emit({}, value(pool_->decoded_frames().stats()));
    };
  };
  registry.AddCallback(Type::kGauge, "streamdistill_server_decoded_cache_bytes",
                       "Bytes of decoded frames kept between rounds for every training unit (at most "
                       "training.decoded_cache_mb).",
                       {}, decoded([](const DecodedFrameCache::Stats& s) { return static_cast<double>(s.bytes); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_decoded_cache_images", "Decoded frames kept between rounds.",
                       {}, decoded([](const DecodedFrameCache::Stats& s) { return static_cast<double>(s.images); }));
  registry.AddCallback(Type::kCounter, "streamdistill_server_decoded_cache_hits_total",
                       "Frames a round (or a regroup) found decoded.", {},
                       decoded([](const DecodedFrameCache::Stats& s) { return static_cast<double>(s.hits); }));
  registry.AddCallback(Type::kCounter, "streamdistill_server_decoded_cache_misses_total",
                       "Frames a round (or a regroup) decoded from the store.", {},
                       decoded([](const DecodedFrameCache::Stats& s) { return static_cast<double>(s.misses); }));
  registry.AddCallback(Type::kCounter, "streamdistill_server_decoded_cache_evictions_total",
                       "Decoded frames dropped to stay within training.decoded_cache_mb (decoded again when needed).",
                       {}, decoded([](const DecodedFrameCache::Stats& s) { return static_cast<double>(s.evictions); }));
  registry.AddGauge("streamdistill_server_decoded_cache_budget_bytes", "training.decoded_cache_mb in bytes.")
      .With({})
      .Set(static_cast<double>(config_.decoded_cache_mb << 20));
  registry.AddGauge("streamdistill_server_labeler_queue_capacity",
                    "Frames the labelling queue holds before streams stop being read (labeler.queue).")
      .With({})
      .Set(config_.labeler_queue);
  // Which replica this is, for dashboards that sum over replicas (each replica is a target of
  // its own; this series names it whatever the scrape config's labels).
  registry.AddGauge("streamdistill_server_replica_info", "1, labelled with this server's replica and storage backend.",
                    {"replica", "backend"})
      .With({cluster_ ? cluster_->replica() : "single", cluster_ ? "postgres" : "sqlite"})
      .Set(1);
  if (cluster_) {
    registry.AddCallback(Type::kGauge, "streamdistill_server_device_served_here",
                         "1 while this replica holds the device's lease (serves its stream and trains it), else 0.",
                         {"device"}, per_device([this](Device& d) {
                           return cluster_->leases().Held(d.id) > 0 ? 1.0 : 0.0;
                         }));
  }
}

}  // namespace sd
