#include "server/pg_frame_store.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "server/label_codec.h"
#include "server/pg_schema.h"
#include "server/retention.h"

namespace sd {
namespace {

constexpr uint64_t kMaxBigint = static_cast<uint64_t>(INT64_MAX);
constexpr char kFrameColumns[] =
    "sequence, frame_index, capture_time_s, source_width, source_height, image_score, validation, labels, embedding, "
    "privacy";
constexpr char kVersionColumns[] =
    "version, base_version, encoding, weights_checksum, val_map50, created_ms, checkpoint_bytes, checkpoint_key";

std::string EmbeddingBytes(const std::vector<float>& embedding) {
  return std::string(reinterpret_cast<const char*>(embedding.data()), embedding.size() * sizeof(float));
}

Status ReadFrame(const pqxx::row& row, const std::string& device_id, FrameRecord* r) {
  r->device_id = device_id;
  r->sequence = row[0].as<uint64_t>();
  r->frame_index = row[1].as<int64_t>();
  r->capture_time_s = row[2].as<double>();
  r->source_width = row[3].as<int>();
  r->source_height = row[4].as<int>();
  r->image_score = row[5].as<float>();
  r->validation = row[6].as<bool>();
  if (!DecodeLabels(row[7].as<std::string>(), &r->labels))
    return Status::DataLoss("frame " + device_id + "/" + std::to_string(r->sequence) + ": its labels do not parse");
  r->privacy = row[9].as<std::string>();
  if (!row[8].is_null()) {
    pqxx::binarystring blob(row[8]);
    // A blob whose size is not whole floats is not trusted: the frame simply has no embedding.
    if (blob.size() > 0 && blob.size() % sizeof(float) == 0) {
      r->embedding.resize(blob.size() / sizeof(float));
      std::memcpy(r->embedding.data(), blob.data(), blob.size());
    }
  }
  return Status::Ok();
}

VersionRecord ReadVersion(const pqxx::row& row, const std::string& device_id) {
  VersionRecord v;
  v.device_id = device_id;
  v.version = row[0].as<uint64_t>();
  v.base_version = row[1].as<uint64_t>();
  v.encoding = row[2].as<std::string>();
  v.weights_checksum = row[3].as<std::string>();
  v.val_map50 = row[4].as<double>();
  v.created_ms = row[5].as<int64_t>();
  v.checkpoint_path = "blob:" + row[7].as<std::string>();
  return v;
}

// Reads that report errors as "none" (the FrameStore contract) log them.
template <typename T>
T OrLogged(StatusOr<T> value, T fallback) {
  if (value.ok()) return std::move(value).value();
  spdlog::error("{}", value.status().ToString());
  return fallback;
}

}  // namespace

PgFrameStore::PgFrameStore(const PgPool* pool, std::unique_ptr<BlobStore> blobs, const PgLeases* leases,
                           bool read_only)
    : pool_(pool),
      blobs_(std::move(blobs)),
      leases_(leases),
      read_only_(read_only),
      description_("postgres '" + pool->redacted_dsn() + "' (blobs: " + blobs_->Describe() + ")") {}

StatusOr<std::unique_ptr<PgFrameStore>> PgFrameStore::Open(const PgOptions& options, const std::string& blobs,
                                                          Env* env, bool read_only) {
  SD_ASSIGN_OR_RETURN(std::unique_ptr<PgPool> pool, PgPool::Connect(options));
  if (!read_only) SD_RETURN_IF_ERROR(MigratePgSchema(*pool));
  std::unique_ptr<BlobStore> blob_store;
  if (blobs == "postgres") {
    blob_store = DatabaseBlobStore();
  } else {
    SD_ASSIGN_OR_RETURN(blob_store, DirectoryBlobStore(env, blobs));
  }
  auto store = std::make_unique<PgFrameStore>(pool.get(), std::move(blob_store), nullptr, read_only);
  store->owned_pool_ = std::move(pool);
  return store;
}

Status PgFrameStore::CheckWritable(const std::string& what) const {
  if (read_only_) return Status::FailedPrecondition(description_ + ": " + what + ": the store is open read-only");
  return Status::Ok();
}

StatusOr<bool> PgFrameStore::Put(const FrameRecord& frame, std::string_view jpeg) {
  SD_RETURN_IF_ERROR(CheckDeviceId(frame.device_id));
  const std::string what = "storing frame " + frame.device_id + "/" + std::to_string(frame.sequence);
  SD_RETURN_IF_ERROR(CheckWritable(what));
  if (frame.sequence == 0 || frame.sequence > kMaxBigint)
    return Status::InvalidArgument(what + ": sequence must be in [1, 2^63)");
  if (jpeg.empty()) return Status::InvalidArgument(what + ": no image bytes");
  bool stored = false;
  Status status = pool_->Transact(what, [&](pqxx::dbtransaction& tx) -> Status {
    if (leases_ != nullptr) SD_RETURN_IF_ERROR(leases_->CheckFence(tx, frame.device_id));
    if (!tx.exec_params("SELECT 1 FROM frames WHERE device_id=$1 AND sequence=$2", frame.device_id, frame.sequence)
             .empty())
      return Status::Ok();  // a duplicate: nothing written
    SD_ASSIGN_OR_RETURN(const std::string key, blobs_->Put(tx, jpeg));
    const std::string embedding = EmbeddingBytes(frame.embedding);
    pqxx::binarystring embedding_blob(embedding.data(), embedding.size());
    pqxx::result r = tx.exec_params(
        "INSERT INTO frames(device_id, sequence, frame_index, capture_time_s, source_width, source_height, "
        "image_score, validation, labels, embedding, image_bytes, image_key, stored_by, lease_epoch, privacy) "
        "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) ON CONFLICT DO NOTHING RETURNING 1",
        frame.device_id, frame.sequence, frame.frame_index, frame.capture_time_s, frame.source_width,
        frame.source_height, frame.image_score, frame.validation, EncodeLabels(frame.labels), embedding_blob,
        static_cast<int64_t>(jpeg.size()), key, leases_ ? leases_->replica() : std::string(),
        leases_ ? leases_->Held(frame.device_id) : 0, frame.privacy);
    // Another writer stored the same frame since the check: roll back this one's blob.
    if (r.empty()) return Status::AlreadyExists("duplicate");
    tx.exec_params("INSERT INTO devices(device_id) VALUES($1) ON CONFLICT DO NOTHING", frame.device_id);
    stored = true;
    return Status::Ok();
  });
  if (status.code() == Status::Code::kAlreadyExists) return false;
  SD_RETURN_IF_ERROR(status);
  return stored;
}

uint64_t PgFrameStore::LastSequence(const std::string& device_id) const {
  uint64_t last = 0;
  Status status = pool_->Transact("reading the last sequence of " + device_id, [&](pqxx::dbtransaction& tx) {
    last = tx.exec_params1("SELECT coalesce(max(sequence), 0) FROM frames WHERE device_id=$1", device_id)[0]
               .as<uint64_t>();
    return Status::Ok();
  });
  return OrLogged<uint64_t>(status.ok() ? StatusOr<uint64_t>(last) : StatusOr<uint64_t>(status), 0);
}

int64_t PgFrameStore::Count(const std::string& device_id, bool validation) const {
  int64_t count = 0;
  Status status = pool_->Transact("counting frames of " + device_id, [&](pqxx::dbtransaction& tx) {
    count = tx.exec_params1("SELECT count(*) FROM frames WHERE device_id=$1 AND validation=$2", device_id,
                            validation)[0]
                .as<int64_t>();
    return Status::Ok();
  });
  return OrLogged<int64_t>(status.ok() ? StatusOr<int64_t>(count) : StatusOr<int64_t>(status), 0);
}

StoredUsage PgFrameStore::Usage(const std::string& device_id) const {
  StoredUsage usage;
  Status status = pool_->Transact("reading the stored usage of " + device_id, [&](pqxx::dbtransaction& tx) {
    pqxx::row r = tx.exec_params1("SELECT count(*), coalesce(sum(image_bytes), 0) FROM frames WHERE device_id=$1",
                                  device_id);
    usage.frames = r[0].as<int64_t>();
    usage.bytes = r[1].as<int64_t>();
    return Status::Ok();
  });
  return OrLogged<StoredUsage>(status.ok() ? StatusOr<StoredUsage>(usage) : StatusOr<StoredUsage>(status), {});
}

StatusOr<std::vector<FrameRecord>> PgFrameStore::NewestOfKind(const std::string& device_id, bool validation,
                                                              uint64_t max_sequence, int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  std::vector<FrameRecord> out;
  if (limit <= 0) return out;
  const uint64_t bound = std::min(max_sequence, kMaxBigint);
  SD_RETURN_IF_ERROR(pool_->Transact("reading frames of " + device_id, [&](pqxx::dbtransaction& tx) -> Status {
    out.clear();
    pqxx::result r = tx.exec_params(std::string("SELECT ") + kFrameColumns +
                                        " FROM frames WHERE device_id=$1 AND validation=$2 AND sequence<=$3 "
                                        "ORDER BY sequence DESC LIMIT $4",
                                    device_id, validation, bound, limit);
    for (auto it = r.rbegin(); it != r.rend(); ++it) {  // oldest first
      FrameRecord f;
      SD_RETURN_IF_ERROR(ReadFrame(*it, device_id, &f));
      f.image_path = description_ + " frame " + device_id + "/" + std::to_string(f.sequence);
      out.push_back(std::move(f));
    }
    return Status::Ok();
  }));
  return out;
}

StatusOr<std::vector<FrameRecord>> PgFrameStore::Recent(const std::string& device_id, bool validation,
                                                        int limit) const {
  return NewestOfKind(device_id, validation, kMaxBigint, limit);
}

StatusOr<std::vector<FrameRecord>> PgFrameStore::Older(const std::string& device_id, bool validation,
                                                       uint64_t before_sequence, int limit) const {
  if (before_sequence <= 1) return std::vector<FrameRecord>();
  return NewestOfKind(device_id, validation, before_sequence - 1, limit);
}

StatusOr<std::vector<FrameRecord>> PgFrameStore::Since(const std::string& device_id, uint64_t after_sequence,
                                                       int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  std::vector<FrameRecord> out;
  if (limit <= 0 || after_sequence >= kMaxBigint) return out;
  SD_RETURN_IF_ERROR(pool_->Transact("reading new frames of " + device_id, [&](pqxx::dbtransaction& tx) -> Status {
    out.clear();
    pqxx::result r = tx.exec_params(std::string("SELECT ") + kFrameColumns +
                                        " FROM frames WHERE device_id=$1 AND sequence>$2 ORDER BY sequence LIMIT $3",
                                    device_id, after_sequence, limit);
    for (const pqxx::row& row : r) {
      FrameRecord f;
      SD_RETURN_IF_ERROR(ReadFrame(row, device_id, &f));
      f.image_path = description_ + " frame " + device_id + "/" + std::to_string(f.sequence);
      out.push_back(std::move(f));
    }
    return Status::Ok();
  }));
  return out;
}

StatusOr<std::string> PgFrameStore::LoadImage(const FrameRecord& frame) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(frame.device_id));
  const std::string what = "frame " + frame.device_id + "/" + std::to_string(frame.sequence);
  if (frame.sequence == 0 || frame.sequence > kMaxBigint) return Status::NotFound(what + " is not stored");
  std::string bytes;
  SD_RETURN_IF_ERROR(pool_->Transact("loading " + what, [&](pqxx::dbtransaction& tx) -> Status {
    pqxx::result r = tx.exec_params("SELECT image_key, image_bytes FROM frames WHERE device_id=$1 AND sequence=$2",
                                    frame.device_id, frame.sequence);
    if (r.empty()) return Status::NotFound(what + " is not stored");
    SD_ASSIGN_OR_RETURN(bytes, blobs_->Get(tx, r[0][0].as<std::string>(), r[0][1].as<int64_t>(), what));
    return Status::Ok();
  }));
  return bytes;
}

