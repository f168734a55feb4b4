#include "server/sqlite_frame_store.h"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "server/retention.h"

namespace sd {

SqliteFrameStore::SqliteFrameStore(const std::string& dir, Env* env, std::unique_ptr<DirLock> lock,
                                   std::unique_ptr<FrameIndex> index)
    : files_(dir, env), lock_(std::move(lock)), index_(std::move(index)) {}

StatusOr<std::unique_ptr<SqliteFrameStore>> SqliteFrameStore::Open(const std::string& dir, Env* env) {
  if (env == nullptr) env = Env::Default();
  SD_RETURN_IF_ERROR(env->CreateDir(dir).WithContext("cannot create store directory"));
  SD_ASSIGN_OR_RETURN(std::unique_ptr<DirLock> lock, DirLock::Acquire(dir));
  SD_RETURN_IF_ERROR(StoreFiles(dir, env).CreateRoots());
  SD_ASSIGN_OR_RETURN(std::unique_ptr<FrameIndex> index, FrameIndex::Open(dir + "/index.sqlite", /*read_only=*/false));
  std::unique_ptr<SqliteFrameStore> store(new SqliteFrameStore(dir, env, std::move(lock), std::move(index)));
  SD_RETURN_IF_ERROR(store->RemoveOrphans());
  return store;
}

StatusOr<std::unique_ptr<SqliteFrameStore>> SqliteFrameStore::OpenReadOnly(const std::string& dir, Env* env) {
  if (env == nullptr) env = Env::Default();
  if (!env->FileExists(dir + "/index.sqlite")) {
    return Status::NotFound(dir + ": no frame store here (no index.sqlite)");
  }
  SD_ASSIGN_OR_RETURN(std::unique_ptr<FrameIndex> index, FrameIndex::Open(dir + "/index.sqlite", /*read_only=*/true));
  return std::unique_ptr<SqliteFrameStore>(new SqliteFrameStore(dir, env, /*lock=*/nullptr, std::move(index)));
}

Status SqliteFrameStore::CheckWritable(const std::string& what) const {
  if (lock_ == nullptr) return Status::FailedPrecondition(dir() + ": " + what + ": the store is open read-only");
  return Status::Ok();
}

// Runs before the store is shared.
Status SqliteFrameStore::RemoveOrphans() {
  return files_.RemoveOrphans([this](StoreFiles::Kind kind, const std::string& device, uint64_t number,
                                     const std::string& path) -> StatusOr<bool> {
    const std::string what = index_->path() + ": checking " + path;
    SD_ASSIGN_OR_RETURN(const int64_t size, kind == StoreFiles::Kind::kFrame
                                                ? index_->FrameBytes(device, number, what)
                                                : index_->CheckpointBytes(device, number, what));
    return size >= 0;
  });
}

Status SqliteFrameStore::CommitOrRemove(const Status& committed, bool maybe_committed, const std::string& path) const {
  if (!committed.ok() && !maybe_committed) files_.Remove(path).ok();
  return committed;
}

StatusOr<bool> SqliteFrameStore::Put(const FrameRecord& frame, std::string_view jpeg) {
  SD_RETURN_IF_ERROR(CheckDeviceId(frame.device_id));
  const std::string what = "frame " + frame.device_id + "/" + std::to_string(frame.sequence);
  SD_RETURN_IF_ERROR(CheckWritable("storing " + what));
  if (frame.sequence == 0 || frame.sequence > kMaxSqlInteger) {
    return Status::InvalidArgument(what + ": sequence must be in [1, 2^63)");
  }
  if (jpeg.empty()) return Status::InvalidArgument(what + ": no image bytes");
  // While this thread holds the claim no other Put or Prune touches this file name.
  FileNameClaims::Claim claim(&claims_, FileNameClaims::FrameKey(frame.device_id, frame.sequence));
  SD_ASSIGN_OR_RETURN(const int64_t existing,
                      index_->FrameBytes(frame.device_id, frame.sequence, index_->path() + ": looking up " + what));
  if (existing >= 0) return false;
  SD_RETURN_IF_ERROR(files_.Write(StoreFiles::Kind::kFrame, frame.device_id, frame.sequence, jpeg, what));

  // The claim and the LOCK file mean no row for this key can have appeared since the check, so
  // the insert's OR IGNORE never fires; it is there so that a broken invariant cannot turn
  // into an error path that unlinks a file another row refers to.
  bool maybe_committed = false;
  const Status status = index_->InsertFrame(frame, static_cast<int64_t>(jpeg.size()),
                                            index_->path() + ": storing " + what, &maybe_committed);
  SD_RETURN_IF_ERROR(CommitOrRemove(status, maybe_committed, files_.FramePath(frame.device_id, frame.sequence)));
  return true;
}

uint64_t SqliteFrameStore::LastSequence(const std::string& device_id) const {
  StatusOr<uint64_t> last = index_->LastSequence(device_id);
  if (!last.ok()) {
    spdlog::error("{}", last.status().ToString());
    return 0;
  }
  return *last;
}

int64_t SqliteFrameStore::Count(const std::string& device_id, bool validation) const {
  StatusOr<int64_t> count = index_->Count(device_id, validation);
  if (!count.ok()) {
    spdlog::error("{}", count.status().ToString());
    return 0;
  }
  return *count;
}

StoredUsage SqliteFrameStore::Usage(const std::string& device_id) const {
  StatusOr<StoredUsage> usage = index_->Usage(device_id);
  if (!usage.ok()) {
    spdlog::error("{}", usage.status().ToString());
    return {};
  }
  return *usage;
}

StatusOr<std::vector<FrameRecord>> SqliteFrameStore::NewestOfKind(const std::string& device_id, bool validation,
                                                                  uint64_t max_sequence, int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  if (limit <= 0) return std::vector<FrameRecord>();
  SD_ASSIGN_OR_RETURN(std::vector<FrameRecord> out, index_->NewestOfKind(device_id, validation, max_sequence, limit));
  std::reverse(out.begin(), out.end());  // the query takes the newest; callers want oldest first
  for (FrameRecord& r : out) r.image_path = files_.FramePath(device_id, r.sequence);
  return out;
}

StatusOr<std::vector<FrameRecord>> SqliteFrameStore::Recent(const std::string& device_id, bool validation,
                                                            int limit) const {
  return NewestOfKind(device_id, validation, kMaxSqlInteger, limit);
}

StatusOr<std::vector<FrameRecord>> SqliteFrameStore::Older(const std::string& device_id, bool validation,
                                                           uint64_t before_sequence, int limit) const {
  if (before_sequence == 0) return std::vector<FrameRecord>();
  return NewestOfKind(device_id, validation, before_sequence - 1, limit);
}

StatusOr<std::vector<FrameRecord>> SqliteFrameStore::Since(const std::string& device_id, uint64_t after_sequence,
                                                           int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  if (limit <= 0 || after_sequence >= kMaxSqlInteger) return std::vector<FrameRecord>();
  SD_ASSIGN_OR_RETURN(std::vector<FrameRecord> out, index_->Since(device_id, after_sequence, limit));
  for (FrameRecord& r : out) r.image_path = files_.FramePath(device_id, r.sequence);
  return out;
}

StatusOr<std::string> SqliteFrameStore::LoadImage(const FrameRecord& frame) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(frame.device_id));
  const std::string what = "frame " + frame.device_id + "/" + std::to_string(frame.sequence);
  const std::string lookup = index_->path() + ": looking up " + what;
  SD_ASSIGN_OR_RETURN(int64_t size, index_->FrameBytes(frame.device_id, frame.sequence, lookup));
  if (size < 0) return Status::NotFound(dir() + ": " + what + " is not stored");
  // Files are immutable once their row exists, so reading without a lock is safe.
  StatusOr<std::string> bytes = files_.ReadChecked(files_.FramePath(frame.device_id, frame.sequence), size);
  if (!bytes.ok() && bytes.status().code() == Status::Code::kDataLoss) {
    // Prune may have deleted the row and then the file since the lookup: no longer stored,
    // which is not a loss.
    SD_ASSIGN_OR_RETURN(size, index_->FrameBytes(frame.device_id, frame.sequence, lookup));
    if (size < 0) return Status::NotFound(dir() + ": " + what + " was pruned");
  }
  return bytes;
}

