// Everything the server does besides gRPC plumbing: authenticating devices, labelling and
// storing their frames, training rounds, and publishing model updates to listeners.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/failure_log.h"
#include "common/link/model_update.h"
#include "common/base/status.h"
#include "common/base/token_hash.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"
#include "server/labeler.h"
#include "server/server_config.h"
#include "server/server_metrics.h"

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

// An operator's overrides of a device (docs/operations.md, "Admin actions"), kept in
// storage_dir/admin_state.json so that they survive a restart.
struct AdminState {
  uint64_t pinned_version = 0;  // 0: not pinned; the device gets every published version
  bool paused = false;          // its training unit (its group's, in a group) is not scheduled
};

// A device as the dashboard shows it.
struct DeviceState {
  std::string id;
  bool enabled = false;    // may connect now
  bool connected = false;  // has an authenticated stream open
  std::string group;       // the group whose student it shares (configured or automatic); "" alone
  uint64_t version = 0;    // the newest published version (0: none yet)
  AdminState admin;
  DeviceCounters counters;
  std::vector<RecentRound> rounds;  // the newest kRecentRounds, oldest first
};

class ServerCore {
 public:
  // Rounds kept per device for the dashboard; nothing else stores discarded rounds.
  static constexpr size_t kRecentRounds = 20;

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
  bool TrySubmitFrame(const std::string& device_id, const FrameRecord& meta, std::string jpeg,
                      std::function<void(FrameOutcome)> done);
  // After a refused TrySubmitFrame: keeps `fn` and returns true when the queue is still full
  // (fn then runs on a labeller thread once there is room); false, dropping fn, when there is
  // room now. Never calls fn on the calling thread, so a caller never re-enters itself.
  bool WaitForLabelQueueSpace(std::function<void()> fn);

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

  // Automatic grouping (grouping.mode auto, CSBAD; docs/fleet.md): scores every unit's student
  // on the newest held-out frames of every device that has grouping.min_heldout_frames, decides
  // splits and merges (server/grouping.h), logs the transfer matrix and each change, and
  // replaces the units that change: a unit in a round is waited for, never torn down, and a
  // new unit starts from the newest version among the units it is made of. The training
  // workers call it every grouping.every_s; tests call it by hand. FailedPrecondition in mode
  // config.
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
  struct Device;
  struct TrainingUnit;
  // A device and who may connect as it. Snapshots of the whole set are immutable and
  // replaced as a whole by a reload.
  struct Enrolment {
    std::shared_ptr<Device> device;
    TokenHash token;
    bool enabled = true;   // may connect: listed, and enabled in its file entry
    bool from_file = false;  // from the devices file (else inline in server.yaml: never reloaded)
    bool listed = true;      // still in the devices file (a removed device stays, disabled)
  };
  using DeviceMap = std::map<std::string, Enrolment>;

