#include "server/frame_intake.h"

#include <chrono>

#include <opencv2/imgcodecs.hpp>
#include <spdlog/spdlog.h>

#include "common/base/clock.h"
#include "common/base/log_safe.h"

namespace sd {
namespace {

// Stored frames of a device between two prunes: the prune reads all of the device's rows, so
// it runs once per this many stored frames, not per frame. Between prunes a device may hold
// this many frames more than its bounds.
constexpr int kFramesPerPrune = 16;

}  // namespace

bool FrameIntake::TrySubmit(const std::string& device_id, const FrameRecord& meta,
                            std::shared_ptr<const std::string> jpeg, std::function<void(FrameOutcome)> done) {
  LabelJob job;
  job.device_id = device_id;
  job.sequence = meta.sequence;
  job.jpeg = jpeg;
  job.max_image_width = config_.stored_image_max_width;
  job.limits = config_.limits.image;
  const double submitted_s = SteadySeconds();
  auto callback = [this, device_id, meta, submitted_s, jpeg = std::move(jpeg),
                   done = std::move(done)](StatusOr<LabelResult> result) {
    deps_.metrics->label_seconds.Observe(SteadySeconds() - submitted_s);
    if (result.ok()) deps_.metrics->label_queue_wait_seconds.Observe(result->queue_wait_s);
    Store(device_id, meta, jpeg, std::move(result), done);
  };
  return deps_.labeler->TrySubmit(std::move(job), std::move(callback));
}

void FrameIntake::Store(const std::string& device_id, const FrameRecord& meta,
                        const std::shared_ptr<const std::string>& jpeg, StatusOr<LabelResult> result,
                        const std::function<void(FrameOutcome)>& done) {
  ServerMetrics& metrics = *deps_.metrics;
  FrameOutcome outcome;
  auto found = deps_.find_device(device_id);
  if (!found.ok()) {
    spdlog::error("device {}: {}", device_id, found.status().ToString());
    outcome.status = found.status();
    done(outcome);
    return;
  }
  Device& device = **found;
  if (!result.ok()) {
    outcome.status = result.status();
    metrics.frames_rejected.With({device_id, "label"}).Inc();
    {
      MutexLock lock(&device.mu);
      ++device.counters.frames_rejected;
    }
    done(outcome);  // never under a lock: it writes to the stream, which counts bytes
    return;
  }
  FrameRecord record = meta;
  record.device_id = device_id;
  record.labels = result->labels;
  record.embedding = result->embedding;
  record.validation = meta.sequence % config_.validation_every == 0;
  // The labels refer to the shrunk image when the labeller shrank it: store that, re-encoded;
  // else the bytes as sent, without a copy.
  std::vector<uchar> shrunk;
  if (result->shrunk) cv::imencode(".jpg", result->image, shrunk, {cv::IMWRITE_JPEG_QUALITY, 90});
  const std::string_view image = result->shrunk
                                     ? std::string_view(reinterpret_cast<const char*>(shrunk.data()), shrunk.size())
                                     : std::string_view(*jpeg);
  const double put_s = SteadySeconds();
  auto inserted = deps_.store->Put(record, image);
  if (!inserted.ok()) {
    // Not stored, so not acked as stored. A record the store refuses as such is rejected for
    // good; any other failure is the server's (a full disk, a failing fsync or rename, the
    // index): UNAVAILABLE, and the edge keeps the frame and sends it again after a back-off.
    if (inserted.status().code() == Status::Code::kInvalidArgument) {
      outcome.status = inserted.status();
      metrics.frames_rejected.With({device_id, "invalid"}).Inc();
    } else {
      metrics.frames_rejected.With({device_id, "storage"}).Inc();
      storage_log_.Failed(inserted.status());  // on change, then rate-limited: not once per frame
      outcome.status = Status::Unavailable("storage unavailable: " + inserted.status().message() + "; retry later");
    }
    done(outcome);
    return;
  }
  metrics.frame_store_seconds.Observe(SteadySeconds() - put_s);
  storage_log_.Succeeded();
  metrics.frames_acked.With({device_id}).Inc();
  outcome.duplicate = !*inserted;
  bool prune = false;
  {
    MutexLock lock(&device.mu);
    if (outcome.duplicate) {
      ++device.counters.duplicates;
    } else {
      ++device.counters.frames_stored;
      if (device.has_previous) outcome.teacher_agreement = LabelAgreement(device.previous_labels, record.labels);
      outcome.labels = record.labels;
      outcome.image_width = result->image.cols;
      outcome.image_height = result->image.rows;
      device.previous_labels = record.labels;
      device.has_previous = true;
      if (++device.frames_since_prune >= kFramesPerPrune) {
        prune = true;
        device.frames_since_prune = 0;
      }
    }
  }
  if (!outcome.duplicate && !record.validation) deps_.pool->OnNewFrame(device_id, meta.image_score);
  done(outcome);
  if (prune) Prune(device_id, /*at_start=*/false);  // after the ack: the edge does not wait for it
}

void FrameIntake::Prune(const std::string& device_id, bool at_start) {
  const RetentionBounds& bounds = RetentionFor(config_, device_id);
  if (!bounds.any()) return;
  PruneKeep keep;
  keep.replay_frames = config_.round.replay_frames;
  keep.validation_frames = config_.validation_frames;
  auto pruned = deps_.store->Prune(device_id, bounds, keep);
  if (!pruned.ok()) {
    spdlog::warn("device {}: pruning stored frames failed (tried again later): {}", LogSafe(device_id),
                 pruned.status().ToString());
    return;
  }
  if (pruned->deleted == 0) return;
  const auto level = at_start ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level, "device {}: retention deleted {} frames ({} bytes); {} frames ({} bytes) stored", LogSafe(device_id),
              pruned->deleted, pruned->deleted_bytes, pruned->frames_left, pruned->bytes_left);
  if (pruned->replay_deleted > 0 || pruned->validation_deleted > 0)
    spdlog::warn("device {}: retention bounds too tight for the training windows: deleted {} of the newest {} "
                 "training frames and {} of the gate's {} held-out frames", LogSafe(device_id),
                 pruned->replay_deleted, keep.replay_frames, pruned->validation_deleted, keep.validation_frames);
}

}  // namespace sd