Status PgFrameStore::PutVersion(const VersionRecord& version, const std::string& checkpoint_bytes) {
  return StoreVersions({{version, ""}}, checkpoint_bytes, [this, &version](pqxx::dbtransaction& tx) {
    return leases_ != nullptr ? leases_->CheckFence(tx, version.device_id) : Status::Ok();
  });
}

Status PgFrameStore::PutClaimedVersions(const std::vector<VersionWithUpdate>& versions,
                                        const std::string& checkpoint_bytes,
                                        const std::function<Status(pqxx::dbtransaction&)>& fence) {
  return StoreVersions(versions, checkpoint_bytes, fence);
}

Status PgFrameStore::StoreVersions(const std::vector<VersionWithUpdate>& versions, const std::string& checkpoint_bytes,
                                   const std::function<Status(pqxx::dbtransaction&)>& fence) {
  if (versions.empty()) return Status::InvalidArgument("storing a version: no device given");
  std::string what = "storing version ";
  for (const VersionWithUpdate& v : versions) {
    SD_RETURN_IF_ERROR(CheckDeviceId(v.record.device_id));
    if (v.record.version == 0 || v.record.version > kMaxBigint)
      return Status::InvalidArgument("storing version " + v.record.device_id + "/v" + std::to_string(v.record.version) +
                                     ": version must be in [1, 2^63)");
    what += (&v == &versions.front() ? "" : ", ") + v.record.device_id + "/v" + std::to_string(v.record.version);
  }
  SD_RETURN_IF_ERROR(CheckWritable(what));
  return pool_->Transact(what, [&](pqxx::dbtransaction& tx) -> Status {
    SD_RETURN_IF_ERROR(fence(tx));
    // One checkpoint for all: a group's members store the same weights, under one blob key.
    SD_ASSIGN_OR_RETURN(const std::string key, blobs_->Put(tx, checkpoint_bytes));
    for (const auto& [version, update] : versions) {
      if (!tx.exec_params("SELECT 1 FROM versions WHERE device_id=$1 AND version=$2", version.device_id,
                          version.version)
               .empty())
        return Status::AlreadyExists(what + ": version " + version.device_id + "/v" +
                                     std::to_string(version.version) + " is already stored");
      // The primary key is what keeps a number from being used twice when two replicas race.
      // No update (a version stored through the lease by the replica that sent it): NULL.
      tx.exec_params(
          "INSERT INTO versions(device_id, version, base_version, encoding, weights_checksum, val_map50, created_ms, "
          "checkpoint_bytes, checkpoint_key, stored_by, update_payload) "
          "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,NULLIF($11, ''::bytea))",
          version.device_id, version.version, version.base_version, version.encoding, version.weights_checksum,
          version.val_map50, version.created_ms, static_cast<int64_t>(checkpoint_bytes.size()), key,
          leases_ ? leases_->replica() : std::string(), pqxx::binarystring(update.data(), update.size()));
      tx.exec_params("INSERT INTO devices(device_id) VALUES($1) ON CONFLICT DO NOTHING", version.device_id);
    }
    return Status::Ok();
  });
}

