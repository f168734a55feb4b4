#include "edge/spool.h"

#include <charconv>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/base/checksum.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'S', 'D', 'S', 'P', 'O', 'O', 'L', '1'};
constexpr size_t kHeaderSize = 8 + 8 + 8;  // magic, payload size, FNV-1a 64 of the payload
constexpr char kFrameSuffix[] = ".frame";
constexpr size_t kSequenceDigits = 20;  // fits every uint64; names sort like numbers
constexpr char kSequenceFile[] = "sequence";

void PutLe64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLe64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "<20 digits>.frame" -> sequence; nullopt for any other name.
std::optional<uint64_t> ParseFrameName(const std::string& name) {
  if (name.size() != kSequenceDigits + std::strlen(kFrameSuffix) || !EndsWith(name, kFrameSuffix)) return std::nullopt;
  uint64_t seq = 0;
  const char* end = name.data() + kSequenceDigits;
  auto r = std::from_chars(name.data(), end, seq);
  if (r.ec != std::errc() || r.ptr != end || seq == 0 || seq > Spool::kMaxSequence) return std::nullopt;
  return seq;
}

// Checks a frame file's header against its size without reading the payload: the cheap test
// Open runs on every file. Returns the payload size.
StatusOr<int64_t> CheckFrameFile(Env* env, const std::string& path) {
  SD_ASSIGN_OR_RETURN(const std::string header, env->ReadFile(path, kHeaderSize));
  if (header.size() < kHeaderSize) return Status::DataLoss(path + ": shorter than a frame header");
  if (std::memcmp(header.data(), kMagic, sizeof(kMagic)) != 0) return Status::DataLoss(path + ": not a spool frame");
  const uint64_t size = GetLe64(header.data() + 8);
  SD_ASSIGN_OR_RETURN(const uint64_t file_size, env->FileSize(path));
  if (file_size != kHeaderSize + size) {
    return Status::DataLoss(path + ": size " + std::to_string(file_size) + " does not match its header (" +
                            std::to_string(kHeaderSize + size) + ")");
  }
  return static_cast<int64_t>(size);
}

}  // namespace

Spool::Spool(SpoolOptions options)
    : options_(std::move(options)),
      env_(options_.env ? options_.env : Env::Default()),
      push_log_("spool " + options_.dir + ": storing sampled frames"),
      counter_log_("spool " + options_.dir + ": persisting the frame sequence counter") {}

std::string Spool::FramePath(uint64_t sequence) const {
  char name[kSequenceDigits + 1];
  std::snprintf(name, sizeof(name), "%020llu", static_cast<unsigned long long>(sequence));
  return (fs::path(options_.dir) / (std::string(name) + kFrameSuffix)).string();
}

Status SpoolOptions::Validate() const {
  if (dir.empty()) return Status::InvalidArgument("dir: is empty");
  if (max_bytes <= 0) return Status::InvalidArgument("max_bytes: must be > 0");
  if (max_frames <= 0) return Status::InvalidArgument("max_frames: must be > 0");
  return Status::Ok();
}

StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("spool"));
  Env* env = options.env ? options.env : Env::Default();
  SD_RETURN_IF_ERROR(env->CreateDir(options.dir).WithContext("spool"));

  std::unique_ptr<Spool> spool(new Spool(options));
  uint64_t max_pending = 0;
  SD_ASSIGN_OR_RETURN(const std::vector<std::string> names, env->ListDir(options.dir));
  for (const std::string& name : names) {
    const std::string path = (fs::path(options.dir) / name).string();
    if (IsTempFileName(name)) {
      // A write a crash interrupted: never renamed into place, so never acknowledged as stored.
      spdlog::info("spool {}: deleting leftover temp file {}", options.dir, name);
      env->RemoveFile(path).ok();
      continue;
    }
    const std::optional<uint64_t> seq = ParseFrameName(name);
    if (!seq) continue;  // the counter file, or something that is not ours
    StatusOr<int64_t> size = CheckFrameFile(env, path);
    if (!size.ok()) {
      spdlog::warn("spool: dropping unreadable frame file: {}", size.status().ToString());
      env->RemoveFile(path).ok();
      continue;
    }
    spool->pending_[*seq] = *size;
    spool->pending_bytes_ += *size;
    max_pending = std::max(max_pending, *seq);
  }

  uint64_t next = std::max<uint64_t>(1, max_pending + 1);
  const std::string counter_path = (fs::path(options.dir) / kSequenceFile).string();
  StatusOr<std::string> counter = env->ReadFile(counter_path);
  if (counter.ok()) {
    uint64_t stored = 0;
    const std::string& text = *counter;
    const char* end = text.data() + text.size();
    if (!text.empty() && text.back() == '\n') --end;
    auto r = std::from_chars(text.data(), end, stored);
    // A value above kMaxSequence would make the counter wrap to 0 and hand out numbers again
    // (found by fuzz/spool_fuzz.cc): it counts as garbled.
    if (r.ec == std::errc() && r.ptr == end && stored <= kMaxSequence) {
      next = std::max(next, stored);
    } else {
      // Only an outside hand can garble it (it is written atomically); the pending frames and
      // the server's last stored sequence (AdvanceSequence) still bound it from below.
      spdlog::warn("spool: {} is malformed; next sequence from the pending frames: {}", counter_path, next);
    }
  } else if (counter.status().code() != Status::Code::kNotFound) {
    spdlog::warn("spool: {}", counter.status().ToString());
  }
  spool->next_sequence_ = next;
  spool->persisted_limit_ = next;  // the next NextSequence() takes a lease from here

  std::vector<uint64_t> dropped;
  {
    std::lock_guard<std::mutex> lock(spool->mu_);
    dropped = spool->DropOldestLocked(0);
  }
  if (!dropped.empty()) {
    spdlog::warn("spool {}: over its bounds after restart; dropped the {} oldest frames", options.dir, dropped.size());
    spool->DeleteFiles(dropped);
  }
  spdlog::debug("spool {}: {} pending frames ({} bytes), next sequence {}", options.dir, spool->pending_.size(),
                spool->pending_bytes_, next);
  return spool;
}

uint64_t Spool::NextSequence() {
  // Held across the file write, so counter files are written in the order leases are taken
  // and a smaller limit never overwrites a bigger one.
  std::lock_guard<std::mutex> file_lock(sequence_file_mu_);
  uint64_t sequence;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sequence = next_sequence_++;
  }
  if (sequence >= persisted_limit_) {
    // Persisted before the number is used: a crash after this never hands it out again.
    const uint64_t limit = sequence + kSequenceLease;
    const std::string path = (fs::path(options_.dir) / kSequenceFile).string();
    const Status s = WriteFileDurably(env_, path, std::to_string(limit) + "\n");
    if (s.ok()) {
      persisted_limit_ = limit;
      counter_log_.Succeeded();
    } else {
      counter_log_.Failed(s);  // rate-limited: with a full disk this fails on every call
    }
  }
  return sequence;
}

