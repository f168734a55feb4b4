// The embedded FrameStore: a SQLite index and plain files in one directory that survives
// restarts and crashes. Zero set-up; what FrameStore::Open builds.
//
// Layout under `dir` (the on-disk format; existing stores open unchanged):
//   index.sqlite                 frame/version/device rows (server/frame_index.h)
//   LOCK                         flock()ed while open: one process per directory
//   frames/<device>/<seq>.jpg    the stored JPEG of frame <seq> (12+ digits, zero padded)
//   models/<device>/v<ver>.sdw   the checkpoint of model version <ver>
//
// Crash safety: a file is always made durable (WriteFileDurably in common/base/env.h: temp
// file, fsync, rename, directory fsync) before the row that refers to it is committed, so
// every committed row has its complete file. A crash between the two leaves only a file
// without a row, which the next Open removes.
//
// Retention (Prune): rows are deleted first, in one transaction, and the files after; a crash
// in between leaves only files without rows, which the next Open removes, never a row without
// its file (that would fail every round that reads it with DataLoss).
//
// Disk failures: image and checkpoint files go through the Env given to Open (tests inject a
// full disk or a failing fsync or rename there); SQLite does its own I/O (its VFS), and the
// LOCK file is flock()ed directly. A Put or PutVersion that fails for the disk (a full disk:
// ResourceExhausted; fsync, rename: Unavailable) commits no row and leaves no partial file
// (at most, when only the directory fsync failed, the complete file without a row, which the
// retry overwrites or the next Open removes); the same call succeeds once the disk works.
//
// Locks: the index has its own mutex (held only inside a FrameIndex call), the file-name
// claims theirs; neither is held while the other is taken, and files are written and read
// holding neither, so a slow fsync of one frame holds up no query and no other frame.
// prune_mu_ (one Prune at a time) is taken before both.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/frame_index.h"
#include "server/frame_store.h"
#include "server/store_files.h"

namespace sd {

class SqliteFrameStore : public FrameStore {
 public:
  // Opens (creating if needed) the store in `dir`: <dir>/index.sqlite, frames/, models/.
  // Per-device directories are made on first use. Removes image and checkpoint files that
  // have no row (left by a crash between file and row) and stray temp files.
  // FailedPrecondition when another process has the directory open.
  static StatusOr<std::unique_ptr<SqliteFrameStore>> Open(const std::string& dir, Env* env = Env::Default());
  // Opens an existing store for reading only, beside the server that may have it open
  // (streamdistill-export): no LOCK, no orphan sweep, nothing created; SQLite reads under
  // WAL, so a running server's writes are never blocked and every query sees whole commits.
  // Put, PutVersion and Prune return FailedPrecondition. NotFound when `dir` holds no index.
  static StatusOr<std::unique_ptr<SqliteFrameStore>> OpenReadOnly(const std::string& dir, Env* env = Env::Default());

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
  const std::string& dir() const override { return files_.dir(); }

 private:
  SqliteFrameStore(const std::string& dir, Env* env, std::unique_ptr<DirLock> lock,
                   std::unique_ptr<FrameIndex> index);

  // The newest `limit` frames of a kind with sequence <= max_sequence, oldest first.
  StatusOr<std::vector<FrameRecord>> NewestOfKind(const std::string& device_id, bool validation, uint64_t max_sequence,
                                                  int limit) const;
  Status CheckWritable(const std::string& what) const;
  Status RemoveOrphans();
  // After the index row is committed (or surely not): removes the file when the row surely
  // did not commit; keeps it when the outcome is unknown, since removing it could leave a
  // committed row without its file (the next Open sweeps it if it is an orphan).
  Status CommitOrRemove(const Status& committed, bool maybe_committed, const std::string& path) const;

  const StoreFiles files_;
  const std::unique_ptr<DirLock> lock_;  // null when read-only
  const std::unique_ptr<FrameIndex> index_;
  FileNameClaims claims_;
  std::mutex prune_mu_;  // one Prune at a time (taken before the index's and the claims' mutexes)
};

}  // namespace sd