StatusOr<std::string> PgFrameStore::LoadUpdatePayload(const std::string& device_id, uint64_t version) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  const std::string what = "the update of version " + device_id + "/v" + std::to_string(version);
  if (version == 0 || version > kMaxBigint) return Status::NotFound(what + " is not stored");
  std::string payload;
  SD_RETURN_IF_ERROR(pool_->Transact("loading " + what, [&](pqxx::dbtransaction& tx) -> Status {
    pqxx::result r = tx.exec_params("SELECT update_payload FROM versions WHERE device_id=$1 AND version=$2", device_id,
                                    static_cast<int64_t>(version));
    if (r.empty() || r[0][0].is_null()) return Status::NotFound(what + " is not stored");
    payload = pqxx::binarystring(r[0][0]).str();
    return Status::Ok();
  }));
  return payload;
}

StatusOr<VersionRecord> PgFrameStore::LatestVersion(const std::string& device_id) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  VersionRecord v;
  SD_RETURN_IF_ERROR(pool_->Transact("reading the latest version of " + device_id, [&](pqxx::dbtransaction& tx) {
    pqxx::result r = tx.exec_params(std::string("SELECT ") + kVersionColumns +
                                        " FROM versions WHERE device_id=$1 ORDER BY version DESC LIMIT 1",
                                    device_id);
    if (r.empty()) return Status::NotFound("device " + device_id + " has no stored version");
    v = ReadVersion(r[0], device_id);
    return Status::Ok();
  }));
  return v;
}

