#include "server/server_core.h"

#include <sys/stat.h>

#include <chrono>
#include <climits>
#include <deque>
#include <set>

#include <nlohmann/json.hpp>

#include <opencv2/imgcodecs.hpp>
#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/base/log_safe.h"
#include "common/eval/student_eval.h"
#include "common/link/update_codec.h"
#include "server/devices_file.h"
#include "server/grouping.h"
#include "server/long_term_memory.h"
#include "server/update_encoder.h"

namespace sd {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The admin actions' state in storage_dir (ServerCore::SaveAdminStates).
constexpr char kAdminStateFile[] = "admin_state.json";

void LogAdminAction(const std::string& who, const std::string& what, const Status& outcome) {
  if (outcome.ok()) {
    spdlog::info("admin action by {}: {}: done", who, what);
  } else {
    spdlog::warn("admin action by {}: {}: failed: {}", who, what, outcome.ToString());
  }
}

// Stored frames of a device between two prunes: the prune reads all of the device's rows, so
// it runs once per this many stored frames, not per frame. Between prunes a device may hold
// this many frames more than its bounds.
constexpr int kFramesPerPrune = 16;

bool SameToken(const TokenHash& a, const TokenHash& b) { return a.salt == b.salt && a.digest == b.digest; }

// A stored frame decoded and shrunk for the student, and the factors its labels scale by.
struct CachedImage {
  cv::Mat bgr;
  float scale_x = 1, scale_y = 1;
};

}  // namespace

// What trains as one: a device alone, or the devices of a group (one student for all).
// Its members never change: automatic grouping replaces a unit rather than changing it.
struct ServerCore::TrainingUnit {
  std::string key;    // the scheduler's name for it: the device id, or "group:" + the group's
  std::string group;  // "" for a device alone
  std::string label;  // for logs: "device cam1" or "group lobby"
  std::vector<std::string> members;  // the devices whose frames it trains on and who get its versions
  // Automatic grouping: the student counts as the unit's own (and may merge with others) from
  // this version on; a split-off device's copy of its group's student does not.
  uint64_t comparable_from = 1;
  // Set with train_mu held when automatic grouping replaced the unit: its rounds are refused.
  std::atomic<bool> retired{false};
  // Only a training worker (or a test driving rounds) touches the trainer; train_mu keeps
  // two rounds of one unit from overlapping.
  std::mutex train_mu;
  std::unique_ptr<DeviceTrainer> trainer;
  // Decoded stored frames by device and sequence, shrunk for the student (guarded by train_mu).
  std::map<std::pair<std::string, uint64_t>, CachedImage> image_cache;
  double resumed_map50 = -1;  // the held-out mAP50 stored with the version it resumed at
};

struct ServerCore::Device {
  std::string id;

  // Counted by every stream for every message: atomics, no lock.
  std::atomic<int64_t> bytes_in{0}, bytes_out{0};
  std::atomic<double> first_contact_s{0};

  // Orders the updates sent to the device's stream by a publish, a pin and an unpin, so that
  // a round published as an admin pins cannot reach the edge after the pinned version. Taken
  // with no core lock held but admin_mu_; mu and the stream's own mutexes nest inside it.
  std::mutex send_mu;
  std::mutex mu;  // guards everything below
  std::shared_ptr<TrainingUnit> unit;  // set at creation; automatic grouping replaces it
  std::shared_ptr<const ModelUpdate> latest_full;  // the newest version as a full model
  std::shared_ptr<const ModelUpdate> pinned_full;  // while pinned: the pinned version (ModelUpdate::pinned)
  std::weak_ptr<DeviceSession> session;              // the one live stream, if any
  double full_model_tokens = 0;                      // token bucket of AllowFullModelSend
  double full_model_tokens_at_s = 0;
  Detections previous_labels;
  bool has_previous = false;
  int frames_since_prune = 0;
  DeviceCounters counters;  // all but the byte counts, which live in the atomics above
  std::deque<RecentRound> rounds;  // the newest kRecentRounds
};

namespace {

// grouping.start together: the devices of server.yaml as one group ("all") to split from.
ServerConfig WithStartGroup(ServerConfig config) {
  const GroupingOptions& g = config.grouping;
  if (!g.automatic || !g.start_together || !config.groups.empty() || config.device_tokens.size() < 2) return config;
  std::vector<std::string>& all = config.groups["all"];
  for (const auto& [id, token] : config.device_tokens) all.push_back(id);
  return config;
}

}  // namespace

ServerCore::ServerCore(const ServerConfig& config) : config_(WithStartGroup(config)), scheduler_(config.schedule) {}

ServerCore::~ServerCore() {
  BeginShutdown();
  for (std::thread& worker : training_workers_) worker.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  labeler_.reset();  // finishes the labelling jobs before the store goes away
}

void ServerCore::BeginShutdown() {
  {
    // Waits out a version being stored; every later one sees stopping_ and is dropped.
    std::unique_lock<std::shared_mutex> publishing(publish_mu_);
    stopping_ = true;
  }
  if (auto devices = Devices())
    for (const auto& [id, enrolment] : *devices) UnitOf(*enrolment.device)->trainer->Cancel();
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  work_cv_.notify_all();
}

StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerConfig& config, TeacherFactory teachers) {
  std::unique_ptr<ServerCore> core(new ServerCore(config));
  SD_RETURN_IF_ERROR(core->Init(std::move(teachers)));
  return core;
}

Status ServerCore::Init(TeacherFactory teachers) {
  SD_ASSIGN_OR_RETURN(store_, FrameStore::Open(config_.storage_dir, config_.env));
  if (teachers) {
    SD_ASSIGN_OR_RETURN(labeler_, LabelerPool::Create(std::move(teachers), config_.labeler_workers, config_.labeler_queue));
  } else {
    SD_ASSIGN_OR_RETURN(labeler_, LabelerPool::Create(config_.teacher, config_.labeler_workers, config_.labeler_queue));
  }
  // After the teachers: a teacher's own thread setting is process-wide and must not leave
  // training on fewer threads than configured. (Each worker sets its own again: libtorch's
  // OpenMP thread count is per calling thread, and new threads start from this one.)
  SetTorchThreads(config_.threads_per_worker);
  SD_ASSIGN_OR_RETURN(auto layout_model, StudentModel::Create(config_.student, 0));
  tensor_sizes_ = layout_model->TensorSizes();
  if (!config_.init_weights.empty()) {  // checked now, not at the first device's first frame
    SD_ASSIGN_OR_RETURN(auto init, StudentModel::LoadFromFile(config_.init_weights));
    if (init->architecture().Fingerprint() != config_.student.Fingerprint())
      return Status::InvalidArgument(config_.init_weights + ": weights are for '" + init->architecture().Fingerprint() +
                                     "', the server trains '" + config_.student.Fingerprint() + "'");
  }
  // Before any device is made: a pinned or paused device starts so.
  SD_RETURN_IF_ERROR(LoadAdminStates());
  // Bounds hold after a restart too, and before any stream adds to them.
  for (const std::string& id : store_->Devices()) PruneFrames(id, /*at_start=*/true);
  // Every configured device is made now, its checkpoint read and its trainer built, so no
  // stream thread ever waits for that.
  // Inline tokens are hashed like the devices file's, so one comparison serves both.
  auto devices = std::make_shared<DeviceMap>();
  for (const auto& [id, token] : config_.device_tokens) {
    Enrolment& enrolment = (*devices)[id];
    SD_ASSIGN_OR_RETURN(enrolment.device, CreateDevice(id));
    SD_ASSIGN_OR_RETURN(enrolment.token, HashToken(token));
  }
  devices_ = std::move(devices);
  RegisterMetricCallbacks();
  SD_RETURN_IF_ERROR(metrics_.registry.status());
  if (!config_.devices_file.empty()) {
    const FileStamp stamp = StampOf(config_.devices_file);  // before the read: a later change is seen
    {
      std::lock_guard<std::mutex> lock(reload_mu_);
      SD_RETURN_IF_ERROR(ApplyDevicesFile(/*at_start=*/true));
    }
    if (config_.devices_file_poll_s > 0) watch_thread_ = std::thread([this, stamp] { WatchDevicesFile(stamp); });
  }
  next_regroup_s_ = NowSeconds() + config_.grouping.every_s;
  if (config_.train_in_background)
    for (int i = 0; i < config_.training_workers; ++i) training_workers_.emplace_back([this] { TrainingLoop(); });
  return Status::Ok();
}