Status SqliteFrameStore::PutVersion(const VersionRecord& version, const std::string& checkpoint_bytes) {
  SD_RETURN_IF_ERROR(CheckDeviceId(version.device_id));
  const std::string what = "model " + version.device_id + " v" + std::to_string(version.version);
  SD_RETURN_IF_ERROR(CheckWritable("storing " + what));
  if (version.version == 0 || version.version > kMaxSqlInteger) {
    return Status::InvalidArgument(what + ": version must be in [1, 2^63)");
  }
  FileNameClaims::Claim claim(&claims_, FileNameClaims::VersionKey(version.device_id, version.version));
  SD_ASSIGN_OR_RETURN(const int64_t existing, index_->CheckpointBytes(version.device_id, version.version,
                                                                      index_->path() + ": looking up " + what));
  if (existing >= 0) return Status::AlreadyExists(dir() + ": " + what + " is already stored");
  SD_RETURN_IF_ERROR(
      files_.Write(StoreFiles::Kind::kCheckpoint, version.device_id, version.version, checkpoint_bytes, what));
  bool maybe_committed = false;
  const Status status = index_->InsertVersion(version, static_cast<int64_t>(checkpoint_bytes.size()),
                                              index_->path() + ": storing " + what, &maybe_committed);
  return CommitOrRemove(status, maybe_committed, files_.CheckpointPath(version.device_id, version.version));
}