StatusOr<std::vector<VersionRecord>> PgFrameStore::Versions(const std::string& device_id, int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  std::vector<VersionRecord> out;
  if (limit <= 0) return out;
  SD_RETURN_IF_ERROR(pool_->Transact("listing versions of " + device_id, [&](pqxx::dbtransaction& tx) {
    out.clear();
    pqxx::result r = tx.exec_params(std::string("SELECT ") + kVersionColumns +
                                        " FROM versions WHERE device_id=$1 ORDER BY version DESC LIMIT $2",
                                    device_id, limit);
    for (auto it = r.rbegin(); it != r.rend(); ++it) out.push_back(ReadVersion(*it, device_id));
    return Status::Ok();
  }));
  return out;
}

StatusOr<std::string> PgFrameStore::LoadCheckpoint(const VersionRecord& version) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(version.device_id));
  const std::string what = "version " + version.device_id + "/v" + std::to_string(version.version);
  if (version.version == 0 || version.version > kMaxBigint) return Status::NotFound(what + " is not stored");
  std::string bytes;
  SD_RETURN_IF_ERROR(pool_->Transact("loading " + what, [&](pqxx::dbtransaction& tx) -> Status {
    pqxx::result r = tx.exec_params(
        "SELECT checkpoint_key, checkpoint_bytes FROM versions WHERE device_id=$1 AND version=$2", version.device_id,
        version.version);
    if (r.empty()) return Status::NotFound(what + " is not stored");
    SD_ASSIGN_OR_RETURN(bytes, blobs_->Get(tx, r[0][0].as<std::string>(), r[0][1].as<int64_t>(), what));
    return Status::Ok();
  }));
  return bytes;
}