  explicit ServerCore(const ServerConfig& config);
  Status Init(TeacherFactory teachers);
  // Loads the device's newest checkpoint (or its initial weights) and builds its trainer;
  // only Init and ReloadDevices call it, so no stream thread ever waits for a model to load.
  StatusOr<std::unique_ptr<Device>> CreateDevice(const std::string& device_id);
  // The device's training unit: its group's (made with the group's first enrolled member, from
  // the newest version any member has stored) or its own.
  StatusOr<std::shared_ptr<TrainingUnit>> UnitFor(const std::string& device_id);
  // A unit of `members` (`group` "": one device alone) whose student starts from `weights` as
  // `version`.
  StatusOr<std::shared_ptr<TrainingUnit>> NewUnit(const std::string& group, std::vector<std::string> members,
                                                  const std::string& weights, uint64_t version) const;
  // The device's current unit (automatic grouping may replace it between two calls).
  static std::shared_ptr<TrainingUnit> UnitOf(Device& device);
  // Regroup's work, with regroup_mu_ held; RegroupWhenDue runs it on a training worker once
  // grouping.every_s has passed, unless another worker is at it.
  Status RegroupLocked();
  void RegroupWhenDue();
  // Every current unit for the log: "auto1=cam1+cam2 cam3" (a device alone by its id).
  std::string UnitsNow() const;
  // A round of the unit on the frames of its enrolled members; a published version goes to
  // each of them.
  StatusOr<RoundResult> RunUnitRound(TrainingUnit& unit, int iterations);
  // ReloadDevices' work, with reload_mu_ held. At start a missing file is no error (no device
  // enrolled yet).
  Status ApplyDevicesFile(bool at_start);
  // What tells a changed devices file apart without reading it: a rename (atomic replace)
  // changes the inode, an edit in place the size or the mtime.
  struct FileStamp {
    bool exists = false;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp& o) const {
      return exists == o.exists && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
  };
  // Through stat() directly: Env has no mtime, and only change detection depends on it.
  static FileStamp StampOf(const std::string& path);
  // Polls StampOf(devices_file) every devices_file_poll_s and reloads the file when it
  // differs from `seen` (taken before the last read, so a change during a read is not missed).
  void WatchDevicesFile(FileStamp seen);
  // The current device set: one pointer copy under devices_mu_.
  std::shared_ptr<const DeviceMap> Devices() const;
  // The device (enabled or not), or NotFound. Devices are never destroyed while the core
  // lives, so the pointer stays valid after the snapshot it came from is replaced.
  StatusOr<Device*> FindDevice(const std::string& device_id) const;
  // Deletes the device's stored frames beyond its retention bounds (FrameStore::Prune), keeping
  // the replay window and the gate's held-out frames as long as the bounds allow; logs.
  void PruneFrames(const std::string& device_id, bool at_start);
  // One training worker: its own libtorch threads, then rounds until the shutdown.
  void TrainingLoop();
  // Stores the round's version and sends it to the device's stream; Aborted (nothing stored)
  // once the shutdown has begun.
  Status Publish(Device& device, const TrainingUnit& unit, const RoundResult& round);
  StatusOr<std::shared_ptr<const ModelUpdate>> EncodeFull(const std::string& device_id, uint64_t version,
                                                            const std::vector<float>& flat) const;
  // The metrics read at scrape time from the devices, the store and the labellers.
  void RegisterMetricCallbacks();
  // admin_states_ from storage_dir (Init; none when the file does not exist), and the file
  // rewritten whole with admin_mu_ held.
  Status LoadAdminStates();
  Status SaveAdminStates();
  AdminState AdminStateOf(const std::string& device_id) const;
  // Applies `change` to the device's state and saves all; on a failed save the state stays as
  // it was. admin_mu_ held.
  Status ChangeAdminState(const std::string& device_id, const std::function<void(AdminState&)>& change);
  // Whether any member of `unit` is paused; admin_mu_ held.
  bool UnitPausedLocked(const TrainingUnit& unit) const;
  // The stored `version` of the device as a full model marked pinned; NotFound when not stored.
  StatusOr<std::shared_ptr<const ModelUpdate>> PinnedUpdate(const std::string& device_id, uint64_t version);
  // Makes `pinned` (null: none) the device's pinned model; returns its live stream, if any.
  std::shared_ptr<DeviceSession> SetPinned(Device& device, std::shared_ptr<const ModelUpdate> pinned);

  const ServerConfig config_;
  ServerMetrics metrics_;  // declared before the store and labellers: it outlives their callbacks
  std::vector<size_t> tensor_sizes_;  // the student's tensors, for per-tensor update encodings
  std::unique_ptr<FrameStore> store_;
  std::unique_ptr<LabelerPool> labeler_;
  FailureLog storage_log_{"storing frames"};  // store failures, logged on change, then rate-limited

  // Lock order (the one place it is written down): reload_mu_ or regroup_mu_ (never both), then
  // admin_mu_, then ServerCore::mu_, then TrainingUnit::train_mu (Regroup alone holds several,
  // taken in the order of their keys), then publish_mu_, then devices_mu_, then Device::mu, then
  // units_mu_. Device::send_mu (server_core.cc) comes after admin_mu_ and train_mu and is taken
  // with none of the others held; Device::mu and a stream's own mutexes nest inside it, and an
  // update goes to a stream with send_mu held. Otherwise FrameStore, LabelerPool and the
  // streams' own mutexes are leaves taken with none of these held, and callbacks into a stream
  // (acks, End) run with no core lock held.
  std::mutex reload_mu_;              // one ReloadDevices at a time, held through it
  std::mutex regroup_mu_;             // one Regroup at a time, held through it; guards the next two
  double next_regroup_s_ = 0;         // steady clock: when RegroupWhenDue runs next
  int auto_groups_made_ = 0;          // names automatic groups: auto1, auto2, ...
  mutable std::mutex admin_mu_;  // one admin action at a time, held through it; guards admin_states_
  std::map<std::string, AdminState> admin_states_;  // by device id; devices never acted on are absent
  mutable std::mutex devices_mu_;     // guards the pointer devices_ (not what it points to)
  std::shared_ptr<const DeviceMap> devices_;
  std::mutex watch_mu_;               // pairs with watch_cv_, which BeginShutdown notifies
  std::condition_variable watch_cv_;
  std::thread watch_thread_;          // WatchDevicesFile, when a devices file is polled
  mutable std::mutex units_mu_;  // guards units_; a leaf but for FrameStore
  std::map<std::string, std::shared_ptr<TrainingUnit>> units_;  // by TrainingUnit::key
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
