// The file and clock operations of the components that keep state on disk (the edge's spool
// and deployed model, the server's frame store and checkpoints, the label cache), behind one
// small interface that tests replace (tests/fault_env.h fails a write, an fsync or a rename,
// or reports a full disk, at a chosen moment). After leveldb's Env.
//
// Not through Env: SQLite's own I/O (the frame store's index; SQLite has its own VFS layer)
// and the frame store's LOCK file (flock). Everything else these components write goes
// through WriteFileDurably below: the one place that writes a file durably.
//
// Errors carry the path and the OS reason: a full disk (ENOSPC, EDQUOT) is ResourceExhausted
// "<path>: write failed: No space left on device"; a missing file NotFound; any other failure
// IOError (code Unavailable: a retry may help).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace sd {

// A file being written, from its creation to Close. Not thread-safe.
class WritableFile {
 public:
  virtual ~WritableFile();  // closes the file if Close was not called
  virtual Status Append(std::string_view data) = 0;
  virtual Status Sync() = 0;  // fsync: the bytes appended so far survive a power cut
  virtual Status Close() = 0;
};

class Env {
 public:
  virtual ~Env();
  // The POSIX implementation; shared, thread-safe, never deleted.
  static Env* Default();

  // Creates `path` (truncating an existing file) for writing.
  virtual StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // The whole file, or its first `max_bytes`. NotFound when it does not exist.
  virtual StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX) = 0;
  virtual StatusOr<uint64_t> FileSize(const std::string& path) = 0;
  virtual bool FileExists(const std::string& path) = 0;
  // Atomically replaces `to` (same filesystem).
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // NotFound when it does not exist.
  virtual Status RemoveFile(const std::string& path) = 0;
  // Creates `dir` and its missing parents; Ok when it is a directory already.
  virtual Status CreateDir(const std::string& dir) = 0;
  // Makes the entries created, renamed or removed in `dir` survive a power cut. A filesystem
  // that cannot sync directories (EINVAL) counts as success.
  virtual Status SyncDir(const std::string& dir) = 0;
  // The names in `dir` (not "." or ".."), in no particular order.
  virtual StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;

};

// Forwards everything to another Env; a test double overrides what it fakes.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return target_->NewWritableFile(path);
  }
  StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX) override {
    return target_->ReadFile(path, max_bytes);
  }
  StatusOr<uint64_t> FileSize(const std::string& path) override { return target_->FileSize(path); }
  bool FileExists(const std::string& path) override { return target_->FileExists(path); }
  Status RenameFile(const std::string& from, const std::string& to) override { return target_->RenameFile(from, to); }
  Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  Status CreateDir(const std::string& dir) override { return target_->CreateDir(dir); }
  Status SyncDir(const std::string& dir) override { return target_->SyncDir(dir); }
  StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override { return target_->ListDir(dir); }

 private:
  Env* target_;
};

// The status for a failed system call on `path`: "<path>: <what>: <strerror(err)>", with the
// code described at the top of this file.
Status PosixError(const std::string& path, const std::string& what, int err);

// Writes the concatenation of `pieces` to `path` so that the name only ever shows a complete
// file: a temp file next to it (TempPathFor), write, fsync, close, rename over `path`, fsync
// of the directory. After Ok the new content survives a power cut. On error `path` holds its
// old content or, when only the final directory fsync failed, the complete new one (never a
// part), and the temp file has been removed.
Status WriteFileDurably(Env* env, const std::string& path, std::initializer_list<std::string_view> pieces);
inline Status WriteFileDurably(Env* env, const std::string& path, std::string_view data) {
  return WriteFileDurably(env, path, {data});
}

// "<path>.tmp-<pid>-<counter>": unique within the machine's live processes.
std::string TempPathFor(const std::string& path);
// True for a name TempPathFor made (and for the "<name>.tmp" of earlier releases): a write a
// crash interrupted, which the owner of the directory deletes when it opens it.
bool IsTempFileName(const std::string& name);

}  // namespace sd
