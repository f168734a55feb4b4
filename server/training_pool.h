// The training side of the server: training units (a device alone, or the devices of a group
// sharing one student), which device trains in which unit, the round scheduler, the training
// workers and automatic regrouping (CSBAD). The pool is the only owner of the device-to-unit
// mapping: every reader goes through it, under its lock, so a regroup that moves a device is
// seen whole or not at all.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "server/admin_store.h"
#include "server/device.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"
#include "server/pg_frame_store.h"
#include "server/pg_round_queue.h"
#include "server/publisher.h"
#include "server/round_inputs.h"
#include "server/round_scheduler.h"
#include "server/server_config.h"
#include "server/server_metrics.h"

namespace sd {

// What trains as one: a device alone, or the devices of a group (one student for all). Its
// members never change: automatic grouping replaces a unit rather than changing it.
// A group's unit's key: this, then the group's name.
inline const std::string kGroupKeyPrefix = "group:";

struct TrainingUnit {
  std::string key;    // the scheduler's name for it: the device id, or "group:" + the group's
  std::string group;  // "" for a device alone
  std::string label;  // for logs: "device cam1" or "group lobby"
  std::vector<std::string> members;  // the devices whose frames it trains on and who get its versions
  // Automatic grouping: the student counts as the unit's own (and may merge with others) from
  // this version on; a split-off device's copy of its group's student does not.
  uint64_t comparable_from = 1;
  double resumed_map50 = -1;  // the held-out mAP50 stored with the version it resumed at
  // Set with train_mu held when automatic grouping replaced the unit: its rounds are refused.
  std::atomic<bool> retired{false};
  // Keeps two rounds of one unit from overlapping, and a regroup from replacing a unit in a round.
  Mutex train_mu;
  // Only a training worker (or a test driving rounds) trains it; its accessors are safe anytime.
  std::unique_ptr<DeviceTrainer> trainer;
};

class TrainingPool {
 public:
  struct Deps {
    const ServerConfig* config = nullptr;
    FrameStore* store = nullptr;
    Publisher* publisher = nullptr;
    const AdminStore* admin = nullptr;  // who is paused
    ServerMetrics* metrics = nullptr;
    // The devices of the current set (set once the registry exists).
    std::function<StatusOr<Device*>(const std::string& device_id)> find_device;
    std::function<std::vector<std::string>()> device_ids;
    // Replicas (storage.backend postgres): whether this replica serves the device now (holds
    // its lease). A unit trains only on the replica that serves it. Null: every device.
    std::function<bool(const std::string& device_id)> served_here;
    // Replicas: rounds go through the cluster's queue (server/pg_round_queue.h). The
    // scheduler's picks are queued rather than run, and the workers run any replica's queued
    // rounds; those of devices served elsewhere are stored in `claimed_versions` with their
    // update. `stored_elsewhere` is told of a device served here whose newest stored version
    // is newer than its student (trained on another replica): the server catches up and
    // sends it. Null: the scheduler's picks run here.
    PgRoundQueue* round_queue = nullptr;
    PgFrameStore* claimed_versions = nullptr;
    std::function<void(const std::string& device_id)> stored_elsewhere;
  };
  // `tensor_sizes`: the student's tensors, for per-tensor update encodings.
  TrainingPool(Deps deps, std::vector<size_t> tensor_sizes);
  ~TrainingPool();  // stops and joins the workers

  // Starts config.training_workers workers when config.train_in_background (and, with
  // replicas, the thread that queues this replica's rounds and collects their ends).
  void StartWorkers();
  // Stops training for good: running rounds are cancelled, no worker starts another.
  void BeginShutdown() SD_EXCLUDES(mu_);
  // BeginShutdown, then waits for the workers to end.
  void JoinWorkers() SD_EXCLUDES(mu_);

  // The device's training unit, made on its first call: its group's (from the newest version
  // any member has stored) or its own (from its newest version, the initial weights or fresh
  // ones). The device is a member from then on.
  StatusOr<std::shared_ptr<TrainingUnit>> Join(const std::string& device_id) SD_EXCLUDES(mu_);
  // The device's current unit; null for a device that has not joined.
  std::shared_ptr<TrainingUnit> UnitOf(const std::string& device_id) const SD_EXCLUDES(mu_);

