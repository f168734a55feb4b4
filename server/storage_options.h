// Where the server keeps its state (`storage:` in server.yaml, docs/operations.md): the
// embedded default (SQLite and files in storage_dir, one server) or the cluster backend
// (PostgreSQL shared by replicas, docs/scale-out.md).
#pragma once

#include <string>

#include "common/base/status.h"
#include "server/pg_connection.h"

namespace sd {

enum class StorageBackend { kSqlite, kPostgres };

struct StorageOptions {
  StorageBackend backend = StorageBackend::kSqlite;
  PgOptions postgres;              // dsn, password_file, password_env, connections
  std::string blobs = "postgres";  // postgres: blobs in the database; else a directory all replicas share
  std::string replica;             // this replica's name in leases and rows; empty: <hostname>-<pid>
  double lease_ttl_s = 10;         // a dead replica's devices are served again after this
  // postgres: its options valid, lease_ttl_s in [1, 600]. Messages start with the field's name.
  Status Validate() const;
};

// "sqlite" | "postgres"; InvalidArgument naming the accepted values.
StatusOr<StorageBackend> ParseStorageBackend(const std::string& name);
// The replica's name: `configured`, or <hostname>-<pid>.
std::string ReplicaName(const std::string& configured);

}  // namespace sd
