// What goes out as a model version: a round's version stored for each member of its unit and
// sent to their live streams, full models for edges that join later, pinned versions. Owns the
// shutdown gate: once BeginShutdown has returned, no version is stored or sent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "common/link/model_update.h"
#include "server/device.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"
#include "server/server_config.h"

namespace sd {

class Publisher {
 public:
  Publisher(const ServerConfig& config, FrameStore* store) : config_(config), store_(store) {}

  // `flat` as a full model of `version` in the device's policy: what the edge holds already
  // (rounds publish delivered weights), so it must reproduce them exactly: fp16 only where the
  // policy rounds to fp16 anyway.
  StatusOr<std::shared_ptr<const ModelUpdate>> EncodeFull(const std::string& device_id, uint64_t version,
                                                          const std::vector<float>& flat) const;
  // The stored `version` of the device as a full model marked pinned; NotFound when not stored.
  StatusOr<std::shared_ptr<const ModelUpdate>> PinnedUpdate(const std::string& device_id, uint64_t version) const;

  // A published round of a unit: its version is stored for every member and sent to each
  // member's stream unless it is pinned (stored all the same, so that the unit's version
  // numbers stay one sequence and an unpin has the newest to send). The full model is encoded
  // once per encoding the members use, not once per member. A member that fails to store it
  // does not keep it from the others; the first failure is returned. Aborted, nothing stored,
  // once the shutdown has begun.
  Status PublishRound(const std::vector<Device*>& members, const DeviceTrainer& trainer, const RoundResult& round)
      SD_EXCLUDES(publish_mu_);

  // A version already stored reaches the device: it becomes the full model for edges that
  // join later, and `live` (the version's update, or the full model) goes to its stream unless
  // an admin pinned the device. Nothing once the shutdown has begun, or when the device has
  // this version (or a newer one) already. Not sent to a stream whose hello is not heard yet
  // (Device's served_version -1): its welcome sends the newest full model.
  void Deliver(Device& device, std::shared_ptr<const ModelUpdate> live, std::shared_ptr<const ModelUpdate> full)
      SD_EXCLUDES(publish_mu_);

  // Waits out a version being stored; every later one is dropped.
  void BeginShutdown() SD_EXCLUDES(publish_mu_);
  bool stopping() const { return stopping_; }

 private:
  // Sends `live` to the device's stream unless it is pinned; `version` for the log.
  static void Send(Device& device, const std::shared_ptr<const ModelUpdate>& live, const std::shared_ptr<const ModelUpdate>& full,
                   uint64_t version);
  const ServerConfig& config_;
  FrameStore* const store_;
  // Shared while a version is stored, exclusive to begin the shutdown.
  SharedMutex publish_mu_;
  std::atomic<bool> stopping_{false};
};

}  // namespace sd