Status ServerCore::ReloadDevices() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  const Status applied = config_.devices_file.empty()
                             ? Status::FailedPrecondition("server.yaml configures no devices_file")
                             : ApplyDevicesFile(/*at_start=*/false);
  if (!applied.ok())
    spdlog::error("devices file not applied, the devices stay as they were: {}", applied.ToString());
  return applied;
}

Status ServerCore::ApplyDevicesFile(bool at_start) {
  const std::string& path = config_.devices_file;
  auto read = ReadDevicesFile(config_.env, path);
  if (!read.ok() && !(at_start && read.status().code() == Status::Code::kNotFound)) return read.status();
  if (!read.ok()) spdlog::warn("devices file {} does not exist yet: no device enrolled there", path);
  const EnrolledDevices listed = read.ok() ? *read : EnrolledDevices();
  const std::shared_ptr<const DeviceMap> before = Devices();
  for (const auto& [id, entry] : listed)
    if (config_.device_tokens.count(id))
      return Status::InvalidArgument(path + ": device " + id + " is configured in server.yaml's devices too");

  // Everything that can fail comes first: new devices are built (checkpoints loaded) before
  // anything is published, so a failure leaves the set as it was.
  auto next = std::make_shared<DeviceMap>(*before);
  std::vector<std::string> changes, revoked;
  for (const auto& [id, entry] : listed) {
    auto old = before->find(id);
    if (old == before->end()) {
      Enrolment& enrolment = (*next)[id];
      SD_ASSIGN_OR_RETURN(enrolment.device, CreateDevice(id));
      enrolment.token = entry.token;
      enrolment.enabled = entry.enabled;
      enrolment.from_file = true;
      changes.push_back("device " + LogSafe(id) + (entry.enabled ? " added" : " added, disabled"));
      continue;
    }
    Enrolment& enrolment = (*next)[id];
    const bool was_enabled = enrolment.enabled;
    const bool new_token = !SameToken(enrolment.token, entry.token);
    enrolment.token = entry.token;
    enrolment.enabled = entry.enabled;
    enrolment.listed = true;
    std::string change;
    if (was_enabled && !entry.enabled) {
      change = "disabled";
    } else if (!was_enabled && entry.enabled) {
      change = new_token ? "re-enabled with a new token" : "re-enabled";
    } else if (new_token) {
      change = entry.enabled ? "token changed" : "token changed (still disabled)";
    }
    if (was_enabled && (!entry.enabled || new_token)) revoked.push_back(id);
    if (!change.empty()) changes.push_back("device " + LogSafe(id) + " " + change);
  }
  for (auto& [id, enrolment] : *next) {
    if (!enrolment.from_file || !enrolment.listed || listed.count(id)) continue;
    if (enrolment.enabled) revoked.push_back(id);
    enrolment.listed = false;
    enrolment.enabled = false;
    changes.push_back("device " + LogSafe(id) + " removed (its frames and versions stay on disk)");
  }

  {
    std::lock_guard<std::mutex> lock(devices_mu_);
    devices_ = next;
  }
  for (const std::string& change : changes) spdlog::info("devices file {}: {}", path, change);
  if (!at_start && changes.empty()) spdlog::info("devices file {}: reloaded, nothing changed", path);
  // A stream attached before the publish is ended here; one after it was refused.
  for (const std::string& id : revoked) {
    Device& device = *(*next)[id].device;
    std::shared_ptr<DeviceSession> session;
    {
      std::lock_guard<std::mutex> lock(device.mu);
      session = device.session.lock();
      device.session.reset();
    }
    if (!session) continue;
    spdlog::info("device {}: its open stream is closed (access revoked)", LogSafe(id));
    session->End(Status::Unauthenticated("unknown device or wrong token"));
  }
  return Status::Ok();
}

void ServerCore::WatchDevicesFile(FileStamp seen) {
  const auto period = std::chrono::duration<double>(config_.devices_file_poll_s);
  std::unique_lock<std::mutex> lock(watch_mu_);
  while (!stopping_) {
    watch_cv_.wait_for(lock, period);
    if (stopping_) break;
    const FileStamp now = StampOf(config_.devices_file);
    if (now == seen) continue;
    seen = now;
    lock.unlock();
    ReloadDevices().ok();  // logged there; a broken file is tried again when it changes
    lock.lock();
  }
}

ServerCore::FileStamp ServerCore::StampOf(const std::string& path) {
  struct stat st;
  FileStamp stamp;
  if (::stat(path.c_str(), &st) != 0) return stamp;
  stamp.exists = true;
  stamp.inode = st.st_ino;
  stamp.size = st.st_size;
  stamp.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return stamp;
}

std::shared_ptr<const ServerCore::DeviceMap> ServerCore::Devices() const {
  std::lock_guard<std::mutex> lock(devices_mu_);
  return devices_;
}

StatusOr<ServerCore::Device*> ServerCore::FindDevice(const std::string& device_id) const {
  const std::shared_ptr<const DeviceMap> devices = Devices();
  auto it = devices->find(device_id);
  if (it == devices->end()) return Status::NotFound("unknown device '" + LogSafe(device_id) + "'");
  return it->second.device.get();
}

StatusOr<std::shared_ptr<ServerCore::TrainingUnit>> ServerCore::UnitFor(const std::string& device_id) {
  const std::string group = GroupOf(config_, device_id);
  const std::string key = group.empty() ? device_id : "group:" + group;
  std::lock_guard<std::mutex> lock(units_mu_);
  if (auto it = units_.find(key); it != units_.end()) return it->second;
  const std::vector<std::string> members = group.empty() ? std::vector<std::string>{device_id} : config_.groups.at(group);
  // A group starts from its member with the newest stored version, so that no member's
  // version number ever goes down.
  std::optional<VersionRecord> newest;
  for (const std::string& member : members) {
    auto latest = store_->LatestVersion(member);
    if (latest.ok() && (!newest || latest->version > newest->version)) newest = *latest;
  }
  std::string weights;
  if (newest) {
    SD_ASSIGN_OR_RETURN(weights, store_->LoadCheckpoint(*newest));
  } else if (!config_.init_weights.empty()) {
    SD_ASSIGN_OR_RETURN(auto model, StudentModel::LoadFromFile(config_.init_weights));
    weights = model->SerializeWeights();
  } else {
    SD_ASSIGN_OR_RETURN(auto model, StudentModel::Create(config_.student, config_.model_seed));
    weights = model->SerializeWeights();
  }
  const uint64_t version = newest ? newest->version : 0;
  SD_ASSIGN_OR_RETURN(auto unit, NewUnit(group, members, weights, version));
  unit->resumed_map50 = newest ? newest->val_map50 : -1;
  unit->comparable_from = std::max<uint64_t>(1, version);  // a stored version is the device's own
  if (!group.empty())
    spdlog::info("group {}: {} devices share one student, from version {}", group, unit->members.size(),
                 unit->trainer->version());
  units_[key] = unit;
  return unit;
}

