// An operator's overrides of devices (docs/operations.md, "Admin actions"): pins and pauses,
// kept durably so that they survive a restart. Behind an interface so that replicas can keep
// them in shared storage (issue 24); FileAdminStore keeps them in storage_dir/admin_state.json.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/base/env.h"
#include "common/base/mutex.h"
#include "common/base/status.h"

namespace sd {

struct AdminState {
  uint64_t pinned_version = 0;  // 0: not pinned; the device gets every published version
  bool paused = false;          // its training unit (its group's, in a group) is not scheduled
};

class AdminStore {
 public:
  virtual ~AdminStore() = default;
  // The device's state; the default state for a device never acted on.
  virtual AdminState Get(const std::string& device_id) const = 0;
  // Applies `change` to the device's state and saves it durably before returning. On a failed
  // save the state stays as it was, in memory as in storage. Thread-safe.
  virtual Status Update(const std::string& device_id, const std::function<void(AdminState&)>& change) = 0;
};

class FileAdminStore : public AdminStore {
 public:
  // Reads `storage_dir`/admin_state.json (no file: no device acted on yet). DataLoss for a
  // file that is not an admin state file.
  static StatusOr<std::unique_ptr<FileAdminStore>> Open(Env* env, const std::string& storage_dir);
  // Where the state lives, for error messages.
  const std::string& path() const { return path_; }

  AdminState Get(const std::string& device_id) const override SD_EXCLUDES(mu_);
  Status Update(const std::string& device_id, const std::function<void(AdminState&)>& change) override
      SD_EXCLUDES(save_mu_, mu_);

 private:
  FileAdminStore(Env* env, std::string path) : env_(env), path_(std::move(path)) {}
  Status Load() SD_EXCLUDES(mu_);
  // `states` written as the whole file, durably.
  Status Save(const std::map<std::string, AdminState>& states) const;

  Env* const env_;
  const std::string path_;
  // One Update at a time, held through its save: a reader (Get) never waits for the disk, so
  // callers may read under their own locks.
  Mutex save_mu_ SD_ACQUIRED_BEFORE(mu_);
  mutable Mutex mu_;  // a leaf: nothing else is taken while it is held
  std::map<std::string, AdminState> states_ SD_GUARDED_BY(mu_);  // by device id; devices never acted on are absent
};

}  // namespace sd
