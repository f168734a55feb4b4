// Where the cluster backend keeps frame images and checkpoints: behind this interface, either
// in PostgreSQL itself (a `blobs` row written in the same transaction as the frame's row) or
// in a directory all replicas share (NFS, CephFS, a Kubernetes volume), one file per blob.
// Either way blobs are named by their content (SHA-256), so a retried write is idempotent and
// two replicas writing the same bytes agree. docs/scale-out.md says which is the default and
// why (measured).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/env.h"
#include "common/base/status.h"

namespace pqxx {
class dbtransaction;
}

namespace sd {

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // The name `bytes` are stored under.
  static std::string KeyOf(std::string_view bytes);
  // Stores `bytes` under KeyOf(bytes), durable when `tx` commits: inside `tx` (database), or
  // written and synced before this returns (directory). Returns the key.
  virtual StatusOr<std::string> Put(pqxx::dbtransaction& tx, std::string_view bytes) = 0;
  // The bytes of `key`; DataLoss naming `what` when missing or not `expected_size` long.
  virtual StatusOr<std::string> Get(pqxx::dbtransaction& tx, const std::string& key, int64_t expected_size,
                                    const std::string& what) = 0;
  // Called in the transaction that deleted rows referring to `key`, when no frame or version
  // refers to it any more: the database drops the row in `tx`; the directory adds the key to
  // `remove_after_commit`, for RemoveFiles once the transaction committed.
  virtual Status Unreferenced(pqxx::dbtransaction& tx, const std::string& key,
                              std::vector<std::string>* remove_after_commit) = 0;
  virtual void RemoveFiles(const std::vector<std::string>& keys) { (void)keys; }
  virtual std::string Describe() const = 0;  // "postgres" or "dir /path"
};

// Blobs as rows of the `blobs` table.
std::unique_ptr<BlobStore> DatabaseBlobStore();
// Blobs as files under `dir` (made if needed): <dir>/<2 hex>/<64 hex>, written durably
// (WriteFileDurably) before the row that names them commits. FailedPrecondition when `dir`
// cannot be made or written (checked at start with a probe file).
StatusOr<std::unique_ptr<BlobStore>> DirectoryBlobStore(Env* env, const std::string& dir);

}  // namespace sd
