// Which replica serves which device (docs/scale-out.md, "Leases"): a row per device in
// PostgreSQL naming its replica, a fencing epoch and an expiry on the database's clock. A
// replica takes a device's lease when the device's stream authenticates, renews what it holds
// every ttl/3, and gives the lease up when the stream ends; a replica that dies stops renewing
// and its leases expire after ttl. Every write for a device (a frame, a version) checks, in its
// own transaction, that this replica still holds the lease at the epoch it took: a replica
// that lost the device (a pause longer than ttl, a partition) can no longer store anything
// for it, even while it still believes it serves the device.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "server/pg_connection.h"

namespace pqxx {
class dbtransaction;
}

namespace sd {

class PgLeases {
 public:
  PgLeases(const PgPool* pool, std::string replica, double ttl_s);

  // Takes (or takes again) the device's lease for this replica with a new epoch. Unavailable
  // naming the holder while another replica's lease is live: the edge retries with back-off.
  StatusOr<uint64_t> Acquire(const std::string& device_id) SD_EXCLUDES(mu_);
  // Extends every lease held by ttl; returns the devices whose lease was lost (taken over after
  // it expired) and forgets them. A database that cannot be reached loses nothing yet: the
  // leases simply run towards their expiry.
  std::vector<std::string> RenewAll() SD_EXCLUDES(mu_);
  // Gives up the lease taken at `epoch` if it is still this replica's at that epoch (a newer
  // stream of the device may have taken it again since, at a higher one).
  void Release(const std::string& device_id, uint64_t epoch) SD_EXCLUDES(mu_);
  // The epoch this replica holds for the device; 0 when none.
  uint64_t Held(const std::string& device_id) const SD_EXCLUDES(mu_);
  // In a write's transaction: FailedPrecondition unless this replica still holds the device's
  // lease at the epoch it took, unexpired. The row is share-locked until the write commits, so
  // a takeover waits for the write rather than slipping in between.
  Status CheckFence(pqxx::dbtransaction& tx, const std::string& device_id) const SD_EXCLUDES(mu_);

  const std::string& replica() const { return replica_; }
  double ttl_s() const { return ttl_s_; }

 private:
  const PgPool* const pool_;
  const std::string replica_;
  const double ttl_s_;
  mutable Mutex mu_;  // a leaf
  std::map<std::string, uint64_t> held_ SD_GUARDED_BY(mu_);  // device id -> epoch
};

}  // namespace sd