  // A new training frame of the device (`image_score`: the edge student's, the drift signal).
  void OnNewFrame(const std::string& device_id, double image_score) SD_EXCLUDES(mu_);
  // The scheduler's expected benefit of training the device's unit now (RoundScheduler::
  // Benefit); 0 for a device that has not joined. The labelling budget shares by it.
  double Benefit(const std::string& device_id) const SD_EXCLUDES(mu_);
  // Applies the admin store's pauses to the device's unit: paused while any member is (and,
  // with replicas, while this replica does not serve it).
  void RefreshPaused(const std::string& device_id) SD_EXCLUDES(mu_);
  // Replicas: when the store holds a newer version of the device's unit (trained by another
  // replica; a group's: of any member), the unit starts again from that version; true when it
  // did. A round of the old unit still running is waited out.
  StatusOr<bool> CatchUp(const std::string& device_id) SD_EXCLUDES(mu_);
  // The device's unit runs a round next, below its thresholds. FailedPrecondition when it is
  // paused or has no training frames.
  Status RequestRound(const std::string& device_id) SD_EXCLUDES(mu_);

  // One training round for the unit the scheduler picks; nullopt when none has work.
  StatusOr<std::optional<RoundResult>> RunScheduledRound() SD_EXCLUDES(mu_, regroup_mu_);
  // A round of `iterations` steps (0: the configured) of the device's unit, whatever the
  // scheduler says; a second caller for the same unit waits for the first.
  StatusOr<RoundResult> RunRound(const std::string& device_id, int iterations) SD_EXCLUDES(mu_);
  // Automatic grouping (ServerCore::Regroup). FailedPrecondition in mode config.
  Status Regroup() SD_EXCLUDES(regroup_mu_);

  // Every unit's decoded frames, within training.decoded_cache_mb; for /metrics.
  const DecodedFrameCache& decoded_frames() const { return decoded_frames_; }

 private:
  // A unit of `members` (`group` "": one device alone) whose student starts from `weights` as
  // `version`.
  StatusOr<std::shared_ptr<TrainingUnit>> NewUnit(const std::string& group, std::vector<std::string> members,
                                                  const std::string& weights, uint64_t version) const;
  StatusOr<RoundResult> RunUnitRound(TrainingUnit& unit, int iterations) SD_EXCLUDES(mu_);
  // Where a unit of `members` starts: the newest version any member stored, else the initial
  // weights (training.init_weights) or fresh ones.
  struct StartingPoint {
    std::string weights;
    uint64_t version = 0;
    double map50 = -1;  // stored with that version; -1 unknown
  };
  StatusOr<StartingPoint> StartingPointOf(const std::vector<std::string>& members) const;
  void LogRound(const TrainingUnit& unit, const RoundResult& round, const std::string& for_whom) const;
  void RecordRoundMetrics(const std::vector<std::string>& members, const RoundResult& round) const;
  // Replicas: one round claimed from the queue, nullopt when none waits. The serving
  // replica's own unit trains on its warm student and publishes as usual; another replica's
  // runs in RunRoundForClaim. The request ends with the round, or goes back to the queue at
  // a shutdown.
  StatusOr<std::optional<RoundResult>> RunClaimedRound() SD_EXCLUDES(mu_);
  // A round of a unit served elsewhere (a group's: wholly or partly): a student from its newest
  // stored version, its frames from the shared store; a published version is stored for every
  // member under the claim's fence.
  StatusOr<RoundResult> RunRoundForClaim(const RoundClaim& claim) SD_EXCLUDES(mu_);
  // Replicas, every 0.5 s: QueueDueRounds, then CollectEndedRounds.
  void WatchRoundQueue() SD_EXCLUDES(mu_);
  // Queues every round the scheduler hands out.
  void QueueDueRounds() SD_EXCLUDES(mu_);
  // Ends the scheduler's rounds whose requests left the queue, and tells the server of
  // devices served here with a newer stored version than their student.
  void CollectEndedRounds() SD_EXCLUDES(mu_);
  // Regroup's work; RegroupWhenDue runs it on a worker once grouping.every_s has passed,
  // unless another worker is at it.
  Status RegroupLocked() SD_REQUIRES(regroup_mu_) SD_EXCLUDES(mu_);
  void RegroupWhenDue() SD_EXCLUDES(regroup_mu_);
  // Whether any member of `unit` is paused by an admin. Reads the admin store once per member,
  // so never under mu_ (RefreshPaused says how its result is applied).
  bool AnyMemberPaused(const TrainingUnit& unit) const SD_EXCLUDES(mu_);
  // Whether this replica serves every member of `unit` (always, without replicas). Reads only
  // this replica's lease table in memory: cheap, may be called under mu_.
  bool ServedHere(const TrainingUnit& unit) const;
  // Whether it serves any member (always, without replicas); as cheap.
  bool ServesAnyMember(const TrainingUnit& unit) const;
  // The unit of a scheduler key; null when there is none.
  std::shared_ptr<TrainingUnit> UnitByKey(const std::string& key) const SD_EXCLUDES(mu_);
  // The group a scheduler key names; "" for a device's key.
  static std::string GroupOfKey(const std::string& key);
  // The devices of a scheduler key: the device, or the group's members in server.yaml.
  StatusOr<std::vector<std::string>> MembersOfKey(const std::string& key) const;
  // "device cam1" or "group lobby", for logs.
  static std::string UnitLabel(const std::string& key);
  // Every current unit for the log: "auto1=cam1+cam2 cam3" (a device alone by its id).
  std::string UnitsNow() const SD_EXCLUDES(mu_);
  // One training worker: its own libtorch threads, then rounds until the shutdown.
  void TrainingLoop() SD_EXCLUDES(mu_);