StatusOr<std::shared_ptr<ServerCore::TrainingUnit>> ServerCore::NewUnit(const std::string& group,
                                                                        std::vector<std::string> members,
                                                                        const std::string& weights,
                                                                        uint64_t version) const {
  auto unit = std::make_shared<TrainingUnit>();
  const std::string name = group.empty() ? members.front() : group;
  unit->key = group.empty() ? name : "group:" + group;
  unit->group = group;
  unit->label = (group.empty() ? "device " : "group ") + name;
  unit->members = std::move(members);
  const UpdatePolicy& policy = UpdatesFor(config_, unit->members.front());
  RoundOptions round = config_.round;
  round.sparse_fraction = policy.encoding == "sparse" ? policy.sparse_fraction : 0;
  SD_ASSIGN_OR_RETURN(unit->trainer, DeviceTrainer::Create(name, config_.student, weights, version, round,
                                                           MakeUpdateEncoder(policy, tensor_sizes_)));
  return unit;
}

std::shared_ptr<ServerCore::TrainingUnit> ServerCore::UnitOf(Device& device) {
  std::lock_guard<std::mutex> lock(device.mu);
  return device.unit;
}

StatusOr<std::unique_ptr<ServerCore::Device>> ServerCore::CreateDevice(const std::string& device_id) {
  auto device = std::make_unique<Device>();
  device->id = device_id;
  device->full_model_tokens = config_.limits.full_model_burst;
  device->full_model_tokens_at_s = NowSeconds();
  SD_ASSIGN_OR_RETURN(device->unit, UnitFor(device_id));
  const DeviceTrainer& trainer = *device->unit->trainer;
  const uint64_t version = trainer.version();
  if (version > 0) {
    SD_ASSIGN_OR_RETURN(auto full, EncodeFull(device_id, version, trainer.flat_weights()));
    auto mutable_update = std::make_shared<ModelUpdate>(*full);
    mutable_update->val_map50 = device->unit->resumed_map50;
    device->latest_full = mutable_update;
    // A restart (or a device enrolled again) shows each device's state in the log at once.
    spdlog::info("device {}: resuming at version {} ({} training, {} validation frames stored)", device_id, version,
                 store_->Count(device_id, false), store_->Count(device_id, true));
  }
  const AdminState admin = AdminStateOf(device_id);
  if (admin.pinned_version > 0) {
    auto pinned = PinnedUpdate(device_id, admin.pinned_version);
    if (!pinned.ok())
      return pinned.status().WithContext("device " + LogSafe(device_id) + ": its pinned version (" +
                                         config_.storage_dir + "/" + kAdminStateFile + ")");
    device->pinned_full = *pinned;
    spdlog::info("device {}: pinned to version {} by an admin", device_id, admin.pinned_version);
  }
  if (admin.paused) {
    std::lock_guard<std::mutex> lock(mu_);
    scheduler_.SetPaused(device->unit->key, true, NowSeconds());
    spdlog::info("device {}: training paused by an admin ({})", device_id, device->unit->label);
  }
  return device;
}

Status ServerCore::AttachSession(const std::string& device_id, const std::string& token,
                                 const std::string& architecture, std::shared_ptr<DeviceSession> session) {
  // Unknown ids are hashed too, against a fixed salt, so that the time taken does not tell
  // which ids exist.
  static const TokenHash kNobody = HashTokenWithSalt("", "unknown device");
  std::shared_ptr<DeviceSession> previous;
  const char* refusal = nullptr;
  {
    // Held until the session is attached: a reload publishes under it, so it either refused
    // this stream here or will find it attached and end it.
    std::lock_guard<std::mutex> lock(devices_mu_);
    auto it = devices_->find(device_id);
    const Enrolment* enrolment = it == devices_->end() ? nullptr : &it->second;
    const bool token_ok = TokenMatches(enrolment ? enrolment->token : kNobody, token);
    if (!enrolment) {
      refusal = "unknown device";
    } else if (!token_ok) {
      refusal = "wrong token";
    } else if (!enrolment->enabled) {
      refusal = enrolment->listed ? "device disabled" : "device removed from the devices file";
    } else if (architecture == config_.student.Fingerprint()) {
      Device& device = *enrolment->device;
      std::lock_guard<std::mutex> device_lock(device.mu);
      previous = device.session.lock();
      device.session = session;
    }
  }
  if (refusal) {
    // The same answer for every refusal, so ids cannot be enumerated; the log (operators
    // only) says which it was.
    spdlog::warn("authentication failed for device id '{}': {}", LogSafe(device_id), refusal);
    return Status::Unauthenticated("unknown device or wrong token");
  }
  if (architecture != config_.student.Fingerprint())
    return Status::FailedPrecondition("edge student is '" + LogSafe(architecture, 256) + "', server trains '" +
                                      config_.student.Fingerprint() + "'");
  if (previous && previous != session) {
    spdlog::warn("device {}: a new stream replaces the open one", device_id);
    previous->End(Status::Aborted("replaced by a newer stream of device " + device_id));
  }
  return Status::Ok();
}

void ServerCore::DetachSession(const std::string& device_id, const DeviceSession* session) {
  auto device = FindDevice(device_id);
  if (!device.ok()) return;
  std::lock_guard<std::mutex> lock((*device)->mu);
  auto current = (*device)->session.lock();
  if (!current || current.get() == session) (*device)->session.reset();
}

bool ServerCore::AllowFullModelSend(const std::string& device_id) {
  auto device = FindDevice(device_id);
  if (!device.ok()) return false;
  Device& d = **device;
  const double now = NowSeconds();
  std::lock_guard<std::mutex> lock(d.mu);
  const double burst = config_.limits.full_model_burst;
  if (config_.limits.full_model_refill_s <= 0) {
    d.full_model_tokens = burst;
  } else {
    d.full_model_tokens =
        std::min(burst, d.full_model_tokens + (now - d.full_model_tokens_at_s) / config_.limits.full_model_refill_s);
  }
  d.full_model_tokens_at_s = now;
  if (d.full_model_tokens < 1) return false;
  d.full_model_tokens -= 1;
  return true;
}

bool ServerCore::TrySubmitFrame(const std::string& device_id, const FrameRecord& meta, std::string jpeg,
                                std::function<void(FrameOutcome)> done) {
  if (stopping_) return false;
  LabelJob job;
  job.device_id = device_id;
  job.sequence = meta.sequence;
  job.jpeg = jpeg;
  job.max_image_width = config_.stored_image_max_width;
  job.limits = config_.limits.image;
  const double submitted_s = NowSeconds();
  // The callback keeps the metadata and the original bytes: they are stored as sent unless
  // the server shrank the image.
  auto callback = [this, device_id, meta, submitted_s, jpeg = std::move(jpeg),
                   done = std::move(done)](StatusOr<LabelResult> result) {
    metrics_.label_seconds.Observe(NowSeconds() - submitted_s);
    FrameOutcome outcome;
    auto device = FindDevice(device_id);
    if (!device.ok()) {
      spdlog::error("device {}: {}", device_id, device.status().ToString());
      outcome.status = device.status();
      done(outcome);
      return;
    }
    if (!result.ok()) {
      outcome.status = result.status();
      metrics_.frames_rejected.With({device_id, "label"}).Inc();
      {
        std::lock_guard<std::mutex> lock((*device)->mu);
        ++(*device)->counters.frames_rejected;
      }
      done(outcome);  // never under a lock: it writes to the stream, which counts bytes
      return;
    }
    FrameRecord record = meta;
    record.device_id = device_id;
    record.labels = result->labels;
    record.embedding = result->embedding;
    record.validation = meta.sequence % config_.validation_every == 0;
    record.jpeg = jpeg;
    if (config_.stored_image_max_width > 0) {  // the labels refer to the shrunk image: store that
      std::vector<uchar> encoded;
      cv::imencode(".jpg", result->image, encoded, {cv::IMWRITE_JPEG_QUALITY, 90});
      record.jpeg.assign(encoded.begin(), encoded.end());
    }
    auto inserted = store_->Put(record);
    if (!inserted.ok()) {
      // Not stored, so not acked as stored. A record the store refuses as such is rejected for
      // good; any other failure is the server's (a full disk, a failing fsync or rename, the
      // index): UNAVAILABLE, and the edge keeps the frame and sends it again after a back-off.
      if (inserted.status().code() == Status::Code::kInvalidArgument) {
        outcome.status = inserted.status();
        metrics_.frames_rejected.With({device_id, "invalid"}).Inc();
      } else {
        metrics_.frames_rejected.With({device_id, "storage"}).Inc();
        storage_log_.Failed(inserted.status());  // on change, then rate-limited: not once per frame
        outcome.status = Status::Unavailable("storage unavailable: " + inserted.status().message() + "; retry later");
      }
      done(outcome);
      return;
    }
    storage_log_.Succeeded();
    metrics_.frames_acked.With({device_id}).Inc();
    outcome.duplicate = !*inserted;
    bool prune = false;
    {
      std::lock_guard<std::mutex> lock((*device)->mu);
      Device& d = **device;
      if (outcome.duplicate) {
        ++d.counters.duplicates;
      } else {
        ++d.counters.frames_stored;
        if (d.has_previous) outcome.teacher_agreement = LabelAgreement(d.previous_labels, record.labels);
        d.previous_labels = record.labels;
        d.has_previous = true;
        if (++d.frames_since_prune >= kFramesPerPrune) {
          prune = true;
          d.frames_since_prune = 0;
        }
      }
    }
    if (!outcome.duplicate && !record.validation) {
      const std::string unit = UnitOf(**device)->key;
      std::lock_guard<std::mutex> lock(mu_);
      scheduler_.OnNewFrame(unit, NowSeconds(), meta.image_score);
      work_cv_.notify_all();
    }
    done(outcome);
    if (prune) PruneFrames(device_id, /*at_start=*/false);  // after the ack: the edge does not wait for it
  };
  return labeler_->TrySubmit(std::move(job), std::move(callback));
}

