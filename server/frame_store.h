// The server's durable state: every received frame (image + teacher labels + metadata) and
// every model version it trained, in one directory that survives restarts and crashes.
//
// Layout under `dir`:
//   index.sqlite                 frame/version/device rows (WAL journal, synchronous=FULL)
//   LOCK                         flock()ed while open: one process per directory
//   frames/<device>/<seq>.jpg    the stored JPEG of frame <seq> (12+ digits, zero padded)
//   models/<device>/v<ver>.sdw   the checkpoint of model version <ver>
//
// Retention (Prune): rows are deleted first, in one transaction, and the files after; a crash
// in between leaves only files without rows, which the next Open removes, never a row without
// its file (that would fail every round that reads it with DataLoss).
//
// Crash safety: a file is always made durable (WriteFileDurably in common/base/env.h: temp file,
// fsync, rename, directory fsync) before the row that refers to it is committed, so every
// committed row has its complete file. A crash between the two leaves only a file without a row, which the next Open removes. A
// caller that got `true` from Put (or Ok from PutVersion) can rely on the data after a crash
// or power loss.
//
// Disk failures: image and checkpoint files go through the Env given to Open (tests inject a
// full disk or a failing fsync or rename there); SQLite does its own I/O (its VFS), and the
// LOCK file is flock()ed directly. A Put or PutVersion that fails for the disk (a full disk:
// ResourceExhausted; fsync, rename: Unavailable) commits no row and leaves no partial file
// (at most, when only the directory fsync failed, the complete file without a row, which the
// retry overwrites or the next Open removes); the same call succeeds once the disk works.
//
// Device ids become directory names, so every call that takes one checks it against
// [A-Za-z0-9_.-]{1,64} (and rejects "." and "..") with InvalidArgument.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/vision/detection.h"
#include "common/base/env.h"
#include "common/base/status.h"

struct sqlite3;

namespace sd {

struct FrameRecord {  // what the server stores per received frame
  std::string device_id;
  uint64_t sequence = 0;  // per device, assigned by the edge, starting at 1; (device_id, sequence) is unique
  int64_t frame_index = 0;
  double capture_time_s = 0;
  int source_width = 0, source_height = 0;
  float image_score = 0;
  bool validation = false;  // held-out validation frame (every k-th) vs training frame
  Detections labels;        // teacher labels in the stored image's pixel coordinates
  std::vector<float> embedding;  // AppearanceEmbedding of the stored image; empty if stored before it existed
  std::string jpeg;         // on Put: the bytes to store; on reads: filled only by LoadImage
  std::string image_path;   // filled on reads
};

struct VersionRecord {
  std::string device_id;
  uint64_t version = 0;  // starts at 1
  uint64_t base_version = 0;
  std::string encoding;
  std::string weights_checksum;
  double val_map50 = -1;
  int64_t created_ms = 0;
  std::string checkpoint_path;  // filled on reads
};

// Per-device bounds on stored frames (`retention:` in server.yaml); 0 means no bound.
struct RetentionBounds {
  int64_t max_frames = 0;
  int64_t max_bytes = 0;  // of stored images
  double max_age_s = 0;   // capture time before the device's newest frame
  bool any() const { return max_frames > 0 || max_bytes > 0 || max_age_s > 0; }
};

// The frames training reads, which pruning deletes only when the bounds cannot hold without.
struct PruneKeep {
  int replay_frames = 0;      // the newest training frames (a round's replay window)
  int validation_frames = 0;  // the newest validation frames (the gate's held-out set)
};

struct PruneResult {
  int64_t deleted = 0, deleted_bytes = 0;
  int64_t replay_deleted = 0, validation_deleted = 0;  // of the kept windows: the bounds were too tight
  int64_t frames_left = 0, bytes_left = 0;
};

// What a device's stored frames take: both kinds, their image files' bytes.
struct StoredUsage {
  int64_t frames = 0, bytes = 0;
};

// True when `id` is usable as a device id (and hence as a directory name).
bool IsValidDeviceId(const std::string& id);

// Thread-safe. One mutex guards the SQLite connection and its prepared statements; image and
// checkpoint files are written and read outside it, so a slow fsync of one frame does not
// hold up queries or other devices' frames.
class FrameStore {
 public:
  // Opens (creating if needed) the store in `dir`: <dir>/index.sqlite, frames/, models/.
  // Per-device directories are made on first use. Removes image and checkpoint files that
  // have no row (left by a crash between file and row) and stray temp files.
  // FailedPrecondition when another process has the directory open.
  static StatusOr<std::unique_ptr<FrameStore>> Open(const std::string& dir, Env* env = Env::Default());
  // Opens an existing store for reading only, beside the server that may have it open
  // (streamdistill-export): no LOCK, no orphan sweep, nothing created; SQLite reads under
  // WAL, so a running server's writes are never blocked and every query sees whole commits.
  // Put, PutVersion and Prune return FailedPrecondition. NotFound when `dir` holds no index.
  static StatusOr<std::unique_ptr<FrameStore>> OpenReadOnly(const std::string& dir, Env* env = Env::Default());
  ~FrameStore();
  FrameStore(const FrameStore&) = delete;
  FrameStore& operator=(const FrameStore&) = delete;

