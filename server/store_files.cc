#include "server/store_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "server/frame_records.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxFileNumber = static_cast<uint64_t>(INT64_MAX);  // what the index can hold

std::string Errno(int err) { return std::strerror(err); }

// Zero padded so that a directory listing is in sequence order.
std::string FrameFileName(uint64_t sequence) {
  char name[32];
  std::snprintf(name, sizeof(name), "%012llu.jpg", static_cast<unsigned long long>(sequence));
  return name;
}

std::string CheckpointFileName(uint64_t version) { return "v" + std::to_string(version) + ".sdw"; }

bool ParseUint64(const std::string& s, uint64_t* v) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Creates `dir` (whose parent must exist) and makes its entry durable; Ok when it exists.
Status EnsureDir(Env* env, const std::string& dir) {
  const bool existed = env->FileExists(dir);
  SD_RETURN_IF_ERROR(env->CreateDir(dir));
  if (existed) return Status::Ok();
  return env->SyncDir(fs::path(dir).parent_path().string());
}

}  // namespace

// ---- DirLock -------------------------------------------------------------------------------

StatusOr<std::unique_ptr<DirLock>> DirLock::Acquire(const std::string& dir) {
  const std::string lock_path = dir + "/LOCK";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(lock_path + ": cannot open: " + Errno(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status::FailedPrecondition(dir + ": store is already open (" + lock_path + " is locked)");
    }
    return Status::IOError(lock_path + ": cannot lock: " + Errno(err));
  }
  return std::unique_ptr<DirLock>(new DirLock(fd));
}

DirLock::~DirLock() { ::close(fd_); }  // releases the flock

// ---- StoreFiles ----------------------------------------------------------------------------

std::string StoreFiles::FramePath(const std::string& device_id, uint64_t sequence) const {
  return dir_ + "/frames/" + device_id + "/" + FrameFileName(sequence);
}

std::string StoreFiles::CheckpointPath(const std::string& device_id, uint64_t version) const {
  return dir_ + "/models/" + device_id + "/" + CheckpointFileName(version);
}

std::string StoreFiles::Path(Kind kind, const std::string& device_id, uint64_t number) const {
  return kind == Kind::kFrame ? FramePath(device_id, number) : CheckpointPath(device_id, number);
}

Status StoreFiles::CreateRoots() const {
  SD_RETURN_IF_ERROR(EnsureDir(env_, dir_ + "/frames"));
  return EnsureDir(env_, dir_ + "/models");
}

Status StoreFiles::Write(Kind kind, const std::string& device_id, uint64_t number, std::string_view bytes,
                         const std::string& what) const {
  const std::string device_dir = dir_ + (kind == Kind::kFrame ? "/frames/" : "/models/") + device_id;
  SD_RETURN_IF_ERROR(EnsureDir(env_, device_dir).WithContext(what));
  return WriteFileDurably(env_, Path(kind, device_id, number), bytes).WithContext(what);
}

StatusOr<std::string> StoreFiles::ReadChecked(const std::string& path, int64_t expected_size) const {
  StatusOr<std::string> bytes = env_->ReadFile(path);
  if (!bytes.ok()) {
    if (bytes.status().code() == Status::Code::kNotFound) {
      return Status::DataLoss(path + ": missing, though the index has a row for it");
    }
    return bytes.status();
  }
  if (static_cast<int64_t>(bytes->size()) != expected_size) {
    return Status::DataLoss(path + ": " + std::to_string(bytes->size()) + " bytes, the index says " +
                            std::to_string(expected_size));
  }
  return bytes;
}

Status StoreFiles::RemoveOrphans(const HasRow& has_row) const {
  int removed = 0;
  for (Kind kind : {Kind::kFrame, Kind::kCheckpoint}) {
    const std::string root = dir_ + (kind == Kind::kFrame ? "/frames" : "/models");
    SD_ASSIGN_OR_RETURN(const std::vector<std::string> devices, env_->ListDir(root));
    for (const std::string& device : devices) {
      if (!IsValidDeviceId(device)) continue;
      const std::string device_dir = root + "/" + device;
      StatusOr<std::vector<std::string>> names = env_->ListDir(device_dir);
      if (!names.ok()) {
        if (!env_->FileExists(device_dir + "/.")) continue;  // not a directory: not ours
        return names.status();
      }
      for (const std::string& name : *names) {
        const std::string path = device_dir + "/" + name;
        bool orphan = IsTempFileName(name);
        if (!orphan) {
          uint64_t number = 0;
          std::string expected;
          if (kind == Kind::kFrame && name.size() > 4 && ParseUint64(name.substr(0, name.size() - 4), &number)) {
            expected = FrameFileName(number);
          } else if (kind == Kind::kCheckpoint && name.size() > 5 && name[0] == 'v' &&
                     ParseUint64(name.substr(1, name.size() - 5), &number)) {
            expected = CheckpointFileName(number);
          }
          if (expected.empty() || expected != name || number > kMaxFileNumber) continue;  // not ours
          SD_ASSIGN_OR_RETURN(const bool row, has_row(kind, device, number, path));
          orphan = !row;
        }
        if (orphan) {
          const Status rm = env_->RemoveFile(path);
          if (!rm.ok() && rm.code() != Status::Code::kNotFound) return rm.WithContext("removing an orphan file");
          ++removed;
        }
      }
    }
  }
  if (removed > 0) spdlog::warn("{}: removed {} file(s) without an index row (left by a crash)", dir_, removed);
  return Status::Ok();
}

// ---- FileNameClaims ------------------------------------------------------------------------

std::string FileNameClaims::FrameKey(const std::string& device_id, uint64_t sequence) {
  return "f " + device_id + " " + std::to_string(sequence);
}

std::string FileNameClaims::VersionKey(const std::string& device_id, uint64_t version) {
  return "v " + device_id + " " + std::to_string(version);
}

FileNameClaims::Claim::Claim(FileNameClaims* claims, std::string key) : claims_(claims), key_(std::move(key)) {
  std::unique_lock<std::mutex> lock(claims_->mu_);
  claims_->released_.wait(lock, [&] { return claims_->in_flight_.count(key_) == 0; });
  claims_->in_flight_.insert(key_);
}

void FileNameClaims::Claim::Release() {
  if (claims_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(claims_->mu_);
    claims_->in_flight_.erase(key_);
  }
  claims_->released_.notify_all();
  claims_ = nullptr;
}

}  // namespace sd