StatusOr<VersionRecord> SqliteFrameStore::LatestVersion(const std::string& device_id) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  VersionRecord v;
  SD_ASSIGN_OR_RETURN(const bool found, index_->LatestVersion(device_id, &v));
  if (!found) return Status::NotFound(dir() + ": device " + device_id + " has no stored model version");
  v.checkpoint_path = files_.CheckpointPath(device_id, v.version);
  return v;
}

StatusOr<std::vector<VersionRecord>> SqliteFrameStore::Versions(const std::string& device_id, int limit) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  if (limit <= 0) return std::vector<VersionRecord>();
  SD_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, index_->Versions(device_id, limit));
  std::reverse(versions.begin(), versions.end());
  for (VersionRecord& v : versions) v.checkpoint_path = files_.CheckpointPath(device_id, v.version);
  return versions;
}

StatusOr<std::string> SqliteFrameStore::LoadCheckpoint(const VersionRecord& version) const {
  SD_RETURN_IF_ERROR(CheckDeviceId(version.device_id));
  const std::string what = "model " + version.device_id + " v" + std::to_string(version.version);
  SD_ASSIGN_OR_RETURN(const int64_t size, index_->CheckpointBytes(version.device_id, version.version,
                                                                  index_->path() + ": looking up " + what));
  if (size < 0) return Status::NotFound(dir() + ": " + what + " is not stored");
  return files_.ReadChecked(files_.CheckpointPath(version.device_id, version.version), size);
}

StatusOr<PruneResult> SqliteFrameStore::Prune(const std::string& device_id, const RetentionBounds& bounds,
                                              const PruneKeep& keep) {
  SD_RETURN_IF_ERROR(CheckDeviceId(device_id));
  SD_RETURN_IF_ERROR(CheckWritable("pruning frames of " + device_id));
  std::lock_guard<std::mutex> prune_lock(prune_mu_);
  SD_ASSIGN_OR_RETURN(std::vector<StoredFrame> frames, index_->ListForRetention(device_id));
  PruneResult result = ChooseFramesToPrune(frames, bounds, keep);
  if (result.deleted == 0) return result;

  // Claimed like a Put's: a re-sent frame being stored under one of these names meanwhile
  // would otherwise lose its new file to the unlink below.
  std::vector<std::unique_ptr<FileNameClaims::Claim>> claims;
  for (const StoredFrame& f : frames) {
    if (!f.doomed) continue;
    const std::string key = FileNameClaims::FrameKey(device_id, f.sequence);
    claims.push_back(std::make_unique<FileNameClaims::Claim>(&claims_, key));
  }
  // Rows first, in one transaction; the files only once it committed. A crash in between
  // leaves files without rows, which Open removes; the other order could leave rows whose
  // files are gone, and every round reading them would fail with DataLoss. After a failed
  // COMMIT the rows may still be there, so the files stay.
  SD_RETURN_IF_ERROR(index_->DeleteFrames(device_id, frames));
  // No directory fsync: an unlink lost to a power cut brings back a file without a row, which
  // the next Open removes.
  int failed = 0;
  Status first_failure;
  for (const StoredFrame& f : frames) {
    if (!f.doomed) continue;
    const Status rm = files_.Remove(files_.FramePath(device_id, f.sequence));
    if (!rm.ok() && rm.code() != Status::Code::kNotFound && failed++ == 0) first_failure = rm;
  }
  if (failed > 0)
    spdlog::warn("{}: {} pruned image file(s) of {} could not be removed (the next start removes them): {}", dir(),
                 failed, device_id, first_failure.ToString());
  return result;
}

std::vector<std::string> SqliteFrameStore::Devices() const {
  Status error;
  std::vector<std::string> out = index_->Devices(&error);
  if (!error.ok()) spdlog::error("{}", error.ToString());
  return out;
}

}  // namespace sd
