// The files of a SQLite frame store: their names, the directory's LOCK, durable writes and
// checked reads of image and checkpoint files, the sweep of files without a row, and claims
// on file names while a write or delete is in flight. Knows nothing of SQLite.
//
// Layout under `dir` (part of the on-disk format):
//   LOCK                         flock()ed while open: one process per directory
//   frames/<device>/<seq>.jpg    the stored JPEG of frame <seq> (12+ digits, zero padded)
//   models/<device>/v<ver>.sdw   the checkpoint of model version <ver>
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "common/base/env.h"
#include "common/base/status.h"

namespace sd {

// leveldb-style LOCK file: flock(LOCK_EX) on <dir>/LOCK for the holder's lifetime; the kernel
// releases it when the process dies. A second server on the same directory would sweep the
// first one's in-progress files as orphans. Taken directly, not through the Env.
class DirLock {
 public:
  // FailedPrecondition when another process holds it; IOError when it cannot be opened.
  static StatusOr<std::unique_ptr<DirLock>> Acquire(const std::string& dir);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  const int fd_;
};

// Paths and I/O of the image and checkpoint files, through the Env (tests inject a full disk
// or a failing fsync there). Thread-safe: it holds no mutable state.
class StoreFiles {
 public:
  enum class Kind { kFrame, kCheckpoint };

  StoreFiles(std::string dir, Env* env) : dir_(std::move(dir)), env_(env) {}

  const std::string& dir() const { return dir_; }
  std::string FramePath(const std::string& device_id, uint64_t sequence) const;
  std::string CheckpointPath(const std::string& device_id, uint64_t version) const;

  // Creates frames/ and models/ (the store directory must exist) and makes them durable.
  Status CreateRoots() const;
  // Writes the file of (device, number) durably (temp file, fsync, rename, directory fsync),
  // creating its device directory first; errors carry `what` as context.
  Status Write(Kind kind, const std::string& device_id, uint64_t number, std::string_view bytes,
               const std::string& what) const;
  // Reads a file the index has a row for: DataLoss naming the file when it is missing or its
  // size is not `expected_size`.
  StatusOr<std::string> ReadChecked(const std::string& path, int64_t expected_size) const;
  Status Remove(const std::string& path) const { return env_->RemoveFile(path); }

  // Removes every file under frames/ and models/ whose name is one this store writes (or a
  // temp file of one) and for which `has_row(kind, device, number, path)` says false; anything
  // else in the directories is left alone. Run before the store is shared.
  using HasRow = std::function<StatusOr<bool>(Kind, const std::string& device_id, uint64_t number,
                                              const std::string& path)>;
  Status RemoveOrphans(const HasRow& has_row) const;

 private:
  std::string Path(Kind kind, const std::string& device_id, uint64_t number) const;

  const std::string dir_;
  Env* const env_;  // image and checkpoint files (not SQLite's, not LOCK)
};

// Keys ("f <device> <seq>" / "v <device> <ver>") whose file some thread is writing or
// deleting. Keeps two Puts of the same frame, or a Put and a Prune, from racing on one file
// name. Thread-safe; its mutex is a leaf.
class FileNameClaims {
 public:
  // Holds one claim until destroyed (or released early).
  class Claim {
   public:
    Claim(FileNameClaims* claims, std::string key);
    ~Claim() { Release(); }
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    void Release();

   private:
    FileNameClaims* claims_;  // null once released
    std::string key_;
  };

  static std::string FrameKey(const std::string& device_id, uint64_t sequence);
  static std::string VersionKey(const std::string& device_id, uint64_t version);

 private:
  std::mutex mu_;
  std::condition_variable released_;  // notified (after unlocking mu_) when a claim ends
  std::set<std::string> in_flight_;   // guarded by mu_
};

}  // namespace sd
