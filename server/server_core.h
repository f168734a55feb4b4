// Everything the server does besides gRPC plumbing: authenticating devices, labelling and
// storing their frames, training rounds, and publishing model updates to listeners.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/failure_log.h"
#include "common/model_update.h"
#include "common/status.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"
#include "server/labeler.h"
#include "server/server_config.h"

namespace sd {


// A device's live stream as the core sees it (implemented by server/edge_session.h). A device
// has at most one: a stream that authenticates as a device replaces the one before it.
class DeviceSession {
 public:
  virtual ~DeviceSession() = default;
  // A new version: `update` as published (a delta under a delta policy), `full` the same
  // version as a full model, for a stream too far behind to apply deltas in a row.
  virtual void OnUpdate(std::shared_ptr<const ModelUpdate> update, std::shared_ptr<const ModelUpdate> full) = 0;
  // Another stream authenticated as this device: this one ends with `why`.
  virtual void Replaced(const Status& why) = 0;
};

struct FrameOutcome {
  Status status;                  // InvalidArgument for a frame that cannot be decoded
  bool duplicate = false;         // stored earlier
  double teacher_agreement = -1;  // with the device's previous frame
};

// A snapshot of a device's counters.
struct DeviceCounters {
  int64_t frames_stored = 0, frames_rejected = 0, duplicates = 0;
  int64_t rounds = 0, published = 0;
  int64_t bytes_in = 0, bytes_out = 0;  // gRPC messages with their 5-byte framing
  double first_contact_s = 0;           // steady clock, when the first byte was counted
  // Steady clock: when the device's latest round began and ended (start > end while it runs).
  double round_start_s = 0, round_end_s = 0;
  // Mean kbit/s each way since the first contact (0 before any).
  double in_kbps(double now_s) const;
  double out_kbps(double now_s) const;
};

class ServerCore {
 public:
  // `teachers` overrides config.teacher (tests pass an oracle for synthetic scenes).
  static StatusOr<std::unique_ptr<ServerCore>> Create(const ServerConfig& config, TeacherFactory teachers = {});
  ~ServerCore();  // stops the training workers

  const ServerConfig& config() const { return config_; }

  // Unknown device or wrong token: Unauthenticated with one message for both, so a client
  // cannot tell which ids exist; another student architecture: FailedPrecondition.
  Status Authenticate(const std::string& device_id, const std::string& token, const std::string& architecture) const;

  // Makes `session` the device's one live stream; a stream that had that role is told it was
  // replaced (outside any core lock). The device must have authenticated.
  void AttachSession(const std::string& device_id, std::shared_ptr<DeviceSession> session);
  // Forgets `session` if it is still the device's live stream.
  void DetachSession(const std::string& device_id, const DeviceSession* session);

  // Admission for a full model sent on request (a ModelRequest or a hello behind the
  // server): a token bucket per device (limits.full_model_burst, one more every
  // limits.full_model_refill_s), so a client cannot make the server send models in a loop.
  bool AllowFullModelSend(const std::string& device_id);

  // Labels and stores one frame asynchronously; `done` runs on a labeller thread once the
  // frame is durable (or rejected). False: the labelling queue is full; call `on_space`
  // to learn when to try again (flow control: the stream stops reading meanwhile).
  bool TrySubmitFrame(const std::string& device_id, const FrameRecord& meta, std::string jpeg,
                      std::function<void(FrameOutcome)> done);
  // After a refused TrySubmitFrame: keeps `fn` and returns true when the queue is still full
  // (fn then runs on a labeller thread once there is room); false, dropping fn, when there is
  // room now. Never calls fn on the calling thread, so a caller never re-enters itself.
  bool WaitForLabelQueueSpace(std::function<void()> fn);

  uint64_t LastStoredSequence(const std::string& device_id) const;
  // The device's newest published version as a full model, or null when it has none. Live
  // listeners get each version as published (a delta under a delta policy).
  StatusOr<std::shared_ptr<const ModelUpdate>> LatestUpdate(const std::string& device_id);

  // One training round for the device the scheduler picks (if any), of RoundIterations steps.
  // The training workers call this, several at once; with training.background false, tests
  // call it by hand.
  StatusOr<RoundResult> RunScheduledRound();
  // A round of `iterations` steps (0: training.iterations) for the device, whatever the
  // scheduler says; a second caller for the same device waits for the first.
  StatusOr<RoundResult> RunRound(const std::string& device_id, int iterations = 0);

  // Stops training for good: every running round is cancelled and whatever any round produced
  // is discarded, never stored nor sent. The server calls it first thing on shutdown.
  void BeginShutdown();
  bool stopping() const { return stopping_; }

  // A frame refused before labelling (bad fields, bad image header).
  void CountRejectedFrame(const std::string& device_id);
  // Lock-free: every stream counts every message.
  void CountBytes(const std::string& device_id, int64_t in, int64_t out);
  DeviceCounters Counters(const std::string& device_id) const;
  FrameStore& store() { return *store_; }

 private:
  struct Device;
  explicit ServerCore(const ServerConfig& config);
  Status Init(TeacherFactory teachers);
  // Loads the device's newest checkpoint (or its initial weights) and builds its trainer;
  // only Init calls it, so no stream thread ever waits for a model to load.
  StatusOr<std::unique_ptr<Device>> CreateDevice(const std::string& device_id);
  // The configured device, or NotFound. devices_ is filled by Init and never changes after,
  // so the lookup needs no lock.
  StatusOr<Device*> FindDevice(const std::string& device_id) const;
  // One training worker: its own libtorch threads, then rounds until the shutdown.
  void TrainingLoop();
  // Stores the round's version and sends it to the device's stream; Aborted (nothing stored)
  // once the shutdown has begun.
  Status Publish(Device& device, const RoundResult& round);
  StatusOr<std::shared_ptr<const ModelUpdate>> EncodeFull(const std::string& device_id, uint64_t version,
                                                            const std::vector<float>& flat) const;


  const ServerConfig config_;
  std::vector<size_t> tensor_sizes_;  // the student's tensors, for per-tensor update encodings
  std::unique_ptr<FrameStore> store_;
  std::unique_ptr<LabelerPool> labeler_;
  FailureLog storage_log_{"storing frames"};  // store failures, logged on change, then rate-limited

  // Lock order (the one place it is written down): ServerCore::mu_, then Device::train_mu,
  // then publish_mu_, then Device::mu; FrameStore, LabelerPool and the streams' own mutexes
  // are leaves taken with none of these held, and callbacks into a stream (acks, updates,
  // Replaced) run with no core lock held.
  std::map<std::string, std::unique_ptr<Device>> devices_;  // immutable after Init
  mutable std::mutex mu_;  // guards scheduler_ and pairs with work_cv_
  RoundScheduler scheduler_;
  std::condition_variable work_cv_;

  // Shared while a version is stored, exclusive to begin the shutdown: once BeginShutdown has
  // it, no round of any worker stores or sends a version.
  std::shared_mutex publish_mu_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> training_workers_;
};

}  // namespace sd