void Spool::AdvanceSequence(uint64_t next) {
  // Memory only: nothing at or above `next` is handed out before NextSequence persists a lease.
  std::lock_guard<std::mutex> file_lock(sequence_file_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  // Capped like the counter file: a bogus value from the server cannot make the counter wrap.
  next_sequence_ = std::max(next_sequence_, std::min(next, kMaxSequence));
}

std::vector<uint64_t> Spool::DropOldestLocked(uint64_t keep) {
  std::vector<uint64_t> dropped;
  auto it = pending_.begin();
  while (it != pending_.end() &&
         (static_cast<int64_t>(pending_.size()) > options_.max_frames || pending_bytes_ > options_.max_bytes)) {
    if (it->first == keep) {
      ++it;
      continue;
    }
    pending_bytes_ -= it->second;
    dropped.push_back(it->first);
    it = pending_.erase(it);
  }
  dropped_ += static_cast<int64_t>(dropped.size());
  return dropped;
}

void Spool::DeleteFiles(const std::vector<uint64_t>& sequences) const {
  for (uint64_t seq : sequences) {
    const std::string path = FramePath(seq);
    const Status removed = env_->RemoveFile(path);
    if (!removed.ok() && removed.code() != Status::Code::kNotFound) spdlog::error("spool: {}", removed.ToString());
  }
}

Status Spool::Push(uint64_t sequence, const std::string& bytes) {
  const std::string path = FramePath(sequence);
  if (sequence == 0) return Status::InvalidArgument("spool: sequence 0 is reserved (\"none\")");
  if (sequence > kMaxSequence) return Status::InvalidArgument("spool: sequence " + std::to_string(sequence) + " is out of range");
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size > options_.max_bytes) {
    return Status::InvalidArgument("spool: frame " + std::to_string(sequence) + " has " + std::to_string(size) +
                                   " bytes, more than the whole spool may hold (" +
                                   std::to_string(options_.max_bytes) + ")");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.count(sequence)) {
      return Status::AlreadyExists("spool: frame " + std::to_string(sequence) + " is already pending");
    }
  }
  std::string header(kMagic, sizeof(kMagic));
  PutLe64(&header, static_cast<uint64_t>(size));
  PutLe64(&header, Fnv1a64(bytes));
  const Status written = WriteFileDurably(env_, path, {header, bytes});
  if (!written.ok()) {
    push_log_.Failed(written);
    return written.WithContext("spool");
  }
  push_log_.Succeeded();

  std::vector<uint64_t> dropped;
  int64_t count_after = 0, bytes_after = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_[sequence] = size;
    pending_bytes_ += size;
    // A sequence that did not come from NextSequence must not be handed out later either.
    if (sequence >= next_sequence_) next_sequence_ = sequence + 1;
    dropped = DropOldestLocked(sequence);
    count_after = static_cast<int64_t>(pending_.size());
    bytes_after = pending_bytes_;
  }
  if (!dropped.empty()) {
    // The new frame is already on disk: a crash here leaves at most one frame over the bound.
    spdlog::warn("spool {}: full ({} frames, {} bytes pending; bounds {} / {}): dropped {} oldest frame(s) {}..{}",
                 options_.dir, count_after, bytes_after, options_.max_frames, options_.max_bytes, dropped.size(),
                 dropped.front(), dropped.back());
    DeleteFiles(dropped);
  }
  return Status::Ok();
}

std::vector<uint64_t> Spool::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  out.reserve(pending_.size());
  for (const auto& [seq, size] : pending_) out.push_back(seq);
  return out;
}

std::optional<uint64_t> Spool::NextPendingAfter(uint64_t after) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.upper_bound(after);
  if (it == pending_.end()) return std::nullopt;
  return it->first;
}

StatusOr<std::string> Spool::Read(uint64_t sequence) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_.count(sequence)) {
      return Status::NotFound("spool: frame " + std::to_string(sequence) + " is not pending");
    }
  }
  const std::string path = FramePath(sequence);
  StatusOr<std::string> file = env_->ReadFile(path);
  if (!file.ok()) {
    // Removed or dropped between the check and the read.
    if (file.status().code() == Status::Code::kNotFound) {
      return Status::NotFound("spool: frame " + std::to_string(sequence) + " is not pending");
    }
    return file.status();
  }
  const std::string& data = *file;
  if (data.size() < kHeaderSize || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::DataLoss(path + ": not a spool frame");
  }
  const uint64_t size = GetLe64(data.data() + 8);
  if (data.size() - kHeaderSize != size) {
    return Status::DataLoss(path + ": size does not match its header");
  }
  if (Fnv1a64(std::string_view(data).substr(kHeaderSize)) != GetLe64(data.data() + 16)) {
    return Status::DataLoss(path + ": checksum mismatch");
  }
  return data.substr(kHeaderSize);
}

Status Spool::Remove(uint64_t sequence) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(sequence);
    if (it == pending_.end()) return Status::Ok();  // acked twice, or dropped meanwhile
    pending_bytes_ -= it->second;
    pending_.erase(it);
  }
  const std::string path = FramePath(sequence);
  const Status removed = env_->RemoveFile(path);
  if (!removed.ok() && removed.code() != Status::Code::kNotFound) {
    // It would come back as pending after a restart and be re-sent; the server dedupes it.
    return removed.WithContext("spool: deleting an acked frame");
  }
  return Status::Ok();
}

int64_t Spool::pending_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(pending_.size());
}

int64_t Spool::pending_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_bytes_;
}

int64_t Spool::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

int64_t Spool::push_failures() const { return push_log_.failures(); }

}  // namespace sd