  // Durable before it returns: image written to a temp file, fsynced, renamed, directory
  // fsynced, then the row committed. Returns false (and writes nothing) when (device,
  // sequence) is already stored. InvalidArgument for a bad device id, sequence 0 or above
  // INT64_MAX, or empty jpeg bytes.
  StatusOr<bool> Put(const FrameRecord& frame);

  // The highest stored sequence of the device; 0 when none (or when the index cannot be
  // read, which is logged: the edge then merely resends frames that dedupe).
  uint64_t LastSequence(const std::string& device_id) const;
  // Stored frames of one kind (validation or training); 0 when none (or on a logged index error).
  int64_t Count(const std::string& device_id, bool validation) const;
  // The device's stored frames and bytes; zeros when none (or on a logged index error). One
  // query over the device's rows, for the metrics a scrape reads.
  StoredUsage Usage(const std::string& device_id) const;

  // The newest `limit` frames of a kind, oldest first (labels, metadata, image_path; not the
  // jpeg bytes). limit <= 0 gives none.
  StatusOr<std::vector<FrameRecord>> Recent(const std::string& device_id, bool validation, int limit) const;
  // The newest `limit` frames of a kind with sequence < before_sequence, oldest first: the
  // history behind a round's recent windows, from which the long-term memory is chosen.
  StatusOr<std::vector<FrameRecord>> Older(const std::string& device_id, bool validation, uint64_t before_sequence,
                                           int limit) const;
  // Frames of both kinds with sequence > after_sequence (for "new data since the last
  // round"), oldest first, at most `limit` (<= 0 gives none).
  StatusOr<std::vector<FrameRecord>> Since(const std::string& device_id, uint64_t after_sequence, int limit) const;
  // The stored JPEG bytes of (frame.device_id, frame.sequence); the path is derived from
  // those two, not taken from frame.image_path. DataLoss when the file is missing or its size
  // differs from what was stored; the error names the file.
  StatusOr<std::string> LoadImage(const FrameRecord& frame) const;

  // The checkpoint bytes go to <dir>/models/<device>/v<version>.sdw atomically and durably,
  // then the row is committed. AlreadyExists when that version is stored (versions are
  // immutable: edges may hold them); InvalidArgument for version 0 or a bad device id.
  Status PutVersion(const VersionRecord& version, const std::string& checkpoint_bytes);
  // The highest stored version of the device; NotFound when none.
  StatusOr<VersionRecord> LatestVersion(const std::string& device_id) const;
  // The newest `limit` versions of the device, oldest first (none when limit <= 0).
  StatusOr<std::vector<VersionRecord>> Versions(const std::string& device_id, int limit) const;
  // The checkpoint bytes of (version.device_id, version.version), checked like LoadImage.
  StatusOr<std::string> LoadCheckpoint(const VersionRecord& version) const;

  // Deletes frames of the device until `bounds` hold, keeping what stays representative:
  // frames past max_age_s first; then, for count and bytes, the frames outside `keep`, thinned
  // evenly over their whole time span (both kinds in proportion) rather than cut from the old
  // end, so older history stays sampled; then the replay window from its oldest; and only
  // then the gate's validation frames, oldest first. The device's newest frame always stays
  // (streams measure sequence gaps from it). Versions are never deleted.
  StatusOr<PruneResult> Prune(const std::string& device_id, const RetentionBounds& bounds, const PruneKeep& keep);

  // Devices with any frame or version, sorted (as far as read when an index error is logged).
  std::vector<std::string> Devices() const;

  const std::string& dir() const { return dir_; }

 private:
  struct Statements;
  FrameStore(std::string dir, Env* env, int lock_fd, bool read_only);

  // The newest `limit` frames of a kind with sequence <= max_sequence, oldest first.
  StatusOr<std::vector<FrameRecord>> NewestOfKind(const std::string& device_id, bool validation, uint64_t max_sequence,
                                                  int limit) const;
  Status OpenIndex();
  Status CheckWritable(const std::string& what) const;
  Status RemoveOrphans();
  // Waits until no other thread is storing `key` ("f <device> <seq>" / "v <device> <ver>"),
  // then claims it; Release gives it back. Keeps two Puts of the same frame from racing on
  // one file name. Claim requires mu_ held via `lock`; Release takes mu_ itself.
  void Claim(const std::string& key, std::unique_lock<std::mutex>* lock);
  void Release(const std::string& key);

  const std::string dir_;
  Env* const env_;     // image and checkpoint files (not SQLite's, not LOCK)
  const int lock_fd_;  // holds flock(LOCK_EX) on <dir>/LOCK for the store's lifetime; -1 read-only
  const bool read_only_;

  std::mutex prune_mu_;  // one Prune at a time (taken before mu_)

  mutable std::mutex mu_;
  std::condition_variable released_;        // notified (after unlocking mu_) when a claim ends
  sqlite3* db_ = nullptr;                   // guarded by mu_
  std::unique_ptr<Statements> statements_;  // guarded by mu_ (prepared against db_)
  std::set<std::string> in_flight_;         // claimed keys; guarded by mu_
};

}  // namespace sd
