// Everything the server does besides gRPC plumbing: authenticating devices, labelling and
// storing their frames, training rounds, and publishing model updates to listeners.
// The server besides gRPC plumbing, as one facade over the parts that own its state
// (docs/architecture.md, "Code map"): the device registry (who may connect, live streams), the
// frame intake (labelling and storing frames), the training pool (units, rounds, regrouping),
// the publisher (versions out) and the admin store (pins and pauses). The facade wires them,
// runs the admin actions that span several, and serves the metrics and the dashboard.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "common/link/model_update.h"
#include "server/admin_store.h"
#include "server/cluster_backend.h"
#include "server/device.h"
#include "server/device_registry.h"
#include "server/device_trainer.h"
#include "server/frame_intake.h"
#include "server/frame_store.h"
#include "server/label_budget.h"
#include "server/labeler.h"
#include "server/publisher.h"
#include "server/server_config.h"
#include "server/server_metrics.h"
#include "server/training_pool.h"

namespace sd {

// A device as the dashboard shows it.
struct DeviceState {
  std::string id;
  bool enabled = false;    // may connect now
  bool connected = false;  // has an authenticated stream open
  std::string group;       // the group whose student it shares (configured or automatic); "" alone
  uint64_t version = 0;    // the newest published version (0: none yet)
  AdminState admin;
  DeviceCounters counters;
  std::vector<RecentRound> rounds;  // the newest Device::kRecentRounds, oldest first
};

class ServerCore {
 public:
  // `teachers` overrides config.teacher (tests pass an oracle for synthetic scenes).
  static StatusOr<std::unique_ptr<ServerCore>> Create(const ServerConfig& config, TeacherFactory teachers = {});
  ~ServerCore();  // stops the training workers

  const ServerConfig& config() const { return config_; }

  // Authenticates a hello and makes `session` the device's one live stream; a stream that had
  // that role is ended as replaced (outside any core lock). Unknown, disabled or removed
  // device, or wrong token: Unauthenticated with one message for all, so a client cannot tell
  // which ids exist; another student architecture: FailedPrecondition. One step, so that a
  // reload that revokes the device either refuses the stream here or finds it attached and
  // ends it.
  Status AttachSession(const std::string& device_id, const std::string& token, const std::string& architecture,
                       std::shared_ptr<DeviceSession> session);
  // Forgets `session` if it is still the device's live stream.
  void DetachSession(const std::string& device_id, const DeviceSession* session);

  // Admission for a full model sent on request (a ModelRequest or a hello behind the
  // server): a token bucket per device (limits.full_model_burst, one more every
  // limits.full_model_refill_s), so a client cannot make the server send models in a loop.
  bool AllowFullModelSend(const std::string& device_id);

  // Labels and stores one frame asynchronously; `done` runs on a labeller thread once the
  // frame is durable (or rejected). False: the labelling queue is full; call `on_space`
  // to learn when to try again (flow control: the stream stops reading meanwhile).
  bool TrySubmitFrame(const std::string& device_id, const FrameRecord& meta, std::shared_ptr<const std::string> jpeg,
                      std::function<void(FrameOutcome)> done);
  // After a refused TrySubmitFrame: keeps `fn` and returns true when the queue is still full
  // (fn then runs on a labeller thread once there is room); false, dropping fn, when there is
  // room now. Never calls fn on the calling thread, so a caller never re-enters itself.
  bool WaitForLabelQueueSpace(std::function<void()> fn);

  // What the ack of a labelled (or refused) frame tells its edge of its budget (issue 26): the
  // student's agreement with the teacher's labels of it, and the edge's share of the
  // labellers' capacity by benefit. Called on a labeller thread, no lock held.
  FrameBudgetAnswer AnswerFrameBudget(const std::string& device_id, const FrameBudgetAsk& ask,
                                      const FrameOutcome& outcome);
  // Every camera's budget as /metrics and the dashboard show it.
  std::map<std::string, CameraBudget> Budgets() const { return budget_->Cameras(); }

  uint64_t LastStoredSequence(const std::string& device_id) const;
  // The version the device is to run as a full model: its pinned one (ModelUpdate::pinned)
  // while pinned, else its newest published one; null when it has none. Live listeners get
  // each version as published (a delta under a delta policy).
  StatusOr<std::shared_ptr<const ModelUpdate>> LatestUpdate(const std::string& device_id);

  // One training round for the device the scheduler picks, of RoundIterations steps; nullopt
  // when no device has work. The training workers call this, several at once; with
  // training.background false, tests call it by hand.
  StatusOr<std::optional<RoundResult>> RunScheduledRound();
  // A round of `iterations` steps (0: training.iterations) for the device, whatever the
  // scheduler says; a second caller for the same device waits for the first.
  StatusOr<RoundResult> RunRound(const std::string& device_id, int iterations = 0);

  // Automatic grouping (grouping.mode auto, CSBAD; docs/fleet.md, server/regroup.cc). The
  // training workers call it every grouping.every_s; tests call it by hand. FailedPrecondition
  // in mode config.
  Status Regroup();

  // Reads config.devices_file and applies it all-or-nothing (server/devices_file.h): new
  // devices are created (their checkpoints loaded on this thread, never a stream's), changed
  // ones take effect, and the open stream of a device that was disabled, removed or given a
  // new token is ended with UNAUTHENTICATED. Every change is logged. On any error (a broken
  // or missing file, an id that server.yaml configures, a checkpoint that does not load) the
  // error is logged and returned and the devices stay as they were. Devices are never
  // destroyed: a removed one stays in memory, refused, its frames and versions kept, and
  // continues from its latest version when it comes back. The server calls this on SIGHUP
  // and when the file changes; tests call it directly.
  Status ReloadDevices();

