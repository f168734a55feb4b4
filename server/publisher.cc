#include "server/publisher.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <map>

#include <spdlog/spdlog.h>

#include "common/base/log_safe.h"
#include "common/base/clock.h"
#include "common/link/update_codec.h"
#include "server/update_encoder.h"

namespace sd {
StatusOr<std::shared_ptr<const ModelUpdate>> Publisher::EncodeFull(const std::string& device_id, uint64_t version,
                                                                   const std::vector<float>& flat) const {
  return EncodeFullModel(UpdatesFor(config_, device_id), version, flat);
}

StatusOr<std::shared_ptr<const ModelUpdate>> Publisher::PinnedUpdate(const std::string& device_id,
                                                                     uint64_t version) const {
  SD_ASSIGN_OR_RETURN(auto versions, store_->Versions(device_id, INT_MAX));
  auto record = std::find_if(versions.begin(), versions.end(),
                             [version](const VersionRecord& v) { return v.version == version; });
  if (record == versions.end())
    return Status::NotFound("device " + LogSafe(device_id) + " has no stored version " + std::to_string(version));
  SD_ASSIGN_OR_RETURN(std::string checkpoint, store_->LoadCheckpoint(*record));
  SD_ASSIGN_OR_RETURN(auto model, StudentModel::FromBytes(checkpoint));
  SD_ASSIGN_OR_RETURN(auto full, EncodeFull(device_id, version, model->FlatWeights()));
  auto pinned = std::make_shared<ModelUpdate>(*full);
  pinned->val_map50 = record->val_map50;
  pinned->pinned = true;
  return std::shared_ptr<const ModelUpdate>(pinned);
}

void Publisher::BeginShutdown() {
  WriterLock publishing(&publish_mu_);
  stopping_ = true;
}

Status Publisher::PublishRound(const std::vector<Device*>& members, const DeviceTrainer& trainer,
                               const RoundResult& round) {
  // Shared with the other workers' publishing; BeginShutdown waits for it and then no version
  // is stored any more. A round that ended after the shutdown began is dropped here: its
  // version exists only in the trainer's memory; the store and the edges never see it, as
  // docs/architecture.md promises.
  ReaderLock publishing(&publish_mu_);
  if (stopping_) {
    for (const Device* device : members)
      spdlog::info("device {}: round finished during shutdown: version {} discarded", device->id, round.version);
    return Status::Aborted((members.empty() ? trainer.device_id() : "device " + members.front()->id) +
                           ": shutting down; the round's version was discarded");
  }
  // The round's update turns the previous version into this one; a full model of it serves
  // edges that join later or lost their place in the chain. Once per encoding, not per member.
  // Every member's version is stored before any is sent, all under the shutdown gate: a
  // shutdown finds a round's version stored for all members or for none that any edge saw.
  const std::vector<float> flat = trainer.flat_weights();
  const std::string checkpoint = trainer.weights();
  // Keyed by what a full model's bytes depend on: the policy's full encoding and compression.
  std::map<std::pair<bool, bool>, std::pair<std::shared_ptr<const ModelUpdate>, std::shared_ptr<const ModelUpdate>>>
      encoded;  // (fp16, zstd) -> (live update, full model)
  struct Outgoing {
    Device* device;
    std::shared_ptr<const ModelUpdate> live, full;
  };
  std::vector<Outgoing> outgoing;
  Status first_failure;
  for (Device* device : members) {
    const UpdatePolicy& policy = UpdatesFor(config_, device->id);
    auto& [live, full] = encoded[{policy.encoding == UpdateEncoding::kFullFp16, policy.zstd}];
    if (!full) {
      auto encoded_full = EncodeFull(device->id, round.version, flat);
      if (!encoded_full.ok()) {
        if (first_failure.ok())
          first_failure = encoded_full.status().WithContext("device " + device->id + ": encoding version " +
                                                            std::to_string(round.version));
        continue;
      }
      auto full_model = std::make_shared<ModelUpdate>(**encoded_full);
      full_model->val_map50 = round.map50_after;
      full_model->val_map50_previous = round.map50_before;
      full_model->val_frames = round.val_frames;
      auto live_update = std::make_shared<ModelUpdate>(*full_model);
      if (!round.update.payload.empty()) {  // the round's own update: the smallest way there
        live_update->base_version = IsFullEncoding(round.update.encoding) ? 0 : round.version - 1;
        live_update->encoding = round.update.encoding;
        live_update->payload = round.update.payload;
      }
      full = full_model;
      live = live_update;
    }
    const DeviceCounters counters = device->Counters();
    spdlog::info("device {}: version {} as {} of {} bytes ({} weights changed; full model {} bytes); link in {:.1f} "
                 "kbit/s, out {:.1f} kbit/s", device->id, round.version, UpdateEncodingName(live->encoding),
                 live->payload.size(), round.changed_weights, full->payload.size(), counters.in_kbps(SteadySeconds()),
                 counters.out_kbps(SteadySeconds()));
    VersionRecord record;
    record.device_id = device->id;
    record.version = round.version;
    record.encoding = UpdateEncodingName(live->encoding);
    record.weights_checksum = live->weights_checksum;
    record.val_map50 = round.map50_after;
    record.created_ms = WallMillis();
    // Not sent either when this fails: an edge must never run a version the server could lose
    // in a crash.
    Status stored = store_->PutVersion(record, checkpoint);
    if (!stored.ok()) {
      if (first_failure.ok())
        first_failure = stored.WithContext("device " + device->id + ": storing version " + std::to_string(round.version));
      continue;
    }
    {
      MutexLock lock(&device->mu);
      device->latest_full = full;
      ++device->counters.published;
    }
    outgoing.push_back({device, live, full});
  }
  publishing.Unlock();
  for (const Outgoing& out : outgoing) Send(*out.device, out.live, out.full, round.version);
  return first_failure;
}

void Publisher::Deliver(Device& device, std::shared_ptr<const ModelUpdate> live, std::shared_ptr<const ModelUpdate> full) {
  {
    ReaderLock publishing(&publish_mu_);
    if (stopping_) return;
    MutexLock lock(&device.mu);
    // Taken over already: the stream's attach (ServerCore::AdoptDevice) sent this version, and
    // a second copy would be refused by the edge, which then asks for the full model again.
    if (device.latest_full && device.latest_full->new_version >= full->new_version) return;
    device.latest_full = full;
    ++device.counters.published;
    // A stream whose hello has not been heard yet gets the version in its welcome (the
    // session sends the latest full model to an edge behind it); one that runs it already
    // needs nothing.
    const int64_t served = device.counters.served_version;
    if (served < 0 || served >= static_cast<int64_t>(full->new_version)) return;
  }
  Send(device, live, full, full->new_version);
}

void Publisher::Send(Device& device, const std::shared_ptr<const ModelUpdate>& live,
                     const std::shared_ptr<const ModelUpdate>& full, uint64_t version) {
  MutexLock sending(&device.send_mu);
  std::shared_ptr<DeviceSession> session;
  {
    MutexLock lock(&device.mu);
    if (device.pinned_full) {
      spdlog::info("device {}: pinned to version {}: version {} stored, not sent", device.id,
                   device.pinned_full->new_version, version);
    } else {
      session = device.session.lock();
    }
  }
  if (session) session->OnUpdate(live, full);  // no lock held but send_mu: it writes to the stream
}

}  // namespace sd