void ServerCore::PruneFrames(const std::string& device_id, bool at_start) {
  const RetentionBounds& bounds = RetentionFor(config_, device_id);
  if (!bounds.any()) return;
  PruneKeep keep;
  keep.replay_frames = config_.round.replay_frames;
  keep.validation_frames = config_.validation_frames;
  auto pruned = store_->Prune(device_id, bounds, keep);
  if (!pruned.ok()) {
    spdlog::warn("device {}: pruning stored frames failed (tried again later): {}", LogSafe(device_id),
                 pruned.status().ToString());
    return;
  }
  if (pruned->deleted == 0) return;
  const auto level = at_start ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level, "device {}: retention deleted {} frames ({} bytes); {} frames ({} bytes) stored", LogSafe(device_id),
              pruned->deleted, pruned->deleted_bytes, pruned->frames_left, pruned->bytes_left);
  if (pruned->replay_deleted > 0 || pruned->validation_deleted > 0)
    spdlog::warn("device {}: retention bounds too tight for the training windows: deleted {} of the newest {} "
                 "training frames and {} of the gate's {} held-out frames", LogSafe(device_id),
                 pruned->replay_deleted, keep.replay_frames, pruned->validation_deleted, keep.validation_frames);
}

bool ServerCore::WaitForLabelQueueSpace(std::function<void()> fn) { return labeler_->WaitForSpace(std::move(fn)); }

uint64_t ServerCore::LastStoredSequence(const std::string& device_id) const {
  return store_->LastSequence(device_id);
}

StatusOr<std::shared_ptr<const ModelUpdate>> ServerCore::LatestUpdate(const std::string& device_id) {
  SD_ASSIGN_OR_RETURN(Device * device, FindDevice(device_id));
  std::lock_guard<std::mutex> lock(device->mu);
  return device->pinned_full ? device->pinned_full : device->latest_full;
}

StatusOr<std::optional<RoundResult>> ServerCore::RunScheduledRound() {
  std::optional<ScheduledRound> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    next = scheduler_.Next(NowSeconds());
    // Another device may be due as well: an idle worker looks now, not at its next timeout.
    if (next) work_cv_.notify_one();
  }
  if (!next) return std::optional<RoundResult>();
  std::shared_ptr<TrainingUnit> unit;
  {
    std::lock_guard<std::mutex> lock(units_mu_);
    if (auto it = units_.find(next->device); it != units_.end()) unit = it->second;  // the scheduler knows only keys
  }
  StatusOr<RoundResult> round = Status::Aborted(next->device + ": regrouped before its round began");
  if (unit) {
    spdlog::info("{}: round starts ({})", unit->label, next->why);
    round = RunUnitRound(*unit, RoundIterations(config_.round.iterations, *next, config_.schedule));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    scheduler_.RoundDone(next->device, unit ? unit->trainer->published_map50() : -1, NowSeconds());
    work_cv_.notify_all();  // the unit may have work again, for another worker
  }
  if (config_.grouping.automatic) RegroupWhenDue();
  // A unit regrouped between the pick and the round: its frames went to the unit that replaced
  // it, so there was nothing to do.
  if (!round.ok() && (!unit || unit->retired)) return std::optional<RoundResult>();
  if (!round.ok()) return round.status().WithContext(unit->label + ": round");
  return std::optional<RoundResult>(*std::move(round));
}

namespace {

// Decodes the stored frames, reusing the images of earlier rounds. A frame is kept shrunk to
// `scale` x the student input (ShrinkForStudent), its labels scaled to match each time.
StatusOr<std::vector<LabelledFrame>> LoadFrames(const FrameStore& store, const std::vector<FrameRecord>& records,
                                                const StudentArchitecture& arch, float scale,
                                                std::map<std::pair<std::string, uint64_t>, CachedImage>* cache) {
  std::vector<LabelledFrame> frames;
  for (const FrameRecord& r : records) {
    auto it = cache->find({r.device_id, r.sequence});
    if (it == cache->end()) {
      SD_ASSIGN_OR_RETURN(std::string jpeg, store.LoadImage(r));
      cv::Mat image = cv::imdecode(cv::Mat(1, jpeg.size(), CV_8UC1, jpeg.data()), cv::IMREAD_COLOR);
      if (image.empty()) return Status::DataLoss(r.image_path + ": stored image cannot be decoded");
      const cv::Mat shrunk = ShrinkForStudent({image, {}}, arch, scale).bgr;
      it = cache->emplace(std::make_pair(r.device_id, r.sequence), CachedImage{shrunk, static_cast<float>(shrunk.cols) / image.cols,
                                                  static_cast<float>(shrunk.rows) / image.rows})
               .first;
    }
    LabelledFrame frame{r.frame_index, it->second.bgr, r.labels};
    ScaleDetections(&frame.labels, it->second.scale_x, it->second.scale_y);
    frames.push_back(std::move(frame));
  }
  return frames;
}

}  // namespace

StatusOr<RoundResult> ServerCore::RunRound(const std::string& device_id, int iterations) {
  SD_ASSIGN_OR_RETURN(Device * device, FindDevice(device_id));
  for (;;) {  // again with the device's new unit when a regroup replaced the one it had
    std::shared_ptr<TrainingUnit> unit = UnitOf(*device);
    StatusOr<RoundResult> round = RunUnitRound(*unit, iterations);
    if (round.ok() || !unit->retired) return round;
  }
}

