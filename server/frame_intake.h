// Frames in: each frame a stream hands over is labelled by the teacher pool, stored (the ack
// waits for that), counted, and told to the training pool; stored frames beyond a device's
// retention bounds are pruned. A frame's bytes are not copied on the way: the labeller and
// the store share the stream's buffer.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/base/failure_log.h"
#include "common/base/status.h"
#include "server/device.h"
#include "server/frame_store.h"
#include "server/labeler.h"
#include "server/server_config.h"
#include "server/server_metrics.h"
#include "server/training_pool.h"

namespace sd {

struct FrameOutcome {
  Status status;                  // InvalidArgument for a frame that cannot be decoded
  bool duplicate = false;         // stored earlier
  double teacher_agreement = -1;  // with the device's previous frame
  // A newly stored frame's teacher labels, in pixels of the stored image of this size (the
  // session scores the student's detections against them).
  Detections labels;
  int image_width = 0, image_height = 0;
};

class FrameIntake {
 public:
  struct Deps {
    const ServerConfig* config = nullptr;
    FrameStore* store = nullptr;
    LabelerPool* labeler = nullptr;
    // The devices of the current set (set once the registry exists).
    std::function<StatusOr<Device*>(const std::string& device_id)> find_device;
    TrainingPool* pool = nullptr;
    ServerMetrics* metrics = nullptr;
  };
  explicit FrameIntake(Deps deps) : deps_(std::move(deps)), config_(*deps_.config) {}

  // Labels and stores one frame asynchronously; `done` runs on a labeller thread once the
  // frame is durable (or rejected). False: the labelling queue is full (see ServerCore).
  bool TrySubmit(const std::string& device_id, const FrameRecord& meta, std::shared_ptr<const std::string> jpeg,
                 std::function<void(FrameOutcome)> done);
  // Deletes the device's stored frames beyond its retention bounds (FrameStore::Prune), keeping
  // the replay window and the gate's held-out frames as long as the bounds allow; logs.
  void Prune(const std::string& device_id, bool at_start);

 private:
  // The labeller's answer for one frame: stores it, counts it, and tells `done`.
  void Store(const std::string& device_id, const FrameRecord& meta, const std::shared_ptr<const std::string>& jpeg,
             StatusOr<LabelResult> result, const std::function<void(FrameOutcome)>& done);

  const Deps deps_;
  const ServerConfig& config_;
  FailureLog storage_log_{"storing frames"};  // store failures, logged on change, then rate-limited
};

}  // namespace sd