StatusOr<PruneResult> PgFrameStore::Prune(const std::string& device_id, const RetentionBounds& bounds,
                                          const PruneKeep& keep) {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  SD_RETURN_IF_ERROR(CheckWritable("pruning frames of " + device_id));
  PruneResult result;
  std::vector<std::string> remove_after_commit;
  Status status = pool_->Transact("pruning frames of " + device_id, [&](pqxx::dbtransaction& tx) -> Status {
    // One Prune per device at a time, across replicas: the lock ends with the transaction.
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtext('prune:' || $1))", device_id);
    pqxx::result r = tx.exec_params(
        "SELECT sequence, validation, capture_time_s, image_bytes, image_key FROM frames WHERE device_id=$1 "
        "ORDER BY sequence",
        device_id);
    std::vector<StoredFrame> frames;
    std::vector<std::string> keys;
    remove_after_commit.clear();
    for (const pqxx::row& row : r) {
      StoredFrame f;
      f.sequence = row[0].as<uint64_t>();
      f.validation = row[1].as<bool>();
      f.capture_time_s = row[2].as<double>();
      f.bytes = row[3].as<int64_t>();
      frames.push_back(f);
      keys.push_back(row[4].as<std::string>());
    }
    result = ChooseFramesToPrune(frames, bounds, keep);
    if (result.deleted == 0) return Status::Ok();
    for (size_t i = 0; i < frames.size(); ++i) {
      if (!frames[i].doomed) continue;
      tx.exec_params("DELETE FROM frames WHERE device_id=$1 AND sequence=$2", device_id, frames[i].sequence);
      SD_RETURN_IF_ERROR(blobs_->Unreferenced(tx, keys[i], &remove_after_commit));
    }
    return Status::Ok();
  });
  SD_RETURN_IF_ERROR(status);
  // Directory blobs go only once their rows are surely gone.
  blobs_->RemoveFiles(remove_after_commit);
  return result;
}

std::vector<std::string> PgFrameStore::Devices() const {
  std::vector<std::string> out;
  Status status = pool_->Transact("listing devices", [&](pqxx::dbtransaction& tx) {
    out.clear();
    for (const pqxx::row& row : tx.exec("SELECT device_id FROM devices ORDER BY device_id"))
      out.push_back(row[0].as<std::string>());
    return Status::Ok();
  });
  if (!status.ok()) spdlog::error("{}", status.ToString());
  return out;
}

}  // namespace sd
