#include "server/cluster_backend.h"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "server/pg_blobs.h"
#include "server/pg_enrolment.h"
#include "server/pg_frame_store.h"
#include "server/pg_schema.h"

namespace sd {
namespace {

// Every replica must train the same student: edges move between them and their versions
// are one sequence. The first replica records its architecture; the others must match it.
Status CheckClusterStudent(const PgPool& pool, const std::string& fingerprint) {
  std::string cluster;
  SD_RETURN_IF_ERROR(pool.Transact("checking the cluster's student", [&](pqxx::dbtransaction& tx) {
    tx.exec_params("INSERT INTO cluster(student_fingerprint) VALUES($1) ON CONFLICT DO NOTHING", fingerprint);
    cluster = tx.exec1("SELECT student_fingerprint FROM cluster")[0].as<std::string>();
    return Status::Ok();
  }));
  if (cluster != fingerprint)
    return Status::FailedPrecondition("student: this replica trains '" + fingerprint +
                                      "', the cluster's replicas train '" + cluster +
                                      "': every replica must have the same student architecture");
  return Status::Ok();
}

}  // namespace

ClusterBackend::ClusterBackend(const ServerConfig& config, std::unique_ptr<PgPool> pool)
    : options_(config.storage),
      pool_(std::move(pool)),
      leases_(std::make_unique<PgLeases>(pool_.get(), ReplicaName(config.storage.replica), config.storage.lease_ttl_s)),
      rounds_(std::make_unique<PgRoundQueue>(pool_.get(), leases_->replica(), config.storage.lease_ttl_s)) {}

ClusterBackend::~ClusterBackend() { StopKeeper(); }

StatusOr<std::unique_ptr<ClusterBackend>> ClusterBackend::Open(const ServerConfig& config) {
  auto connected = PgPool::Connect(config.storage.postgres);
  // A database that cannot be reached at start is a configuration to fix (exit 2), not a
  // passing outage: the replica has nothing to serve from.
  if (!connected.ok()) return Status::FailedPrecondition("storage.dsn: " + connected.status().message());
  std::unique_ptr<PgPool> pool = std::move(connected).value();
  SD_RETURN_IF_ERROR(MigratePgSchema(*pool));
  SD_RETURN_IF_ERROR(CheckClusterStudent(*pool, config.student.Fingerprint()));
  std::unique_ptr<ClusterBackend> backend(new ClusterBackend(config, std::move(pool)));
  spdlog::info("replica {}: state in PostgreSQL at '{}' (schema {}), blobs in {}, leases of {} s", backend->replica(),
               backend->pool_->redacted_dsn(), PgSchemaVersion(), config.storage.blobs, config.storage.lease_ttl_s);
  return backend;
}

StatusOr<std::unique_ptr<PgFrameStore>> ClusterBackend::MakeFrameStore(Env* env) {
  std::unique_ptr<BlobStore> blobs;
  if (options_.blobs == "postgres") {
    blobs = DatabaseBlobStore();
  } else {
    SD_ASSIGN_OR_RETURN(blobs, DirectoryBlobStore(env, options_.blobs));
  }
  return std::make_unique<PgFrameStore>(pool_.get(), std::move(blobs), leases_.get());
}

StatusOr<std::unique_ptr<PgAdminStore>> ClusterBackend::MakeAdminStore() { return PgAdminStore::Open(pool_.get()); }

std::unique_ptr<EnrolmentSource> ClusterBackend::MakeEnrolmentSource() { return PgEnrolmentSource(pool_.get()); }

void ClusterBackend::StartKeeper(PgAdminStore* admin, Events events) {
  keeper_ = std::thread([this, admin, events = std::move(events)] { Keep(admin, events); });
}

void ClusterBackend::StopKeeper() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
  }
  if (keeper_.joinable()) keeper_.join();
}

void ClusterBackend::Keep(PgAdminStore* admin, const Events& events) {
  const auto period = std::chrono::milliseconds(static_cast<int64_t>(options_.lease_ttl_s * 1000 / 3));
  for (;;) {
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      cv_.WaitFor(period);
      if (stopping_) return;
    }
    for (const std::string& device : leases_->RenewAll()) {
      spdlog::warn("replica {}: lost the lease of device {}: another replica serves it now", replica(), device);
      events.lease_lost(device);
    }
    rounds_->RenewAll();
    auto changed = admin->Refresh();
    if (!changed.ok()) {
      spdlog::warn("replica {}: {}", replica(), changed.status().ToString());
      continue;
    }
    for (const std::string& device : *changed) events.admin_changed(device);
  }
}

}  // namespace sd
