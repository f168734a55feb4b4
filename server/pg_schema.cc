#include "server/pg_schema.h"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace sd {
namespace {

// Advisory lock key: "sdschema" as a number, the same in every replica.
constexpr int64_t kMigrationLock = 0x7364736368656d61;

// Migration i+1 is kMigrations[i]. Append only: a shipped migration never changes.
constexpr const char* kMigrations[] = {
    // 1: the frame store, blobs in the database, admin state, enrolment, leases, replicas.
    R"sql(
CREATE TABLE frames(
  device_id text NOT NULL,
  sequence bigint NOT NULL,
  frame_index bigint NOT NULL,
  capture_time_s double precision NOT NULL,   -- NaN kept as NaN
  source_width integer NOT NULL,
  source_height integer NOT NULL,
  image_score real NOT NULL,
  validation boolean NOT NULL,
  labels text NOT NULL,                       -- EncodeLabels
  embedding bytea,                            -- float32s; NULL when none
  privacy text NOT NULL DEFAULT '',           -- the edge's mask declaration; '' when none
  image_bytes bigint NOT NULL,
  image_key text NOT NULL,                    -- blobs.key or the shared directory's name
  stored_by text NOT NULL,                    -- the replica that stored it (audits, tests)
  lease_epoch bigint NOT NULL,                -- the lease it was stored under
  PRIMARY KEY(device_id, sequence));
CREATE INDEX frames_by_kind ON frames(device_id, validation, sequence);
CREATE TABLE versions(
  device_id text NOT NULL,
  version bigint NOT NULL CHECK (version > 0),
  base_version bigint NOT NULL,
  encoding text NOT NULL,
  weights_checksum text NOT NULL,
  val_map50 double precision NOT NULL,
  created_ms bigint NOT NULL,
  checkpoint_bytes bigint NOT NULL,
  checkpoint_key text NOT NULL,
  stored_by text NOT NULL,
  PRIMARY KEY(device_id, version));           -- a version number is used once, whoever trains
CREATE INDEX frames_by_image ON frames(image_key);
CREATE INDEX versions_by_checkpoint ON versions(checkpoint_key);
CREATE TABLE blobs(
  key text PRIMARY KEY,                       -- sha256 of the bytes, hex
  bytes bytea NOT NULL);
CREATE TABLE devices(device_id text PRIMARY KEY);  -- any frame or version
CREATE TABLE admin_state(
  device_id text PRIMARY KEY,
  pinned_version bigint NOT NULL DEFAULT 0,
  paused boolean NOT NULL DEFAULT false,
  changed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE enrolled_devices(
  device_id text PRIMARY KEY,
  token_hash text NOT NULL,                   -- TokenHash's text: never the token
  enabled boolean NOT NULL DEFAULT true,
  changed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE enrolment_generation(one boolean PRIMARY KEY DEFAULT true CHECK (one), generation bigint NOT NULL);
INSERT INTO enrolment_generation VALUES (true, 0);
CREATE TABLE device_leases(
  device_id text PRIMARY KEY,
  replica text NOT NULL,
  epoch bigint NOT NULL,                      -- fencing: bumped by every new holder
  expires_at timestamptz NOT NULL);
CREATE TABLE cluster(
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  student_fingerprint text NOT NULL);         -- every replica trains the same student
)sql",
    // 2: rounds claimed by any replica (server/pg_round_queue.h); a version keeps the update
    // its round made, for the replica serving the device to send.
    R"sql(
CREATE TABLE round_queue(
  unit text PRIMARY KEY,                      -- a unit has one round queued or running at most
  iterations integer NOT NULL,
  why text NOT NULL,                          -- the scheduler's reason, for the log
  requested_by text NOT NULL,                 -- the replica serving the unit when it was queued
  requested_at timestamptz NOT NULL DEFAULT now(),
  claimed_by text,                            -- NULL: waiting
  claim_epoch bigint NOT NULL DEFAULT 0,      -- fencing: bumped by every claim
  claim_expires_at timestamptz,
  attempts integer NOT NULL DEFAULT 0);       -- claims so far (a claimant that died counts)
CREATE INDEX round_queue_by_age ON round_queue(requested_at);
ALTER TABLE versions ADD COLUMN update_payload bytea;   -- NULL: none kept (the serving replica sent it)
)sql",
};

}  // namespace

int PgSchemaVersion() { return static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0])); }

Status MigratePgSchema(const PgPool& pool) {
  int found = 0;
  Status status = pool.Transact("applying the schema migrations", [&](pqxx::dbtransaction& tx) -> Status {
    // Transaction-scoped: released at commit or when a dying replica's connection drops.
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
    tx.exec("CREATE TABLE IF NOT EXISTS schema_migrations(version integer PRIMARY KEY, applied_at timestamptz NOT NULL "
            "DEFAULT now())");
    found = tx.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0].as<int>();
    if (found > PgSchemaVersion())
      return Status::FailedPrecondition("the database's schema is version " + std::to_string(found) +
                                        ", newer than this server's " + std::to_string(PgSchemaVersion()) +
                                        ": upgrade the server");
    for (int v = found + 1; v <= PgSchemaVersion(); ++v) {
      tx.exec(kMigrations[v - 1]);
      tx.exec_params("INSERT INTO schema_migrations(version) VALUES($1)", v);
    }
    return Status::Ok();
  });
  SD_RETURN_IF_ERROR(status.WithContext("PostgreSQL at '" + pool.redacted_dsn() + "'"));
  if (found < PgSchemaVersion())
    spdlog::info("PostgreSQL at '{}': schema migrated from version {} to {}", pool.redacted_dsn(), found,
                 PgSchemaVersion());
  return Status::Ok();
}

}  // namespace sd
