// Who may connect as which device, and each device's live stream. Devices come from server.yaml
// (fixed) and from an enrolment source (the devices file today, shared storage for replicas
// in issue 24), reloaded all-or-nothing; every device is made once and never destroyed while
// the registry lives, so a Device* stays valid. Owns the enrolment snapshot, its reloads and
// the thread that watches the source.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "common/base/token_hash.h"
#include "server/device.h"
#include "server/devices_file.h"

namespace sd {

// Where enrolled devices come from. Read() may be slow (a file, a database); MayHaveChanged()
// is polled and must be cheap.
class EnrolmentSource {
 public:
  virtual ~EnrolmentSource() = default;
  // The devices enrolled now; NotFound when nothing was ever enrolled (no devices file yet).
  virtual StatusOr<EnrolledDevices> Read() = 0;
  // Whether Read() may return something else than at the last Read().
  virtual bool MayHaveChanged() = 0;
  // For log lines: the file's path.
  virtual const std::string& name() const = 0;
};

// The devices file (server/devices_file.h); a change is told by its inode, size and mtime.
std::unique_ptr<EnrolmentSource> DevicesFileSource(Env* env, const std::string& path);

class DeviceRegistry {
 public:
  // Makes a device's server-side state (its checkpoint loaded, its unit joined); called on the
  // thread that creates or reloads the registry, never a stream's.
  using DeviceMaker = std::function<StatusOr<std::unique_ptr<Device>>(const std::string& device_id)>;
  struct Options {
    std::map<std::string, std::string> inline_tokens;  // server.yaml's devices: id -> token
    std::unique_ptr<EnrolmentSource> source;           // null: no devices file
    double poll_s = 0;                                 // > 0: watch the source that often

    // "<field>: <problem>": poll_s finite and >= 0, inline ids usable as device ids, tokens
    // not empty. Create runs it.
    Status Validate() const;
  };
  // Makes every inline device and every device the source lists. A source that has nothing yet
  // is no error.
  static StatusOr<std::unique_ptr<DeviceRegistry>> Create(Options options, DeviceMaker make_device);
  // Starts the thread that polls the source every poll_s (none without a source or poll_s):
  // once the owner is ready for reloads from it.
  void StartWatching();
  ~DeviceRegistry();  // stops the watcher

  // Authenticates a hello and makes `session` the device's one live stream; a stream that had
  // that role is ended as replaced (outside any lock). Unknown, disabled or removed device, or
  // wrong token: Unauthenticated with one message for all, so a client cannot tell which ids
  // exist. `accept` false (another student architecture) attaches nothing and returns Ok for
  // the caller to refuse. One step, so that a reload that revokes the device either refuses
  // the stream here or finds it attached and ends it.
  //
  // `admit`, when given, runs for an authenticated, enabled device before its stream is
  // attached (with the registry's lock held: it must be quick); its refusal is returned as it
  // is and nothing is attached. The cluster backend takes the device's lease there.
  Status Attach(const std::string& device_id, const std::string& token, bool accept,
                std::shared_ptr<DeviceSession> session, const std::function<Status()>& admit = nullptr)
      SD_EXCLUDES(mu_);
  // Forgets `session` if it is still the device's live stream; true when it was (or when the
  // device has no live stream left), false when another stream replaced it.
  bool Detach(const std::string& device_id, const DeviceSession* session) SD_EXCLUDES(mu_);

  // Reads the source and applies it all-or-nothing: new devices are made, changed ones take
  // effect, the open stream of a device disabled, removed or given a new token is ended with
  // UNAUTHENTICATED; every change is logged. On any error the devices stay as they were.
  // Devices are never destroyed: a removed one stays, refused, and continues where it was when
  // it comes back. FailedPrecondition without a source.
  Status Reload() SD_EXCLUDES(reload_mu_);
  // Stops the watcher; JoinWatcher (or the destructor) waits for it.
  void BeginShutdown() SD_EXCLUDES(watch_mu_);
  void JoinWatcher() SD_EXCLUDES(watch_mu_);

  // The device, enabled or not; NotFound for an id not in the set.
  StatusOr<Device*> Find(const std::string& device_id) const SD_EXCLUDES(mu_);
  // Every device of the current set (removed ones included), sorted.
  std::vector<std::string> Ids() const SD_EXCLUDES(mu_);
  // Every device of the current set, sorted by id.
  std::vector<Device*> All() const SD_EXCLUDES(mu_);
  // May connect now; false for an unknown id.
  bool Enabled(const std::string& device_id) const SD_EXCLUDES(mu_);

 private:
  // A device and who may connect as it. Snapshots of the whole set are immutable and replaced
  // as a whole by a reload.
  struct Enrolment {
    std::shared_ptr<Device> device;
    TokenHash token;
    bool enabled = true;     // may connect: listed, and enabled in its file entry
    bool from_file = false;  // from the source (else inline in server.yaml: never reloaded)
    bool listed = true;      // still in the source (a removed device stays, disabled)
  };
  using DeviceMap = std::map<std::string, Enrolment>;

  DeviceRegistry(Options options, DeviceMaker make_device);
  std::shared_ptr<const DeviceMap> Snapshot() const SD_EXCLUDES(mu_);
  // Reload's work. At start a source with nothing yet is no error. The streams of devices it
  // revoked go to `revoked`, for the caller to end once reload_mu_ is released.
  Status Apply(bool at_start, std::vector<std::shared_ptr<DeviceSession>>* revoked) SD_REQUIRES(reload_mu_);
  // Ends revoked streams (outside every lock of the registry).
  static void EndRevoked(const std::vector<std::shared_ptr<DeviceSession>>& sessions);
  // Polls the source every poll_s and reloads it when it may have changed.
  void Watch() SD_EXCLUDES(watch_mu_);

  const std::map<std::string, std::string> inline_tokens_;
  const std::unique_ptr<EnrolmentSource> source_;
  const double poll_s_;
  const DeviceMaker make_device_;

  Mutex reload_mu_ SD_ACQUIRED_BEFORE(mu_);  // one reload at a time, held through it
  // Guards the pointer devices_ (not what it points to). Held by Attach until the session is
  // attached, and by a reload while it publishes a new set: see Attach.
  mutable Mutex mu_;
  std::shared_ptr<const DeviceMap> devices_ SD_GUARDED_BY(mu_);
  Mutex watch_mu_;  // pairs with watch_cv_, which BeginShutdown signals
  CondVar watch_cv_{&watch_mu_};
  bool stopping_ SD_GUARDED_BY(watch_mu_) = false;
  std::thread watch_thread_;
};

}  // namespace sd
