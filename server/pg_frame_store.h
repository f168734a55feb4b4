// The cluster backend's FrameStore: rows in PostgreSQL, images and checkpoints in a BlobStore
// (server/pg_blobs.h), shared by every replica (docs/scale-out.md). Keeps every promise of
// server/frame_store.h; the contract suites run against it (tests/frame_store_backends.h).
//
// Durability: a frame's row and its blob commit together (database blobs: the same
// transaction; directory blobs: the file is written and synced before the row commits), so
// Put returns true only once both are durable, and a row is never visible without its blob.
// With leases (PgLeases), every Put and PutVersion for a device first checks, in its
// transaction, that this replica still holds the device's lease at its epoch.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/frame_store.h"
#include "server/pg_blobs.h"
#include "server/pg_connection.h"
#include "server/pg_leases.h"

namespace sd {

class PgFrameStore : public FrameStore {
 public:
  // `pool` must be migrated (MigratePgSchema) and outlive the store; `leases` null: no fencing
  // (one writer, tools, tests of the contract).
  PgFrameStore(const PgPool* pool, std::unique_ptr<BlobStore> blobs, const PgLeases* leases, bool read_only = false);
  // A store with its own connections (tools, tests): connects, migrates, no fencing. `blobs`:
  // "postgres" or a directory.
  static StatusOr<std::unique_ptr<PgFrameStore>> Open(const PgOptions& options, const std::string& blobs,
                                                      Env* env = Env::Default(), bool read_only = false);

  using FrameStore::Put;
  StatusOr<bool> Put(const FrameRecord& frame, std::string_view jpeg) override;
  uint64_t LastSequence(const std::string& device_id) const override;
  int64_t Count(const std::string& device_id, bool validation) const override;
  StoredUsage Usage(const std::string& device_id) const override;
  StatusOr<std::vector<FrameRecord>> Recent(const std::string& device_id, bool validation, int limit) const override;
  StatusOr<std::vector<FrameRecord>> Older(const std::string& device_id, bool validation, uint64_t before_sequence,
                                           int limit) const override;
  StatusOr<std::vector<FrameRecord>> Since(const std::string& device_id, uint64_t after_sequence,
                                           int limit) const override;
  StatusOr<std::string> LoadImage(const FrameRecord& frame) const override;
  Status PutVersion(const VersionRecord& version, const std::string& checkpoint_bytes) override;
  StatusOr<VersionRecord> LatestVersion(const std::string& device_id) const override;
  StatusOr<std::vector<VersionRecord>> Versions(const std::string& device_id, int limit) const override;
  StatusOr<std::string> LoadCheckpoint(const VersionRecord& version) const override;
  StatusOr<PruneResult> Prune(const std::string& device_id, const RetentionBounds& bounds,
                              const PruneKeep& keep) override;
  std::vector<std::string> Devices() const override;

  // One device's row of a version trained on a round claim, with the round's update as that
  // device gets it (empty: none kept).
  struct VersionWithUpdate {
    VersionRecord record;
    std::string update_payload;
  };
  // A version trained on a round claim (server/pg_round_queue.h) by a replica that may not
  // serve its devices (a group's members may be served by several): `fence` (the claim's
  // check) replaces the leases', and every member's row, its update for the serving replica
  // to send, and the one checkpoint are stored in one transaction, all or none.
  Status PutClaimedVersions(const std::vector<VersionWithUpdate>& versions, const std::string& checkpoint_bytes,
                            const std::function<Status(pqxx::dbtransaction&)>& fence);
  // The update kept with a version by PutClaimedVersions; NotFound when none was kept.
  StatusOr<std::string> LoadUpdatePayload(const std::string& device_id, uint64_t version) const;
  const std::string& dir() const override { return description_; }

 private:
  StatusOr<std::vector<FrameRecord>> NewestOfKind(const std::string& device_id, bool validation, uint64_t max_sequence,
                                                  int limit) const;
  Status CheckWritable(const std::string& what) const;
  // PutVersion's and PutClaimedVersions' write: `fence` first, then the rows and their
  // checkpoint (and updates, where given) in one transaction.
  Status StoreVersions(const std::vector<VersionWithUpdate>& versions, const std::string& checkpoint_bytes,
                       const std::function<Status(pqxx::dbtransaction&)>& fence);

  std::unique_ptr<PgPool> owned_pool_;  // set by Open only
  const PgPool* const pool_;
  const std::unique_ptr<BlobStore> blobs_;
  const PgLeases* const leases_;
  const bool read_only_;
  const std::string description_;  // "postgres <redacted dsn> (blobs: ...)"
};

}  // namespace sd