  const Deps deps_;
  const ServerConfig& config_;
  const std::vector<size_t> tensor_sizes_;
  std::atomic<bool> stopping_{false};
  // Shared by every unit's rounds and the regroup's scoring. Its own mutex is the innermost
  // lock: taken under a unit's train_mu or regroup_mu_, and nothing is called while it is held.
  DecodedFrameCache decoded_frames_;

  // Lock order: regroup_mu_, then the units' train_mu (a regroup takes several, in the order
  // of their keys), then mu_. Publishing, the store, the admin store and the devices' own
  // mutexes are taken with mu_ not held.
  Mutex regroup_mu_ SD_ACQUIRED_BEFORE(mu_);  // one Regroup at a time, held through it
  double next_regroup_s_ SD_GUARDED_BY(regroup_mu_) = 0;  // steady clock: when RegroupWhenDue runs next
  int auto_groups_made_ SD_GUARDED_BY(regroup_mu_) = 0;   // names automatic groups: auto1, auto2, ...
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<TrainingUnit>> units_ SD_GUARDED_BY(mu_);  // by TrainingUnit::key
  std::map<std::string, std::shared_ptr<TrainingUnit>> unit_of_ SD_GUARDED_BY(mu_);  // by device id
  RoundScheduler scheduler_ SD_GUARDED_BY(mu_);
  // Counts the readings of the admin store's pauses that will be applied to the scheduler
  // (RefreshPaused, a regroup's new units): one applies only if none began after it.
  uint64_t pause_readings_ SD_GUARDED_BY(mu_) = 0;
  CondVar work_cv_{&mu_};  // a unit may have work, or the shutdown began
  // Replicas: a round was queued here or ended (the watcher and the workers wait on it, not on
  // every frame's work_cv_ signal, which would make each frame a claim query), or the shutdown.
  CondVar queue_cv_{&mu_};
  std::vector<std::thread> workers_;
  std::thread queue_watcher_;  // replicas: WatchRoundQueue
  std::set<std::string> queued_rounds_ SD_GUARDED_BY(mu_);  // units whose queued round has not ended
  std::set<TrainingUnit*> claimed_units_ SD_GUARDED_BY(mu_);  // RunRoundForClaim's, while their rounds run
};

}  // namespace sd
