// A device as the server holds it while it lives: its live stream, what it is sent, its
// counters. Made once (DeviceRegistry) and never destroyed while the core lives, so a pointer
// to one stays valid. Which training unit a device belongs to is not here: the training pool
// (server/training_pool.h) alone owns that mapping.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "common/base/mutex.h"
#include "common/base/token_bucket.h"
#include "common/base/status.h"
#include "common/link/model_update.h"
#include "common/vision/detection.h"
#include "server/device_trainer.h"

namespace sd {

// A device's live stream as the core sees it (implemented by server/edge_session.h). A device
// has at most one: a stream that authenticates as a device replaces the one before it.
class DeviceSession {
 public:
  virtual ~DeviceSession() = default;
  // A new version: `update` as published (a delta under a delta policy), `full` the same
  // version as a full model, for a stream too far behind to apply deltas in a row.
  virtual void OnUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) = 0;
  // The core ends this stream with `why`: a newer stream of the device replaced it (ABORTED),
  // or the device was disabled, removed or given a new token (UNAUTHENTICATED).
  virtual void End(const Status& why) = 0;
};

// A snapshot of a device's counters.
struct DeviceCounters {
  int64_t frames_stored = 0, frames_rejected = 0, duplicates = 0;
  int64_t rounds = 0, published = 0;
  int64_t bytes_in = 0, bytes_out = 0;  // gRPC messages with their 5-byte framing
  double first_contact_s = 0;           // steady clock, when the first byte was counted
  // Steady clock: when the device's latest round began and ended (start > end while it runs).
  double round_start_s = 0, round_end_s = 0;
  int64_t served_version = -1;  // the version the device last said it runs (-1: not heard yet)
  // Mean kbit/s each way since the first contact (0 before any).
  double in_kbps(double now_s) const;
  double out_kbps(double now_s) const;
};

// A finished round as the dashboard lists it: its result (without the update's payload) and
// when it ended (wall clock, ms since the epoch).
struct RecentRound {
  int64_t ended_ms = 0;
  RoundResult result;
};

struct Device {
  // Rounds kept per device for the dashboard; nothing else stores discarded rounds.
  static constexpr size_t kRecentRounds = 20;

  Device(std::string device_id, TokenBucket full_model_bucket)
      : id(std::move(device_id)), full_model_sends(std::move(full_model_bucket)) {}

  const std::string id;

  // Counted by every stream for every message: atomics, no lock.
  std::atomic<int64_t> bytes_in{0}, bytes_out{0};
  std::atomic<double> first_contact_s{0};

  // Orders the updates sent to the device's stream by a publish, a pin and an unpin, so that
  // a round published as an admin pins cannot reach the edge after the pinned version. `mu`
  // and the stream's own mutexes nest inside it; an update goes to the stream with it held.
  Mutex send_mu SD_ACQUIRED_BEFORE(mu);
  mutable Mutex mu;
  std::shared_ptr<const ModelUpdate> latest_full SD_GUARDED_BY(mu);  // the newest version as a full model
  std::shared_ptr<const ModelUpdate> pinned_full SD_GUARDED_BY(mu);  // while pinned: the pinned version
  std::weak_ptr<DeviceSession> session SD_GUARDED_BY(mu);            // the one live stream, if any
  TokenBucket full_model_sends SD_GUARDED_BY(mu);  // ServerCore::AllowFullModelSend
  Detections previous_labels SD_GUARDED_BY(mu);
  bool has_previous SD_GUARDED_BY(mu) = false;
  int frames_since_prune SD_GUARDED_BY(mu) = 0;
  DeviceCounters counters SD_GUARDED_BY(mu);  // all but the byte counts, which live in the atomics above
  std::deque<RecentRound> rounds SD_GUARDED_BY(mu);  // the newest kRecentRounds

  // The counters with the byte counts.
  DeviceCounters Counters() const SD_EXCLUDES(mu);
  // The pinned version while pinned, else the newest published one; null when neither.
  std::shared_ptr<const ModelUpdate> CurrentModel() const SD_EXCLUDES(mu);
  // The live stream, if any.
  std::shared_ptr<DeviceSession> Session() const SD_EXCLUDES(mu);
  void CountBytes(int64_t in, int64_t out);
};

}  // namespace sd