StatusOr<RoundResult> ServerCore::RunUnitRound(TrainingUnit& unit, int iterations) {
  std::lock_guard<std::mutex> train_lock(unit.train_mu);
  if (unit.retired) return Status::Aborted(unit.label + ": regrouped before its round began");
  // The members enrolled now; a group member not enrolled yet has no frames either.
  std::vector<Device*> members;
  for (const std::string& id : unit.members)
    if (auto device = FindDevice(id); device.ok()) members.push_back(*device);
  for (Device* device : members) {
    std::lock_guard<std::mutex> lock(device->mu);
    device->counters.round_start_s = NowSeconds();
  }
  // Whatever way the round ends.
  struct MarkEnd {
    const std::vector<Device*>& members;
    ~MarkEnd() {
      for (Device* device : members) {
        std::lock_guard<std::mutex> lock(device->mu);
        device->counters.round_end_s = NowSeconds();
      }
    }
  } mark_end{members};
  // A group's replay window and held-out set are the configured sizes in all, shared evenly
  // among its members, so a group's round costs what a lone device's does.
  const int n = std::max<int>(1, members.size());
  auto each = [n](int total) { return (total + n - 1) / n; };
  std::vector<FrameRecord> train_records, val_records, memory_records, longterm_records;
  for (Device* device : members) {
    SD_ASSIGN_OR_RETURN(auto train, store_->Recent(device->id, false, each(config_.round.replay_frames)));
    SD_ASSIGN_OR_RETURN(auto val, store_->Recent(device->id, true, each(config_.validation_frames)));
    // The long-term memory comes from before the recent windows, chosen to cover the looks
    // the recent frames do not.
    if (!train.empty() && config_.memory_frames > 0) {
      SD_ASSIGN_OR_RETURN(auto older, store_->Older(device->id, false, train.front().sequence, config_.memory_history));
      auto chosen = ChooseLongTermFrames(older, train, each(config_.memory_frames));
      memory_records.insert(memory_records.end(), chosen.begin(), chosen.end());
    }
    if (!val.empty() && config_.longterm_validation_frames > 0) {
      SD_ASSIGN_OR_RETURN(auto older, store_->Older(device->id, true, val.front().sequence, config_.memory_history));
      auto chosen = ChooseLongTermFrames(older, val, each(config_.longterm_validation_frames));
      longterm_records.insert(longterm_records.end(), chosen.begin(), chosen.end());
    }
    train_records.insert(train_records.end(), train.begin(), train.end());
    val_records.insert(val_records.end(), val.begin(), val.end());
  }
  if (train_records.empty()) return Status::FailedPrecondition(unit.label + " has no training frames");
  // Training frames keep what augmentation can use, validation frames what inference does.
  const float train_scale = config_.round.trainer.max_scale;
  SD_ASSIGN_OR_RETURN(auto train_frames, LoadFrames(*store_, train_records, config_.student, train_scale, &unit.image_cache));
  SD_ASSIGN_OR_RETURN(auto val_frames, LoadFrames(*store_, val_records, config_.student, 1.0f, &unit.image_cache));
  LongTermMemory memory;
  SD_ASSIGN_OR_RETURN(auto memory_frames,
                      LoadFrames(*store_, memory_records, config_.student, train_scale, &unit.image_cache));
  memory.replay = ToTrainingSamples(memory_frames);
  SD_ASSIGN_OR_RETURN(memory.validation,
                      LoadFrames(*store_, longterm_records, config_.student, 1.0f, &unit.image_cache));
  // Keep only what this round used: the replay horizon and the memory bound the cache.
  std::map<std::pair<std::string, uint64_t>, CachedImage> kept;
  for (const auto* records : {&train_records, &val_records, &memory_records, &longterm_records})
    for (const FrameRecord& r : *records) {
      const auto key = std::make_pair(r.device_id, r.sequence);
      kept[key] = unit.image_cache[key];
    }
  unit.image_cache.swap(kept);

  SD_ASSIGN_OR_RETURN(RoundResult round,
                      unit.trainer->RunRound(ToTrainingSamples(train_frames), val_frames, iterations, memory));
  RecentRound recent{WallMillis(), round};
  recent.result.update = {};  // the payload can be megabytes; the dashboard lists the outcome
  for (Device* device : members) {
    std::lock_guard<std::mutex> lock(device->mu);
    ++device->counters.rounds;
    device->rounds.push_back(recent);
    if (device->rounds.size() > kRecentRounds) device->rounds.pop_front();
  }
  spdlog::info("{}: round of {} steps on {} + {} long-term frames ({} + {} validation) in {:.1f}s: mAP50 {:.3f} -> "
               "{:.3f}, {}: {}",
               unit.label, round.iterations, round.train_frames, round.memory_frames, round.val_frames,
               round.longterm_val_frames, round.seconds, round.map50_before, round.map50_after,
               round.published ? "published v" + std::to_string(round.version) : "discarded", round.reason);
  metrics_.round_seconds.Observe(round.seconds);
  const double heldout_map50 = round.published ? round.map50_after : round.map50_before;
  for (Device* device : members) {
    if (heldout_map50 >= 0) metrics_.heldout_map50.With({device->id}).Set(heldout_map50);
    const double longterm_map50 = round.published ? round.longterm_map50_after : round.longterm_map50_before;
    if (longterm_map50 >= 0) metrics_.longterm_map50.With({device->id}).Set(longterm_map50);
    metrics_.rounds.With({device->id, round.published ? "published" : "discarded"}).Inc();
  }
  if (!round.published) return round;
  // Every member gets the version; one that fails to store it does not keep it from the others.
  Status first_failure;
  for (Device* device : members) {
    Status published = Publish(*device, unit, round);
    if (!published.ok() && first_failure.ok()) first_failure = published;
  }
  SD_RETURN_IF_ERROR(first_failure);
  return round;
}

Status ServerCore::Publish(Device& device, const TrainingUnit& unit, const RoundResult& round) {
  // Shared with the other workers' publishing; BeginShutdown waits for it and then no version
  // is stored any more. A round that ended after the shutdown began is dropped here: its
  // version exists only in the trainer's memory; the store and the edges never see it, as
  // docs/architecture.md promises.
  std::shared_lock<std::shared_mutex> publishing(publish_mu_);
  if (stopping_) {
    spdlog::info("device {}: round finished during shutdown: version {} discarded", device.id, round.version);
    return Status::Aborted("device " + device.id + ": shutting down; the round's version was discarded");
  }
  // The round's update turns the previous version into this one; a full model of it serves
  // edges that join later or lost their place in the chain.
  const std::vector<float> flat = unit.trainer->flat_weights();
  auto encoded_full = EncodeFull(device.id, round.version, flat);
  if (!encoded_full.ok())
    return encoded_full.status().WithContext("device " + device.id + ": encoding version " +
                                             std::to_string(round.version));
  auto full = std::make_shared<ModelUpdate>(**encoded_full);
  full->val_map50 = round.map50_after;
  full->val_map50_previous = round.map50_before;
  full->val_frames = round.val_frames;
  auto live = std::make_shared<ModelUpdate>(*full);
  if (!round.update.payload.empty()) {  // the round's own update: the smallest way there
    live->base_version = IsFullEncoding(round.update.encoding) ? 0 : round.version - 1;
    live->encoding = round.update.encoding;
    live->payload = round.update.payload;
  }
  std::shared_ptr<const ModelUpdate> published = live;
  const DeviceCounters counters = Counters(device.id);
  spdlog::info("device {}: version {} as {} of {} bytes ({} weights changed; full model {} bytes); link in {:.1f} "
               "kbit/s, out {:.1f} kbit/s", device.id, round.version, UpdateEncodingName(published->encoding), published->payload.size(),
               round.changed_weights, full->payload.size(), counters.in_kbps(NowSeconds()),
               counters.out_kbps(NowSeconds()));

  VersionRecord record;
  record.device_id = device.id;
  record.version = round.version;
  record.encoding = UpdateEncodingName(published->encoding);
  record.weights_checksum = published->weights_checksum;
  record.val_map50 = round.map50_after;
  record.created_ms = WallMillis();
  Status stored = store_->PutVersion(record, unit.trainer->weights());
  // Not sent either when this fails: an edge must never run a version the server could lose
  // in a crash.
  SD_RETURN_IF_ERROR(stored.WithContext("device " + device.id + ": storing version " + std::to_string(round.version)));
  {
    std::lock_guard<std::mutex> lock(device.mu);
    device.latest_full = full;
    ++device.counters.published;
  }
  publishing.unlock();
  std::lock_guard<std::mutex> sending(device.send_mu);
  std::shared_ptr<DeviceSession> session;
  {
    std::lock_guard<std::mutex> lock(device.mu);
    // Stored all the same: the unit's version numbers stay one sequence (a group's other
    // members get it), and an unpin has the newest to send.
    if (device.pinned_full) {
      spdlog::info("device {}: pinned to version {}: version {} stored, not sent", device.id,
                   device.pinned_full->new_version, round.version);
    } else {
      session = device.session.lock();
    }
  }
  if (session) session->OnUpdate(published, full);  // no core lock held but send_mu: it writes to the stream
  return Status::Ok();
}

