#include "server/storage_options.h"

#include <unistd.h>

namespace sd {

Status StorageOptions::Validate() const {
  if (backend == StorageBackend::kSqlite) return Status::Ok();
  SD_RETURN_IF_ERROR(postgres.Validate());
  if (!(lease_ttl_s >= 1 && lease_ttl_s <= 600)) return Status::InvalidArgument("lease_ttl_s must be in [1, 600]");
  if (blobs.empty()) return Status::InvalidArgument("blobs must be 'postgres' or a directory");
  for (char c : replica)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return Status::InvalidArgument("replica must be letters, digits, '-', '_' or '.'");
  return Status::Ok();
}

StatusOr<StorageBackend> ParseStorageBackend(const std::string& name) {
  if (name == "sqlite") return StorageBackend::kSqlite;
  if (name == "postgres") return StorageBackend::kPostgres;
  return Status::InvalidArgument("backend must be sqlite or postgres, not '" + name + "'");
}

std::string ReplicaName(const std::string& configured) {
  if (!configured.empty()) return configured;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

}  // namespace sd
