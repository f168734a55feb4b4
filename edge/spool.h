// The edge's bounded on-disk queue of sampled frames waiting for the server's ack. Frames stay
// here until acked, across reconnects and restarts; during a long outage the oldest frames are
// dropped so the newest data survives.
//
// Layout of `dir`:
//   <20-digit sequence>.frame  one frame: a header (magic, payload size, FNV-1a 64 of the
//                              payload) and the serialized frame message
//   sequence                   "<limit>\n": every sequence handed out so far is below it, so a
//                              restart continues from there even with an empty spool
//   *.tmp-*                    a write in progress; leftovers of a crash are deleted at Open
// Every file is written with WriteFileDurably (common/base/env.h: temp file, fsync, rename,
// directory fsync), so a crash or a full disk leaves either the old or the new version,
// never half a file. All file access goes through SpoolOptions::env.
//
// Thread-safe: the capture thread pushes, the network thread reads and removes. File I/O for
// Push and Read happens outside the lock, so a slow disk write does not stall the other thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/env.h"
#include "common/base/failure_log.h"
#include "common/base/status.h"

namespace sd {

struct SpoolOptions {
  std::string dir;
  int64_t max_bytes = 256 << 20;  // payload bytes of all pending frames
  int64_t max_frames = 10000;
  Env* env = Env::Default();  // not from the config file: tests inject faults here
  // A dir and both bounds > 0; the message starts with the field's name (YamlReader::Check).
  Status Validate() const;
};

class Spool {
 public:
  // Creates `dir` if needed and reloads the pending frames. A frame file whose header or size
  // is wrong (a torn or foreign file) is logged and deleted; leftover temp files are deleted.
  // If the options shrank since the last run, the oldest frames are dropped to fit.
  static StatusOr<std::unique_ptr<Spool>> Open(const SpoolOptions& options);

  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // The next frame sequence: 1, 2, ... rising across restarts and never reused, even after
  // the spool was emptied. The counter file reserves kSequenceLease numbers at a time (one
  // fsync per lease, not per frame), so a restart may skip up to kSequenceLease - 1 numbers.
  // A failure to persist is logged and retried on the next call; the counter still rises in
  // memory, and after a restart it starts above every pending frame.
  uint64_t NextSequence();
  // Makes NextSequence() return at least `next` (e.g. above the server's last stored
  // sequence, should the local counter ever have been lost). Never lowers it.
  void AdvanceSequence(uint64_t next);
  static constexpr uint64_t kSequenceLease = 64;
  // The largest sequence (INT64_MAX, what the server stores). A counter file or frame name
  // above it is not ours (a garbled or foreign file), so the counter can never wrap to 0.
  static constexpr uint64_t kMaxSequence = uint64_t{0x7fffffffffffffff};

  // Stores an already-serialized frame message under `sequence` (atomic file write). When the
  // bounds would be exceeded, the OLDEST pending frames are dropped (logged, counted in
  // dropped()) so a long outage keeps the newest data. AlreadyExists for a sequence that is
  // pending; InvalidArgument for sequence 0, one above kMaxSequence or a frame larger than
  // max_bytes on its own. When the disk fails (full: ResourceExhausted; fsync or rename:
  // Unavailable) no partial file is left (at most, when only the directory fsync failed, the
  // complete frame, which a restart would find and send), the pending frames are untouched,
  // and the failure is logged (rate-limited) and counted in push_failures(); the next Push
  // simply tries again.
  Status Push(uint64_t sequence, const std::string& bytes);

  std::vector<uint64_t> Pending() const;  // ascending
  // The smallest pending sequence greater than `after` (0: the oldest), without copying the
  // whole list: what a sender walking the queue needs.
  std::optional<uint64_t> NextPendingAfter(uint64_t after) const;

  // The frame's bytes. NotFound when it is not pending (acked or dropped meanwhile); DataLoss
  // when the file fails its checksum (the caller should Remove it).
  StatusOr<std::string> Read(uint64_t sequence) const;
  // On ack. Removing an absent sequence is OK.
  Status Remove(uint64_t sequence);

  int64_t pending_count() const;
  int64_t pending_bytes() const;
  int64_t dropped() const;  // since Open
  int64_t push_failures() const;  // Pushes the disk refused, since Open

 private:
  explicit Spool(SpoolOptions options);
  std::string FramePath(uint64_t sequence) const;
  // Drops the oldest frames (never `keep`) until the bounds hold; returns the dropped
  // sequences, whose files the caller deletes after unlocking. Caller holds mu_.
  std::vector<uint64_t> DropOldestLocked(uint64_t keep);
  void DeleteFiles(const std::vector<uint64_t>& sequences) const;

  const SpoolOptions options_;
  Env* const env_;
  FailureLog push_log_;     // failed Pushes (a full disk fails every one)
  FailureLog counter_log_;  // failed writes of the counter file
  mutable std::mutex mu_;
  std::map<uint64_t, int64_t> pending_;  // sequence -> payload bytes
  int64_t pending_bytes_ = 0;
  int64_t dropped_ = 0;
  uint64_t next_sequence_ = 1;
  std::mutex sequence_file_mu_;     // orders writes of the counter file; taken before mu_
  uint64_t persisted_limit_ = 0;    // the counter file's value; guarded by sequence_file_mu_
};

}  // namespace sd
