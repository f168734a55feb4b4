// The server's durable state: every received frame (image + teacher labels + metadata) and
// every model version it trained. This header is the interface intake, training, publishing,
// the dashboard and the export tool use; server/sqlite_frame_store.h is today's one
// implementation (SQLite index + files in one directory). Another implementation (a shared
// database for many servers) must keep every promise written here; the suites in
// tests/frame_store_test.cc and tests/retention_test.cc run against each implementation's
// factory.
//
// Promises every implementation keeps:
// - Durability: Put returns true (PutVersion Ok) only once the frame's row is committed and
//   its image (the version's checkpoint) is durable; after that the data survives a crash of
//   the process or of the machine. A row is never visible without its complete image: a
//   crash or failure between the two leaves at most an image without a row, which the store
//   cleans up itself. An acked frame is what the edge deletes from its spool.
// - Failures: a Put, PutVersion or Prune that fails (a full disk: ResourceExhausted; a
//   failed sync or rename, an unreachable backend: Unavailable or IOError) commits nothing
//   the reads would see half of, and the same call succeeds once the cause is gone.
// - Duplicates: (device_id, sequence) is stored at most once; a second Put of it returns
//   false and changes nothing, even when both race. Versions are immutable: a second
//   PutVersion of (device_id, version) is AlreadyExists.
// - Ordering: lists are oldest first (by sequence or version); "newest" means highest number.
// - Device ids are checked by every call that takes one (IsValidDeviceId: they name
//   directories today), with InvalidArgument.
// - Thread-safe: every method may be called from any thread at once. Reads see whole
//   commits only.
// - A read-only store (OpenReadOnly) answers every read and refuses Put, PutVersion and
//   Prune with FailedPrecondition.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/env.h"
#include "common/base/status.h"
#include "server/frame_records.h"

namespace sd {

class FrameStore {
 public:
  // The embedded default: SqliteFrameStore in `dir` (see server/sqlite_frame_store.h), created
  // if needed. FailedPrecondition when another process has the directory open.
  static StatusOr<std::unique_ptr<FrameStore>> Open(const std::string& dir, Env* env = Env::Default());
  // The same store opened for reading only, beside the server that may have it open
  // (streamdistill-export); nothing is created or removed. NotFound when `dir` holds no store.
  static StatusOr<std::unique_ptr<FrameStore>> OpenReadOnly(const std::string& dir, Env* env = Env::Default());

  virtual ~FrameStore() = default;
  FrameStore(const FrameStore&) = delete;
  FrameStore& operator=(const FrameStore&) = delete;

  // ---- Frames ----
  // Stores the frame (its record, and `jpeg` as its image: the record's own `jpeg` is not
  // read), durable before it returns. False (and nothing written) when (device, sequence) is
  // already stored. InvalidArgument for a bad device id, sequence 0 or above INT64_MAX, or empty
  // jpeg bytes. The bytes are the caller's buffer: the server stores a frame as it came off the
  // stream without copying it.
  virtual StatusOr<bool> Put(const FrameRecord& frame, std::string_view jpeg) = 0;
  // The same with the record's own `jpeg` bytes.
  StatusOr<bool> Put(const FrameRecord& frame) { return Put(frame, frame.jpeg); }

  // The highest stored sequence of the device; 0 when none (or when the store cannot be
  // read, which is logged: the edge then merely resends frames that dedupe).
  virtual uint64_t LastSequence(const std::string& device_id) const = 0;
  // Stored frames of one kind (validation or training); 0 when none (or on a logged error).
  virtual int64_t Count(const std::string& device_id, bool validation) const = 0;
  // The device's stored frames and image bytes; zeros when none (or on a logged error). One
  // cheap query: a metrics scrape reads it for every device.
  virtual StoredUsage Usage(const std::string& device_id) const = 0;

  // The newest `limit` frames of a kind, oldest first (labels, metadata, image_path; not the
  // jpeg bytes). limit <= 0 gives none.
  virtual StatusOr<std::vector<FrameRecord>> Recent(const std::string& device_id, bool validation,
                                                    int limit) const = 0;
  // The newest `limit` frames of a kind with sequence < before_sequence, oldest first: the
  // history behind a round's recent windows, from which the long-term memory is chosen.
  virtual StatusOr<std::vector<FrameRecord>> Older(const std::string& device_id, bool validation,
                                                   uint64_t before_sequence, int limit) const = 0;
  // Frames of both kinds with sequence > after_sequence (for "new data since the last
  // round"), oldest first, at most `limit` (<= 0 gives none).
  virtual StatusOr<std::vector<FrameRecord>> Since(const std::string& device_id, uint64_t after_sequence,
                                                   int limit) const = 0;
  // The stored JPEG bytes of (frame.device_id, frame.sequence), found by those two alone (not
  // by frame.image_path). NotFound when not stored (or pruned meanwhile); DataLoss naming
  // the image when it is missing or its size differs from what was stored.
  virtual StatusOr<std::string> LoadImage(const FrameRecord& frame) const = 0;

  // ---- Model versions (never pruned) ----
  // Stores the version's record and checkpoint, durable before it returns. AlreadyExists
  // when that version is stored (edges may hold it); InvalidArgument for version 0 or above
  // INT64_MAX, or a bad device id.
  virtual Status PutVersion(const VersionRecord& version, const std::string& checkpoint_bytes) = 0;
  // The highest stored version of the device; NotFound when none.
  virtual StatusOr<VersionRecord> LatestVersion(const std::string& device_id) const = 0;
  // The newest `limit` versions of the device, oldest first (none when limit <= 0).
  virtual StatusOr<std::vector<VersionRecord>> Versions(const std::string& device_id, int limit) const = 0;
  // The checkpoint bytes of (version.device_id, version.version), checked like LoadImage.
  virtual StatusOr<std::string> LoadCheckpoint(const VersionRecord& version) const = 0;

  // ---- Retention ----
  // Deletes frames of the device until `bounds` hold, choosing them as ChooseFramesToPrune
  // (server/retention.h) does: old frames first, then the rest thinned evenly, then the
  // replay window, and only then the gate's validation frames. The device's newest frame
  // always stays (streams measure sequence gaps from it). Rows go before images, so a
  // failure leaves no row without its image. One Prune at a time per store.
  virtual StatusOr<PruneResult> Prune(const std::string& device_id, const RetentionBounds& bounds,
                                      const PruneKeep& keep) = 0;

  // Devices with any frame or version, sorted (as far as read when an error is logged).
  virtual std::vector<std::string> Devices() const = 0;

  // Where the store lives, for messages: its directory for the SQLite store.
  virtual const std::string& dir() const = 0;

 protected:
  FrameStore() = default;
};

}  // namespace sd
