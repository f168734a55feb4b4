// Pins and pauses (server/admin_store.h) kept in PostgreSQL, so that an admin action taken on
// any replica holds on every replica and survives all of them. Reads come from a copy in
// memory (callers read under their own locks, and a read must never wait for the network);
// Update writes through, and Refresh (polled by the server) brings in what other replicas did.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "server/admin_store.h"
#include "server/pg_connection.h"

namespace sd {

class PgAdminStore : public AdminStore {
 public:
  // Reads every device's state now: Unavailable when the database cannot be read.
  static StatusOr<std::unique_ptr<PgAdminStore>> Open(const PgPool* pool);

  AdminState Get(const std::string& device_id) const override SD_EXCLUDES(mu_);
  // One transaction that locks the device's row, applies `change` to the stored state (not
  // to the copy: another replica may have changed it) and commits.
  Status Update(const std::string& device_id, const std::function<void(AdminState&)>& change) override
      SD_EXCLUDES(mu_);
  // Reads the states again; returns the devices whose state another replica changed.
  StatusOr<std::vector<std::string>> Refresh() SD_EXCLUDES(mu_);

 private:
  explicit PgAdminStore(const PgPool* pool) : pool_(pool) {}
  StatusOr<std::map<std::string, AdminState>> ReadAll() const;

  const PgPool* const pool_;
  mutable Mutex mu_;  // a leaf
  std::map<std::string, AdminState> states_ SD_GUARDED_BY(mu_);
};

}  // namespace sd