  // Admin actions (docs/operations.md, "Admin actions"), each logged with `who` and its
  // outcome. NotFound for an unknown device or version; the state is saved durably before
  // the call returns, and an action whose state cannot be saved fails and changes nothing.
  //
  // Pins the device to a stored version: it goes to the device's stream now, as a full model,
  // and is the one the device is sent on every reconnect. Rounds of its unit go on and their
  // versions are stored, but none is sent to it while pinned (a group's other members get
  // them as before).
  Status Pin(const std::string& device_id, uint64_t version, const std::string& who);
  // Pins the device to the newest stored version before the one it serves (before its newest
  // published one when it has not said); returns that version. FailedPrecondition when there
  // is none.
  StatusOr<uint64_t> Rollback(const std::string& device_id, const std::string& who);
  // Ends a pin: the newest published version goes to the device's stream as a full model.
  Status Unpin(const std::string& device_id, const std::string& who);
  // A paused device's training unit is not scheduled (a group pauses while any member is);
  // its frames are still received and stored.
  Status SetPaused(const std::string& device_id, bool paused, const std::string& who);
  // The device's unit runs a round next, below its thresholds. FailedPrecondition when it is
  // paused or its unit has no training frames.
  Status RequestRound(const std::string& device_id, const std::string& who);

  // Stops training for good: every running round is cancelled and whatever any round produced
  // is discarded, never stored nor sent. The server calls it first thing on shutdown.
  void BeginShutdown();
  bool stopping() const { return stopping_; }

  // A frame refused before labelling (bad fields, bad image header).
  void CountRejectedFrame(const std::string& device_id);
  // Lock-free: every stream counts every message.
  void CountBytes(const std::string& device_id, int64_t in, int64_t out);
  DeviceCounters Counters(const std::string& device_id) const;
  // What the device's stream reported it runs (hello, applied update); also /metrics' gauge.
  void SetServedVersion(const std::string& device_id, uint64_t version);
  // Every device of the current set (removed ones included), sorted.
  std::vector<std::string> DeviceIds() const;
  // NotFound for an id not in the set.
  StatusOr<DeviceState> State(const std::string& device_id) const;
  FrameStore& store() { return *store_; }
  // What /metrics serves; streams count their events here too.
  ServerMetrics& metrics() { return metrics_; }

 private:
  explicit ServerCore(const ServerConfig& config);
  Status Init(TeacherFactory teachers);
  // Loads the device's newest checkpoint (or its initial weights), joins it to its training
  // unit and applies its admin state; only the registry calls it, from Init or a reload, so no
  // stream thread ever waits for a model to load.
  StatusOr<std::unique_ptr<Device>> CreateDevice(const std::string& device_id);
  // The metrics read at scrape time from the devices, the store and the labellers.
  void RegisterMetricCallbacks();
  // Replicas: the device's stream was admitted here (its lease taken): its unit continues
  // from the newest stored version, its admin state is applied, and its rounds may run.
  Status AdoptDevice(const std::string& device_id);
  // Replicas: another replica serves the device now: its stream here ends and its rounds stop.
  void OnLeaseLost(const std::string& device_id);
  // Replicas: another replica changed the device's pin or pause: applied to its stream and unit.
  void ApplyAdminState(const std::string& device_id);
  // Replicas: a newer version of a device served here was stored by another replica's round:
  // the device's unit continues from it, and the stream of every member of the unit served
  // here gets the round's update (or the full model when the edge is further behind).
  void DeliverStoredVersion(const std::string& device_id);
  // DeliverStoredVersion's send to one device, when its unit is newer than what it was sent.
  Status DeliverCaughtUpVersion(const std::string& device_id);
  // The version of the device's latest full model here; 0: none.
  static uint64_t LatestFullVersion(Device& device);
  // Whether the device's training unit holds a newer version than `version`.
  bool UnitIsAhead(const std::string& device_id, uint64_t version) const;
  // Replicas: the device's unit, just caught up with a stored version (TrainingPool::CatchUp),
  // as a full model carrying the held-out mAP50 stored with that version.
  StatusOr<std::shared_ptr<ModelUpdate>> CaughtUpFullModel(const std::string& device_id);

  const ServerConfig config_;
  ServerMetrics metrics_;  // declared before the parts: it outlives their callbacks
  // storage.backend postgres: the shared database and this replica's leases (null with
  // SQLite). Declared before the store and the admin store, which use its connections, so it
  // is destroyed after them.
  std::unique_ptr<ClusterBackend> cluster_;
  PgAdminStore* pg_admin_ = nullptr;  // admin_, when it is the database's
  PgFrameStore* pg_store_ = nullptr;  // store_, when it is the database's
  // Leaves: the store, the admin store and the labellers take no lock of the others.
  std::unique_ptr<FrameStore> store_;
  std::unique_ptr<AdminStore> admin_;
  std::unique_ptr<LabelerPool> labeler_;
  std::unique_ptr<LabelBudget> budget_;  // a leaf too; asks the pool for benefits outside its lock
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<TrainingPool> pool_;
  std::unique_ptr<DeviceRegistry> registry_;
  std::unique_ptr<FrameIntake> intake_;
  // Replicas: the lease epoch each live stream was admitted at, to give up that lease (and not
  // a newer stream's) when it ends. A leaf.
  Mutex epochs_mu_;
  std::map<const DeviceSession*, uint64_t> session_epochs_ SD_GUARDED_BY(epochs_mu_);
  // One admin action at a time, held through it but for the write to a stream; taken before
  // any lock of the parts (a device's send_mu to order a pin against a publish, then the
  // parts' own).
  Mutex admin_mu_;
  std::atomic<bool> stopping_{false};
};

}  // namespace sd