StatusOr<std::shared_ptr<const ModelUpdate>> ServerCore::EncodeFull(const std::string& device_id, uint64_t version,
                                                                      const std::vector<float>& flat) const {
  const UpdatePolicy& policy = UpdatesFor(config_, device_id);
  auto update = std::make_shared<ModelUpdate>();
  update->new_version = version;
  // The weights are what the edge holds already (rounds publish delivered weights), so a full
  // model must reproduce them exactly: fp16 only where the policy rounds to fp16 anyway.
  update->encoding = policy.encoding == "full_fp16" ? UpdateEncoding::kFullFp16 : UpdateEncoding::kFullFp32;
  const char* name = UpdateEncodingName(update->encoding);
  SD_ASSIGN_OR_RETURN(update->payload, EncodeUpdate(name, {}, flat, {}, policy.zstd));
  SD_ASSIGN_OR_RETURN(std::vector<float> received, DecodeUpdate(name, {}, update->payload, flat.size()));
  update->weights_checksum = WeightsChecksum(received);
  return std::shared_ptr<const ModelUpdate>(update);
}

void ServerCore::TrainingLoop() {
  SetTorchThreads(config_.threads_per_worker);  // this thread's OpenMP team (docs/operations.md)
  while (!stopping_) {
    auto round = RunScheduledRound();
    if (round.ok() && round->has_value()) continue;
    if (!round.ok() && !stopping_) spdlog::warn("training round failed: {}", round.status().ToString());
    std::unique_lock<std::mutex> lock(mu_);
    work_cv_.wait_for(lock, std::chrono::seconds(1));
  }
}

double DeviceCounters::in_kbps(double now_s) const {
  return now_s > first_contact_s && first_contact_s > 0 ? bytes_in * 8 / 1000.0 / (now_s - first_contact_s) : 0;
}

double DeviceCounters::out_kbps(double now_s) const {
  return now_s > first_contact_s && first_contact_s > 0 ? bytes_out * 8 / 1000.0 / (now_s - first_contact_s) : 0;
}

void ServerCore::CountBytes(const std::string& device_id, int64_t in, int64_t out) {
  auto device = FindDevice(device_id);
  if (!device.ok()) return;
  Device& d = **device;
  double unset = 0;
  d.first_contact_s.compare_exchange_strong(unset, NowSeconds());
  d.bytes_in += in;
  d.bytes_out += out;
}

void ServerCore::CountRejectedFrame(const std::string& device_id) {
  auto device = FindDevice(device_id);
  if (!device.ok()) return;
  metrics_.frames_rejected.With({device_id, "invalid"}).Inc();
  std::lock_guard<std::mutex> lock((*device)->mu);
  ++(*device)->counters.frames_rejected;
}

