// A test double for Env (common/base/env.h) that makes chosen file operations fail, as a full disk
// or a failing device would (after leveldb's SpecialEnv / FaultInjectionTestEnv). Everything
// it does not fail goes to the real filesystem, so tests check real files.
//
//   FaultEnv env;                                       // wraps Env::Default()
//   env.FailOp(FaultEnv::Op::kSync, EIO, ".jpg", 2, 1);  // the 3rd fsync of a .jpg fails once
//   env.SetDiskFull(true, "/frames/");                   // writes under frames/ fail: ENOSPC
//   env.Clear();                                         // the disk works again
//
// A failing write first writes half of its data (a torn write, as a real full disk leaves
// it), so a test sees whether a partial file could ever become visible.
//
// Header-only and thread-safe.
#pragma once

#include <cerrno>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base/env.h"

namespace sd {

class FaultEnv : public EnvWrapper {
 public:
  enum class Op { kWrite, kSync, kRename, kCreateDir, kSyncDir };

  explicit FaultEnv(Env* target = Env::Default()) : EnvWrapper(target) {}

  // From now on the operations `op` whose path contains `path_contains` ("" matches every
  // path) fail with errno `err`: the first `after` matching calls still succeed, then `times`
  // of them fail (-1: every one until Clear). For a rename the destination path is matched.
  void FailOp(Op op, int err, const std::string& path_contains = "", int after = 0, int times = -1) {
    std::lock_guard<std::mutex> lock(mu_);
    rules_.push_back(Rule{op, err, path_contains, after, times});
  }
  // A full disk: every non-empty write and every directory creation under matching paths
  // fails with ENOSPC until SetDiskFull(false) or Clear().
  void SetDiskFull(bool full, const std::string& path_contains = "") {
    std::lock_guard<std::mutex> lock(mu_);
    disk_full_ = full;
    disk_full_path_ = path_contains;
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    rules_.clear();
    disk_full_ = false;
  }
  int64_t failures() const {  // operations failed so far
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    SD_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, target()->NewWritableFile(path));
    return std::unique_ptr<WritableFile>(new File(this, path, std::move(file)));
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (const int err = Check(Op::kRename, to, false)) {
      return PosixError(to, "cannot rename " + from + " into place", err);
    }
    return target()->RenameFile(from, to);
  }
  Status CreateDir(const std::string& dir) override {
    if (!target()->FileExists(dir)) {
      if (const int err = Check(Op::kCreateDir, dir, true)) return PosixError(dir, "cannot create directory", err);
    }
    return target()->CreateDir(dir);
  }
  Status SyncDir(const std::string& dir) override {
    if (const int err = Check(Op::kSyncDir, dir, false)) return PosixError(dir, "fsync of directory failed", err);
    return target()->SyncDir(dir);
  }

 private:
  struct Rule {
    Op op;
    int err;
    std::string path_contains;
    int after;
    int times;
  };

  class File : public WritableFile {
   public:
    File(FaultEnv* env, std::string path, std::unique_ptr<WritableFile> file)
        : env_(env), path_(std::move(path)), file_(std::move(file)) {}
    Status Append(std::string_view data) override {
      if (const int err = env_->Check(Op::kWrite, path_, !data.empty())) {
        file_->Append(data.substr(0, data.size() / 2)).ok();  // torn: half of it made it
        return PosixError(path_, "write failed", err);
      }
      return file_->Append(data);
    }
    Status Sync() override {
      if (const int err = env_->Check(Op::kSync, path_, false)) return PosixError(path_, "fsync failed", err);
      return file_->Sync();
    }
    Status Close() override { return file_->Close(); }

   private:
    FaultEnv* env_;
    const std::string path_;
    std::unique_ptr<WritableFile> file_;
  };

  // The errno the operation fails with, or 0 when it goes ahead. `needs_space`: a full disk
  // fails it.
  int Check(Op op, const std::string& path, bool needs_space) {
    std::lock_guard<std::mutex> lock(mu_);
    int err = 0;
    for (Rule& r : rules_) {
      if (r.op != op || path.find(r.path_contains) == std::string::npos) continue;
      if (r.after > 0) {
        --r.after;
        continue;
      }
      if (r.times == 0) continue;
      if (r.times > 0) --r.times;
      if (err == 0) err = r.err;
    }
    if (err == 0 && needs_space && disk_full_ && path.find(disk_full_path_) != std::string::npos) err = ENOSPC;
    if (err != 0) ++failures_;
    return err;
  }

  mutable std::mutex mu_;  // guards everything below
  std::vector<Rule> rules_;
  bool disk_full_ = false;
  std::string disk_full_path_;
  int64_t failures_ = 0;
};

}  // namespace sd
