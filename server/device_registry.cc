#include "server/device_registry.h"

#include <sys/stat.h>

#include <cmath>

#include <spdlog/spdlog.h>

#include "common/base/log_safe.h"
#include "server/frame_records.h"

namespace sd {
namespace {

bool SameToken(const TokenHash& a, const TokenHash& b) { return a.salt == b.salt && a.digest == b.digest; }

// What tells a changed devices file apart without reading it: a rename (atomic replace)
// changes the inode, an edit in place the size or the mtime. Through stat() directly: Env has
// no mtime, and only change detection depends on it.
struct FileStamp {
  bool exists = false;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp& o) const {
    return exists == o.exists && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
  }
};

FileStamp StampOf(const std::string& path) {
  struct stat st;
  FileStamp stamp;
  if (::stat(path.c_str(), &st) != 0) return stamp;
  stamp.exists = true;
  stamp.inode = st.st_ino;
  stamp.size = st.st_size;
  stamp.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return stamp;
}

class DevicesFile : public EnrolmentSource {
 public:
  DevicesFile(Env* env, std::string path) : env_(env), path_(std::move(path)) {}
  StatusOr<EnrolledDevices> Read() override {
    read_stamp_ = StampOf(path_);  // before the read: a change during it is seen at the next poll
    return ReadDevicesFile(env_, path_);
  }
  bool MayHaveChanged() override { return !(StampOf(path_) == read_stamp_); }
  const std::string& name() const override { return path_; }

 private:
  Env* const env_;
  const std::string path_;
  FileStamp read_stamp_;  // Read and MayHaveChanged run on one thread at a time (the registry's reload lock)
};

}  // namespace

std::unique_ptr<EnrolmentSource> DevicesFileSource(Env* env, const std::string& path) {
  return std::make_unique<DevicesFile>(env, path);
}

DeviceRegistry::DeviceRegistry(Options options, DeviceMaker make_device)
    : inline_tokens_(std::move(options.inline_tokens)),
      source_(std::move(options.source)),
      poll_s_(options.poll_s),
      make_device_(std::move(make_device)) {}

Status DeviceRegistry::Options::Validate() const {
  if (!(poll_s >= 0) || !std::isfinite(poll_s))
    return Status::InvalidArgument("poll_s: must be >= 0 (0: no watcher), got " + std::to_string(poll_s));
  for (const auto& [id, token] : inline_tokens) {
    if (!IsValidDeviceId(id))
      return Status::InvalidArgument("inline_tokens: '" + LogSafe(id) + "' is not a valid device id");
    if (token.empty()) return Status::InvalidArgument("inline_tokens: device '" + LogSafe(id) + "' has an empty token");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<DeviceRegistry>> DeviceRegistry::Create(Options options, DeviceMaker make_device) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("device registry"));
  std::unique_ptr<DeviceRegistry> registry(new DeviceRegistry(std::move(options), std::move(make_device)));
  // Inline tokens are hashed like the devices file's, so one comparison serves both.
  auto devices = std::make_shared<DeviceMap>();
  for (const auto& [id, token] : registry->inline_tokens_) {
    Enrolment& enrolment = (*devices)[id];
    SD_ASSIGN_OR_RETURN(std::unique_ptr<Device> device, registry->make_device_(id));
    enrolment.device = std::move(device);
    SD_ASSIGN_OR_RETURN(enrolment.token, HashToken(token));
  }
  {
    MutexLock lock(&registry->mu_);
    registry->devices_ = std::move(devices);
  }
  if (registry->source_) {
    std::vector<std::shared_ptr<DeviceSession>> revoked;  // none at start: no stream is attached yet
    MutexLock lock(&registry->reload_mu_);
    SD_RETURN_IF_ERROR(registry->Apply(/*at_start=*/true, &revoked));
  }
  return registry;
}

void DeviceRegistry::StartWatching() {
  if (source_ && poll_s_ > 0 && !watch_thread_.joinable()) watch_thread_ = std::thread([this] { Watch(); });
}

DeviceRegistry::~DeviceRegistry() { JoinWatcher(); }

void DeviceRegistry::JoinWatcher() {
  BeginShutdown();
  if (watch_thread_.joinable()) watch_thread_.join();
}

void DeviceRegistry::BeginShutdown() {
  MutexLock lock(&watch_mu_);
  stopping_ = true;
  watch_cv_.SignalAll();
}

Status DeviceRegistry::Reload() {
  std::vector<std::shared_ptr<DeviceSession>> revoked;
  Status applied = Status::FailedPrecondition("server.yaml configures no devices_file");
  if (source_) {
    MutexLock lock(&reload_mu_);
    applied = Apply(/*at_start=*/false, &revoked);
  }
  if (!applied.ok())
    spdlog::error("devices file not applied, the devices stay as they were: {}", applied.ToString());
  EndRevoked(revoked);
  return applied;
}

void DeviceRegistry::EndRevoked(const std::vector<std::shared_ptr<DeviceSession>>& sessions) {
  for (const auto& session : sessions) session->End(Status::Unauthenticated("unknown device or wrong token"));
}