void ServerCore::RegisterMetricCallbacks() {
  using Type = MetricsRegistry::Type;
  MetricsRegistry& registry = metrics_.registry;
  // One series per device of the current set (removed ones included: their numbers stay).
  auto per_device = [this](std::function<double(Device&)> value) {
    return [this, value = std::move(value)](const MetricsRegistry::Emit& emit) {
      for (const auto& [id, enrolment] : *Devices()) emit({id}, value(*enrolment.device));
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
                       per_device([](Device& d) { return static_cast<double>(UnitOf(d)->trainer->version()); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_pinned_version",
                       "The version an admin pinned the device to (0: not pinned).", {"device"},
                       per_device([this](Device& d) { return static_cast<double>(AdminStateOf(d.id).pinned_version); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_device_paused",
                       "1 while an admin has paused the device's training, else 0.", {"device"},
                       per_device([this](Device& d) { return AdminStateOf(d.id).paused ? 1.0 : 0.0; }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_stream_connected",
                       "1 while the device has an authenticated stream open, else 0.", {"device"},
                       per_device([](Device& d) {
                         std::lock_guard<std::mutex> lock(d.mu);
                         return d.session.expired() ? 0.0 : 1.0;
                       }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_stored_frames",
                       "Frames the store holds for the device (training and held-out).", {"device"},
                       per_device([this](Device& d) { return static_cast<double>(store_->Usage(d.id).frames); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_stored_bytes",
                       "Bytes of the device's stored frame images.", {"device"},
                       per_device([this](Device& d) { return static_cast<double>(store_->Usage(d.id).bytes); }));
  registry.AddCallback(Type::kGauge, "streamdistill_server_labeler_queue_depth",
                       "Frames waiting for a labeller (not counting those being labelled).", {},
                       [this](const MetricsRegistry::Emit& emit) { emit({}, labeler_->queued()); });
  registry.AddGauge("streamdistill_server_labeler_queue_capacity",
                    "Frames the labelling queue holds before streams stop being read (labeler.queue).")
      .With({})
      .Set(config_.labeler_queue);
}

Status ServerCore::LoadAdminStates() {
  const std::string path = config_.storage_dir + "/" + kAdminStateFile;
  auto text = config_.env->ReadFile(path);
  if (!text.ok() && text.status().code() == Status::Code::kNotFound) return Status::Ok();  // no action yet
  if (!text.ok()) return text.status().WithContext("reading " + path);
  const nlohmann::json parsed = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("devices") || !parsed["devices"].is_object())
    return Status::DataLoss(path + ": not an admin state file (a \"devices\" object expected)");
  for (const auto& [id, entry] : parsed["devices"].items()) {
    if (!entry.is_object() || !entry.contains("pinned_version") || !entry["pinned_version"].is_number_unsigned() ||
        !entry.contains("paused") || !entry["paused"].is_boolean())
      return Status::DataLoss(path + ": device " + LogSafe(id) + ": pinned_version and paused expected");
    admin_states_[id] = AdminState{entry["pinned_version"].get<uint64_t>(), entry["paused"].get<bool>()};
  }
  return Status::Ok();
}

Status ServerCore::SaveAdminStates() {
  nlohmann::json devices = nlohmann::json::object();
  for (const auto& [id, state] : admin_states_)
    if (state.pinned_version > 0 || state.paused)
      devices[id] = {{"pinned_version", state.pinned_version}, {"paused", state.paused}};
  const std::string path = config_.storage_dir + "/" + kAdminStateFile;
  return WriteFileDurably(config_.env, path, nlohmann::json{{"devices", devices}}.dump(2) + "\n")
      .WithContext("saving the admin state to " + path);
}

AdminState ServerCore::AdminStateOf(const std::string& device_id) const {
  std::lock_guard<std::mutex> lock(admin_mu_);
  auto it = admin_states_.find(device_id);
  return it == admin_states_.end() ? AdminState() : it->second;
}

bool ServerCore::UnitPausedLocked(const TrainingUnit& unit) const {
  for (const std::string& member : unit.members)
    if (auto it = admin_states_.find(member); it != admin_states_.end() && it->second.paused) return true;
  return false;
}

StatusOr<std::shared_ptr<const ModelUpdate>> ServerCore::PinnedUpdate(const std::string& device_id, uint64_t version) {
  SD_ASSIGN_OR_RETURN(auto versions, store_->Versions(device_id, INT_MAX));
  auto record = std::find_if(versions.begin(), versions.end(),
                             [version](const VersionRecord& v) { return v.version == version; });
  if (record == versions.end())
    return Status::NotFound("device " + LogSafe(device_id) + " has no stored version " + std::to_string(version));
  SD_ASSIGN_OR_RETURN(std::string checkpoint, store_->LoadCheckpoint(*record));
  SD_ASSIGN_OR_RETURN(auto model, StudentModel::FromBytes(checkpoint));
  SD_ASSIGN_OR_RETURN(auto full, EncodeFull(device_id, version, model->FlatWeights()));
  auto pinned = std::make_shared<ModelUpdate>(*full);
  pinned->val_map50 = record->val_map50;
  pinned->pinned = true;
  return std::shared_ptr<const ModelUpdate>(pinned);
}

std::shared_ptr<DeviceSession> ServerCore::SetPinned(Device& device, std::shared_ptr<const ModelUpdate> pinned) {
  std::lock_guard<std::mutex> lock(device.mu);
  device.pinned_full = std::move(pinned);
  return device.session.lock();
}

Status ServerCore::ChangeAdminState(const std::string& device_id, const std::function<void(AdminState&)>& change) {
  AdminState& state = admin_states_[device_id];
  const AdminState before = state;
  change(state);
  Status saved = SaveAdminStates();
  if (!saved.ok()) state = before;  // nothing changed, in memory as on disk
  return saved;
}

Status ServerCore::Pin(const std::string& device_id, uint64_t version, const std::string& who) {
  std::shared_ptr<DeviceSession> session;
  std::shared_ptr<const ModelUpdate> pinned;
  std::unique_lock<std::mutex> sending;  // held until the pinned version is queued on the stream
  Status outcome = [&]() -> Status {
    std::lock_guard<std::mutex> lock(admin_mu_);
    SD_ASSIGN_OR_RETURN(Device * device, FindDevice(device_id));
    SD_ASSIGN_OR_RETURN(pinned, PinnedUpdate(device_id, version));
    sending = std::unique_lock<std::mutex>(device->send_mu);
    SD_RETURN_IF_ERROR(ChangeAdminState(device_id, [version](AdminState& s) { s.pinned_version = version; }));
    session = SetPinned(*device, pinned);
    return Status::Ok();
  }();
  LogAdminAction(who, "pin device " + LogSafe(device_id) + " to version " + std::to_string(version), outcome);
  if (session) session->OnUpdate(pinned, pinned);  // no core lock held but send_mu: it writes to the stream
  return outcome;
}

StatusOr<uint64_t> ServerCore::Rollback(const std::string& device_id, const std::string& who) {
  StatusOr<uint64_t> target = [&]() -> StatusOr<uint64_t> {
    SD_RETURN_IF_ERROR(FindDevice(device_id).status());
    uint64_t from = 0;
    if (const int64_t served = Counters(device_id).served_version; served > 0) {
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
  std::shared_ptr<DeviceSession> session;
  std::shared_ptr<const ModelUpdate> newest;
  std::unique_lock<std::mutex> sending;  // held until the newest version is queued on the stream
  Status outcome = [&]() -> Status {
    std::lock_guard<std::mutex> lock(admin_mu_);
    SD_ASSIGN_OR_RETURN(Device * device, FindDevice(device_id));
    sending = std::unique_lock<std::mutex>(device->send_mu);
    uint64_t was_pinned = 0;
    SD_RETURN_IF_ERROR(ChangeAdminState(device_id, [&was_pinned](AdminState& s) {
      was_pinned = s.pinned_version;
      s.pinned_version = 0;
    }));
    session = SetPinned(*device, nullptr);
    {
      std::lock_guard<std::mutex> device_lock(device->mu);
      newest = device->latest_full;
    }
    // A pinned device runs the pinned version: only a newer one is worth sending (the edge
    // refuses one that is not newer); an unpinned one has the newest already.
    if (!newest || was_pinned == 0 || newest->new_version <= was_pinned) newest = nullptr;
    return Status::Ok();
  }();
  LogAdminAction(who, "unpin device " + LogSafe(device_id), outcome);
  if (session && newest) session->OnUpdate(newest, newest);
  return outcome;
}

Status ServerCore::SetPaused(const std::string& device_id, bool paused, const std::string& who) {
  Status outcome = [&]() -> Status {
    std::lock_guard<std::mutex> lock(admin_mu_);
    SD_ASSIGN_OR_RETURN(Device * device, FindDevice(device_id));
    SD_RETURN_IF_ERROR(ChangeAdminState(device_id, [paused](AdminState& s) { s.paused = paused; }));
    const bool unit_paused = UnitPausedLocked(*device->unit);
    std::lock_guard<std::mutex> scheduler_lock(mu_);
    scheduler_.SetPaused(device->unit->key, unit_paused, NowSeconds());
    work_cv_.notify_all();
    return Status::Ok();
  }();
  LogAdminAction(who, (paused ? "pause training of device " : "resume training of device ") + LogSafe(device_id),
                 outcome);
  return outcome;
}

Status ServerCore::RequestRound(const std::string& device_id, const std::string& who) {
  Status outcome = [&]() -> Status {
    std::lock_guard<std::mutex> lock(admin_mu_);
    SD_ASSIGN_OR_RETURN(Device * device, FindDevice(device_id));
    const TrainingUnit& unit = *device->unit;
    if (UnitPausedLocked(unit)) return Status::FailedPrecondition(unit.label + " is paused; resume it first");
    int64_t frames = 0;
    for (const std::string& member : unit.members) frames += store_->Count(member, false);
    if (frames == 0) return Status::FailedPrecondition(unit.label + " has no training frames yet");
    std::lock_guard<std::mutex> scheduler_lock(mu_);
    scheduler_.RequestRound(unit.key, NowSeconds());
    work_cv_.notify_all();
    return Status::Ok();
  }();
  LogAdminAction(who, "train device " + LogSafe(device_id) + " now", outcome);
  return outcome;
}

DeviceCounters ServerCore::Counters(const std::string& device_id) const {
  auto device = FindDevice(device_id);
  if (!device.ok()) return {};
  DeviceCounters counters;
  {
    std::lock_guard<std::mutex> lock((*device)->mu);
    counters = (*device)->counters;
  }
  counters.bytes_in = (*device)->bytes_in;
  counters.bytes_out = (*device)->bytes_out;
  counters.first_contact_s = (*device)->first_contact_s;
  return counters;
}

void ServerCore::SetServedVersion(const std::string& device_id, uint64_t version) {
  metrics_.served_version.With({device_id}).Set(version);
  auto device = FindDevice(device_id);
  if (!device.ok()) return;
  std::lock_guard<std::mutex> lock((*device)->mu);
  (*device)->counters.served_version = static_cast<int64_t>(version);
}

std::vector<std::string> ServerCore::DeviceIds() const {
  std::vector<std::string> ids;
  for (const auto& [id, enrolment] : *Devices()) ids.push_back(id);
  return ids;
}

StatusOr<DeviceState> ServerCore::State(const std::string& device_id) const {
  const std::shared_ptr<const DeviceMap> devices = Devices();
  auto it = devices->find(device_id);
  if (it == devices->end()) return Status::NotFound("unknown device '" + LogSafe(device_id) + "'");
  Device& device = *it->second.device;
  DeviceState state;
  state.id = device_id;
  state.enabled = it->second.enabled;
  state.counters = Counters(device_id);
  state.admin = AdminStateOf(device_id);
  std::lock_guard<std::mutex> lock(device.mu);
  state.version = device.unit->trainer->version();
  state.group = device.unit->group;
  state.connected = !device.session.expired();
  state.rounds.assign(device.rounds.begin(), device.rounds.end());
  return state;
}

Status ServerCore::Regroup() {
  if (!config_.grouping.automatic) return Status::FailedPrecondition("grouping.mode is config: the groups are fixed");
  std::lock_guard<std::mutex> lock(regroup_mu_);
  return RegroupLocked();
}

void ServerCore::RegroupWhenDue() {
  std::unique_lock<std::mutex> lock(regroup_mu_, std::try_to_lock);
  if (!lock.owns_lock() || NowSeconds() < next_regroup_s_ || stopping_) return;
  Status regrouped = RegroupLocked();
  // From the end of this one: an evaluation's own time does not count against the interval.
  next_regroup_s_ = NowSeconds() + config_.grouping.every_s;
  if (!regrouped.ok() && !stopping_) spdlog::warn("grouping: not evaluated: {}", regrouped.ToString());
}

Status ServerCore::RegroupLocked() {
  const GroupingOptions& options = config_.grouping;
  // Who takes part: the units all of whose members have enough held-out frames (a unit is
  // judged whole or not at all).
  std::map<std::string, std::vector<LabelledFrame>> heldout;  // device -> its newest held-out frames
  std::map<std::string, std::shared_ptr<TrainingUnit>> current;  // by key
  std::map<std::string, TrainingUnit*> unit_of;                  // device -> its unit
  std::map<std::pair<std::string, uint64_t>, CachedImage> images;
  for (const auto& [id, enrolment] : *Devices()) {
    std::shared_ptr<TrainingUnit> unit = UnitOf(*enrolment.device);
    current[unit->key] = unit;
    unit_of[id] = unit.get();
    SD_ASSIGN_OR_RETURN(auto records, store_->Recent(id, true, options.heldout_frames));
    if (static_cast<int>(records.size()) < options.min_heldout_frames) continue;
    SD_ASSIGN_OR_RETURN(heldout[id], LoadFrames(*store_, records, config_.student, 1.0f, &images));
  }
  std::vector<std::shared_ptr<TrainingUnit>> taking_part;
  for (const auto& [key, unit] : current) {
    bool all = true;
    for (const std::string& member : unit->members) all = all && heldout.count(member) && unit_of[member] == unit.get();
    if (all) taking_part.push_back(unit);
  }
  if (taking_part.size() < 2 && (taking_part.empty() || taking_part.front()->members.size() < 2)) {
    spdlog::debug("grouping: nothing to decide ({} units with {} held-out frames per member)", taking_part.size(),
                  options.min_heldout_frames);
    return Status::Ok();
  }
  std::vector<UnitScores> scores;
  for (const auto& unit : taking_part) {
    UnitScores row;
    row.members = unit->members;
    row.comparable = unit->trainer->version() >= unit->comparable_from;
    for (const auto& other : taking_part)
      for (const std::string& device : other->members) {
        SD_ASSIGN_OR_RETURN(EvalResult result, unit->trainer->EvaluatePublished(heldout[device]));
        row.map50[device] = result.map50;
      }
    scores.push_back(std::move(row));
  }
  const GroupingDecision decision = DecideGroups(scores, options.margin);
  spdlog::info("grouping: transfer matrix (a unit's student: mAP50 on each device's newest {} held-out frames): {}",
               options.heldout_frames, TransferMatrix(scores));
  for (const std::string& reason : decision.reasons) spdlog::info("grouping: {}", reason);

  // The decided units that differ from the current ones, and the current units they replace.
  std::vector<const std::vector<std::string>*> changed;
  std::map<std::string, std::shared_ptr<TrainingUnit>> replaced;  // by key: the order their locks are taken in
  std::map<const std::vector<std::string>*, std::string> seed_of;  // changed group -> its seed ("" none)
  for (size_t g = 0; g < decision.groups.size(); ++g) {
    const std::vector<std::string>& group = decision.groups[g];
    TrainingUnit* first = unit_of.at(group.front());
    bool same = group.size() == first->members.size();
    for (const std::string& member : group) same = same && unit_of.at(member) == first;
    if (same) continue;
    changed.push_back(&group);
    seed_of[&group] = decision.seeds[g];
    for (const std::string& member : group) replaced[unit_of.at(member)->key] = current.at(unit_of.at(member)->key);
  }
  if (changed.empty()) {
    spdlog::info("grouping: no change; units now: {}", UnitsNow());
    return Status::Ok();
  }
  // A unit in a round is waited for, not torn down: its round ends and publishes to its members
  // first. No unit's round can begin meanwhile.
  std::vector<std::unique_lock<std::mutex>> training;
  for (auto& [key, unit] : replaced) training.emplace_back(unit->train_mu);
  if (stopping_) return Status::Aborted("shutting down");
  // Everything that can fail comes first, so that a failure changes nothing.
  std::vector<std::shared_ptr<TrainingUnit>> made;
  std::map<std::string, std::vector<std::string>> sources;  // new unit key -> the keys of the units it is made of
  std::vector<std::string> changes;
  for (const std::vector<std::string>* group : changed) {
    // The student of the unit that took the others (it serves them all), else the newest
    // version among the units it is made of; numbered after the newest of them, so that no
    // member's version goes down.
    std::set<TrainingUnit*> from_units;
    TrainingUnit* newest = nullptr;
    for (const std::string& member : *group) {
      TrainingUnit* unit = unit_of.at(member);
      from_units.insert(unit);
      if (!newest || unit->trainer->version() > newest->trainer->version()) newest = unit;
    }
    const std::string& seed = seed_of.at(group);
    TrainingUnit* from = seed.empty() ? newest : unit_of.at(seed);
    const bool split = group->size() == 1 && from->members.size() > 1;
    const std::string name = group->size() > 1 ? "auto" + std::to_string(++auto_groups_made_) : "";
    const uint64_t version = newest->trainer->version();
    SD_ASSIGN_OR_RETURN(auto unit, NewUnit(name, *group, from->trainer->weights(), version));
    unit->resumed_map50 = from->trainer->published_map50();
    unit->comparable_from = split ? version + 1 : std::max<uint64_t>(1, version);
    for (TrainingUnit* old : from_units) sources[unit->key].push_back(old->key);
    changes.push_back(fmt::format("{} ({}) from the student of {}, as version {}", unit->label,
                                  group->size() > 1 ? "members " + fmt::format("{}", fmt::join(*group, "+")) : "alone",
                                  from->label, version));
    made.push_back(std::move(unit));
  }
  std::vector<std::pair<Device*, std::shared_ptr<TrainingUnit>>> moves;
  for (const auto& unit : made)
    for (const std::string& member : unit->members) {
      SD_ASSIGN_OR_RETURN(Device * device, FindDevice(member));
      moves.emplace_back(device, unit);
    }
  for (auto& [key, unit] : replaced) unit->retired = true;
  for (auto& [device, unit] : moves) {
    std::lock_guard<std::mutex> lock(device->mu);
    device->unit = unit;
  }
  {
    std::lock_guard<std::mutex> lock(units_mu_);
    for (const auto& [key, unit] : replaced)
      if (auto it = units_.find(key); it != units_.end() && it->second == unit) units_.erase(it);
    for (const auto& unit : made) units_[unit->key] = unit;
  }
  training.clear();
  {
    // A new unit is paused while any of its members is (an admin's pause follows the device).
    std::lock_guard<std::mutex> admin_lock(admin_mu_);
    std::lock_guard<std::mutex> lock(mu_);
    scheduler_.Regrouped(sources, NowSeconds());
    for (const auto& unit : made) scheduler_.SetPaused(unit->key, UnitPausedLocked(*unit), NowSeconds());
    work_cv_.notify_all();
  }
  if (stopping_)  // BeginShutdown may have cancelled the units before these replaced them
    for (const auto& unit : made) unit->trainer->Cancel();
  for (const std::string& change : changes) spdlog::info("grouping: now {}", change);
  spdlog::info("grouping: units now: {}", UnitsNow());
  return Status::Ok();
}

std::string ServerCore::UnitsNow() const {
  std::map<std::string, std::vector<std::string>> members;  // group name ("" for none) -> devices
  std::string text;
  for (const auto& [id, enrolment] : *Devices()) {
    const std::string group = UnitOf(*enrolment.device)->group;
    if (group.empty()) {
      text += (text.empty() ? "" : " ") + id;
    } else {
      members[group].push_back(id);
    }
  }
  for (const auto& [group, ids] : members) text += fmt::format("{}{}={}", text.empty() ? "" : " ", group, fmt::join(ids, "+"));
  return text;
}

}  // namespace sd
