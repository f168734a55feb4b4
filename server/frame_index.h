// The SQLite index of a frame store (<dir>/index.sqlite): one row per stored frame, per model
// version and per device, the schema and its upgrades, and every query the store answers.
// Rows only: it knows the size of each row's file but not where the file lives
// (server/store_files.h), so records come back without image_path / checkpoint_path.
//
// WAL journal with synchronous=FULL: each commit fsyncs the WAL, so a committed row survives
// power loss. The writer sets the journal mode; a read-only index (streamdistill-export beside
// a running server) requires WAL, under which it takes no lock that the writer waits for.
//
// Thread-safe: one mutex guards the connection and its prepared statements; every method
// takes it for its own statements only (callers hold no lock of theirs across a call).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "server/frame_records.h"
#include "server/retention.h"
#include "server/sqlite_db.h"

namespace sd {

class FrameIndex {
 public:
  // Opens `path`, creating or upgrading the tables when writable. FailedPrecondition for a
  // schema newer than this build, or (read-only) a file that is not a current index in WAL.
  static StatusOr<std::unique_ptr<FrameIndex>> Open(const std::string& path, bool read_only);

  ~FrameIndex();
  FrameIndex(const FrameIndex&) = delete;
  FrameIndex& operator=(const FrameIndex&) = delete;

  const std::string& path() const { return path_; }

  // The stored file size of frame (device, sequence) / version (device, version); -1 when
  // there is no such row. Errors name `what`.
  StatusOr<int64_t> FrameBytes(const std::string& device_id, uint64_t sequence, const std::string& what) const;
  StatusOr<int64_t> CheckpointBytes(const std::string& device_id, uint64_t version, const std::string& what) const;

  // Commit the row (with `file_bytes`, its file's size) and the device's row in one
  // transaction. On an error `*maybe_committed` says whether the row may have committed
  // anyway (a failed COMMIT): only when false may the caller remove the row's file.
  Status InsertFrame(const FrameRecord& frame, int64_t file_bytes, const std::string& what,
                     bool* maybe_committed) const;
  Status InsertVersion(const VersionRecord& version, int64_t file_bytes, const std::string& what,
                       bool* maybe_committed) const;

  StatusOr<uint64_t> LastSequence(const std::string& device_id) const;  // 0 when none
  StatusOr<int64_t> Count(const std::string& device_id, bool validation) const;
  StatusOr<StoredUsage> Usage(const std::string& device_id) const;
  // The newest `limit` (> 0) frames of a kind with sequence <= max_sequence, newest first.
  StatusOr<std::vector<FrameRecord>> NewestOfKind(const std::string& device_id, bool validation,
                                                  uint64_t max_sequence, int limit) const;
  // Frames of both kinds with sequence > after_sequence (< 2^63), oldest first, at most `limit` (> 0).
  StatusOr<std::vector<FrameRecord>> Since(const std::string& device_id, uint64_t after_sequence, int limit) const;

  // The highest version of the device into *out; false when it has none.
  StatusOr<bool> LatestVersion(const std::string& device_id, VersionRecord* out) const;
  // The newest `limit` (> 0) versions, newest first.
  StatusOr<std::vector<VersionRecord>> Versions(const std::string& device_id, int limit) const;

  // Devices with any frame or version, sorted; on an error, those read before it and the
  // error in *error.
  std::vector<std::string> Devices(Status* error) const;

  // Every frame of the device in sequence order, as retention sees it.
  StatusOr<std::vector<StoredFrame>> ListForRetention(const std::string& device_id) const;
  // Deletes the rows of the `doomed` frames in one transaction.
  Status DeleteFrames(const std::string& device_id, const std::vector<StoredFrame>& frames) const;

 private:
  struct Statements;
  FrameIndex(std::string path, std::unique_ptr<SqliteDb> db);
  Status CreateOrCheckSchema(bool read_only);
  // Runs `insert` (which steps its statement and returns the SQLite code) and the device's
  // row in one transaction; requires mu_ held.
  template <typename Insert>
  Status CommitRow(Insert insert, const std::string& device_id, const std::string& what,
                   bool* maybe_committed) const;
  StatusOr<std::vector<FrameRecord>> ReadFrames(sqlite3_stmt* stmt, const std::string& device_id,
                                                const std::string& what) const;

  const std::string path_;
  mutable std::mutex mu_;
  std::unique_ptr<SqliteDb> db_;             // guarded by mu_
  std::unique_ptr<Statements> statements_;  // guarded by mu_ (prepared on db_, finalized with it)
};

}  // namespace sd
