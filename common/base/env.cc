#include "common/base/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>


namespace sd {

WritableFile::~WritableFile() = default;
Env::~Env() = default;

Status PosixError(const std::string& path, const std::string& what, int err) {
  std::string msg = path + ": " + what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::ResourceExhausted(std::move(msg));
  if (err == ENOENT) return Status::NotFound(std::move(msg));
  return Status::IOError(std::move(msg));
}

namespace {

std::string Parent(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError(path_, "write failed", errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (::fsync(fd_) != 0) return PosixError(path_, "fsync failed", errno);
    return Status::Ok();
  }

  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) return PosixError(path_, "close failed", errno);
    return Status::Ok();
  }

 private:
  const std::string path_;
  int fd_;
};

class PosixEnv : public Env {
 public:
  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return PosixError(path, "cannot create", errno);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError(path, "cannot open", errno);
    std::string out;
    char buf[1 << 16];
    while (out.size() < max_bytes) {
      const ssize_t n = ::read(fd, buf, std::min(sizeof(buf), max_bytes - out.size()));
      if (n < 0) {
        if (errno == EINTR) continue;
        const Status s = PosixError(path, "read failed", errno);
        ::close(fd);
        return s;
      }
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  StatusOr<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return PosixError(path, "cannot stat", errno);
    return static_cast<uint64_t>(st.st_size);
  }

  bool FileExists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return PosixError(to, "cannot rename " + from + " into place", errno);
    return Status::Ok();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return PosixError(path, "cannot remove", errno);
    return Status::Ok();
  }

  Status CreateDir(const std::string& dir) override {
    if (dir.empty()) return Status::InvalidArgument("cannot create a directory with an empty name");
    if (::mkdir(dir.c_str(), 0755) == 0) return Status::Ok();
    int err = errno;
    if (err == ENOENT) {  // a parent is missing: make it, then try again
      const std::string parent = Parent(dir);
      if (parent != dir) SD_RETURN_IF_ERROR(CreateDir(parent));
      if (::mkdir(dir.c_str(), 0755) == 0) return Status::Ok();
      err = errno;
    }
    if (err != EEXIST) return PosixError(dir, "cannot create directory", err);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Status::IOError(dir + ": exists but is not a directory");
    }
    return Status::Ok();
  }

  Status SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return PosixError(dir, "cannot open directory to sync", errno);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0 && err != EINVAL) return PosixError(dir, "fsync of directory failed", err);
    return Status::Ok();
  }

  StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return PosixError(dir, "cannot list", errno);
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return PosixError(dir, "cannot list", err);
    return names;
  }
};

}  // namespace

Env* Env::Default() {
  static Env* env = new PosixEnv();
  return env;
}

std::string TempPathFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

bool IsTempFileName(const std::string& name) {
  constexpr std::string_view kOld = ".tmp";
  return name.find(".tmp-") != std::string::npos ||
         (name.size() >= kOld.size() && name.compare(name.size() - kOld.size(), kOld.size(), kOld) == 0);
}

Status WriteFileDurably(Env* env, const std::string& path, std::initializer_list<std::string_view> pieces) {
  const std::string tmp = TempPathFor(path);
  Status status;
  {
    StatusOr<std::unique_ptr<WritableFile>> file = env->NewWritableFile(tmp);
    if (!file.ok()) return file.status();
    for (std::string_view piece : pieces) {
      if (!status.ok()) break;
      status = (*file)->Append(piece);
    }
    if (status.ok()) status = (*file)->Sync();
    const Status closed = (*file)->Close();
    if (status.ok()) status = closed;
  }
  if (status.ok()) status = env->RenameFile(tmp, path);
  if (!status.ok()) {
    env->RemoveFile(tmp).ok();  // best effort; the owner's next open sweeps temp files
    return status;
  }
  return env->SyncDir(Parent(path));
}

}  // namespace sd
