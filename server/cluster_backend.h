// The server's state on PostgreSQL, shared by replicas (storage.backend postgres,
// docs/scale-out.md): connects and migrates at start, refuses a replica whose student differs
// from the cluster's, makes the frame store, admin store and enrolment source over the shared
// database, and keeps this replica's leases alive. ServerCore uses it in place of the files of
// storage_dir.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "server/device_registry.h"
#include "server/frame_store.h"
#include "server/pg_admin_store.h"
#include "server/pg_connection.h"
#include "server/pg_frame_store.h"
#include "server/pg_leases.h"
#include "server/pg_round_queue.h"
#include "server/server_config.h"

namespace sd {

class ClusterBackend {
 public:
  // Connects (Unavailable naming the redacted DSN when PostgreSQL cannot be reached), applies
  // the schema migrations, and records or checks the cluster's student: FailedPrecondition
  // when this replica's config trains another architecture than the cluster's.
  static StatusOr<std::unique_ptr<ClusterBackend>> Open(const ServerConfig& config);
  ~ClusterBackend();  // stops the keeper

  StatusOr<std::unique_ptr<PgFrameStore>> MakeFrameStore(Env* env);
  StatusOr<std::unique_ptr<PgAdminStore>> MakeAdminStore();
  std::unique_ptr<EnrolmentSource> MakeEnrolmentSource();
  PgLeases& leases() { return *leases_; }
  PgRoundQueue& rounds() { return *rounds_; }
  const std::string& replica() const { return leases_->replica(); }

  // What the keeper tells the server, on its thread: a lease this replica lost (another
  // replica serves the device now), a device whose admin state another replica changed.
  struct Events {
    std::function<void(const std::string& device_id)> lease_lost;
    std::function<void(const std::string& device_id)> admin_changed;
  };
  // Starts the keeper: every lease_ttl_s / 3 it renews the leases and round claims held and
  // reads the admin state again (`admin`, the store MakeAdminStore made).
  void StartKeeper(PgAdminStore* admin, Events events) SD_EXCLUDES(mu_);
  void StopKeeper() SD_EXCLUDES(mu_);

 private:
  ClusterBackend(const ServerConfig& config, std::unique_ptr<PgPool> pool);
  void Keep(PgAdminStore* admin, const Events& events) SD_EXCLUDES(mu_);

  const StorageOptions options_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<PgLeases> leases_;
  std::unique_ptr<PgRoundQueue> rounds_;
  Mutex mu_;
  CondVar cv_{&mu_};
  bool stopping_ SD_GUARDED_BY(mu_) = false;
  std::thread keeper_;
};

}  // namespace sd