Status DeviceRegistry::Apply(bool at_start, std::vector<std::shared_ptr<DeviceSession>>* revoked_sessions) {
  const std::string& path = source_->name();
  auto read = source_->Read();
  if (!read.ok() && !(at_start && read.status().code() == Status::Code::kNotFound)) return read.status();
  if (!read.ok()) spdlog::warn("{}: nothing enrolled there yet", path);
  const EnrolledDevices listed = read.ok() ? *read : EnrolledDevices();
  const std::shared_ptr<const DeviceMap> before = Snapshot();
  for (const auto& [id, entry] : listed)
    if (inline_tokens_.count(id))
      return Status::InvalidArgument(path + ": device " + id + " is configured in server.yaml's devices too");

  // Everything that can fail comes first: new devices are built (checkpoints loaded) before
  // anything is published, so a failure leaves the set as it was.
  auto next = std::make_shared<DeviceMap>(*before);
  std::vector<std::string> changes, revoked;
  for (const auto& [id, entry] : listed) {
    auto old = before->find(id);
    if (old == before->end()) {
      Enrolment& enrolment = (*next)[id];
      SD_ASSIGN_OR_RETURN(std::unique_ptr<Device> device, make_device_(id));
      enrolment.device = std::move(device);
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
    MutexLock lock(&mu_);
    devices_ = next;
  }
  for (const std::string& change : changes) spdlog::info("devices file {}: {}", path, change);
  if (!at_start && changes.empty()) spdlog::info("devices file {}: reloaded, nothing changed", path);
  // A stream attached before the publish is ended (by the caller, outside reload_mu_); one after
  // it was refused.
  for (const std::string& id : revoked) {
    Device& device = *(*next)[id].device;
    std::shared_ptr<DeviceSession> session;
    {
      MutexLock lock(&device.mu);
      session = device.session.lock();
      device.session.reset();
    }
    if (!session) continue;
    spdlog::info("device {}: its open stream is closed (access revoked)", LogSafe(id));
    revoked_sessions->push_back(std::move(session));
  }
  return Status::Ok();
}

void DeviceRegistry::Watch() {
  const auto period = std::chrono::duration<double>(poll_s_);
  for (;;) {
    {
      MutexLock lock(&watch_mu_);
      if (stopping_) return;
      watch_cv_.WaitFor(period);
      if (stopping_) return;
    }
    bool changed;
    {
      MutexLock reload(&reload_mu_);
      changed = source_->MayHaveChanged();
    }
    if (changed) Reload().ok();  // logged there; a broken file is tried again when it changes
  }
}

std::shared_ptr<const DeviceRegistry::DeviceMap> DeviceRegistry::Snapshot() const {
  MutexLock lock(&mu_);
  return devices_;
}

StatusOr<Device*> DeviceRegistry::Find(const std::string& device_id) const {
  const std::shared_ptr<const DeviceMap> devices = Snapshot();
  auto it = devices->find(device_id);
  if (it == devices->end()) return Status::NotFound("unknown device '" + LogSafe(device_id) + "'");
  return it->second.device.get();
}

std::vector<std::string> DeviceRegistry::Ids() const {
  std::vector<std::string> ids;
  for (const auto& [id, enrolment] : *Snapshot()) ids.push_back(id);
  return ids;
}

std::vector<Device*> DeviceRegistry::All() const {
  std::vector<Device*> devices;
  for (const auto& [id, enrolment] : *Snapshot()) devices.push_back(enrolment.device.get());
  return devices;
}

bool DeviceRegistry::Enabled(const std::string& device_id) const {
  const std::shared_ptr<const DeviceMap> devices = Snapshot();
  auto it = devices->find(device_id);
  return it != devices->end() && it->second.enabled;
}

Status DeviceRegistry::Attach(const std::string& device_id, const std::string& token, bool accept,
                              std::shared_ptr<DeviceSession> session, const std::function<Status()>& admit) {
  // Unknown ids are hashed too, against a fixed salt, so that the time taken does not tell
  // which ids exist.
  static const TokenHash kNobody = HashTokenWithSalt("", "unknown device");
  std::shared_ptr<DeviceSession> previous;
  const char* refusal = nullptr;
  Status admitted = Status::Ok();
  {
    // Held until the session is attached: a reload publishes under it, so it either refused
    // this stream here or will find it attached and end it.
    MutexLock lock(&mu_);
    auto it = devices_->find(device_id);
    const Enrolment* enrolment = it == devices_->end() ? nullptr : &it->second;
    const bool token_ok = TokenMatches(enrolment ? enrolment->token : kNobody, token);
    if (!enrolment) {
      refusal = "unknown device";
    } else if (!token_ok) {
      refusal = "wrong token";
    } else if (!enrolment->enabled) {
      refusal = enrolment->listed ? "device disabled" : "device removed from the devices file";
    } else if (accept && admit && !(admitted = admit()).ok()) {
      // Not served here now (another replica holds the device): nothing attached.
    } else if (accept) {
      Device& device = *enrolment->device;
      MutexLock device_lock(&device.mu);
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
  if (!admitted.ok()) {
    spdlog::info("device {}: stream refused: {}", device_id, admitted.message());
    return admitted;
  }
  if (previous && previous != session) {
    spdlog::warn("device {}: a new stream replaces the open one", device_id);
    previous->End(Status::Aborted("replaced by a newer stream of device " + device_id));
  }
  return Status::Ok();
}

bool DeviceRegistry::Detach(const std::string& device_id, const DeviceSession* session) {
  auto device = Find(device_id);
  if (!device.ok()) return false;
  MutexLock lock(&(*device)->mu);
  auto current = (*device)->session.lock();
  if (current && current.get() != session) return false;
  (*device)->session.reset();
  return true;
}

}  // namespace sd
