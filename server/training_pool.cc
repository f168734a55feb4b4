#include "server/training_pool.h"

#include <algorithm>
#include <chrono>

#include <malloc.h>

#include <spdlog/spdlog.h>

#include "common/base/clock.h"
#include "common/base/log_safe.h"
#include "common/link/update_codec.h"
#include "server/update_encoder.h"

namespace sd {
TrainingPool::TrainingPool(Deps deps, std::vector<size_t> tensor_sizes)
    : deps_(std::move(deps)),
      config_(*deps_.config),
      tensor_sizes_(std::move(tensor_sizes)),
      decoded_frames_(config_.decoded_cache_mb << 20),
      scheduler_(config_.schedule) {
  MutexLock lock(&regroup_mu_);
  next_regroup_s_ = SteadySeconds() + config_.grouping.every_s;
}

TrainingPool::~TrainingPool() { JoinWorkers(); }

void TrainingPool::JoinWorkers() {
  BeginShutdown();
  for (std::thread& worker : workers_)
    if (worker.joinable()) worker.join();
  if (queue_watcher_.joinable()) queue_watcher_.join();
}

void TrainingPool::StartWorkers() {
  if (!config_.train_in_background) return;
  for (int i = 0; i < config_.training_workers; ++i) workers_.emplace_back([this] { TrainingLoop(); });
  if (deps_.round_queue) queue_watcher_ = std::thread([this] { WatchRoundQueue(); });
}

void TrainingPool::BeginShutdown() {
  stopping_ = true;
  MutexLock lock(&mu_);
  for (const auto& [key, unit] : units_) unit->trainer->Cancel();
  for (TrainingUnit* unit : claimed_units_) unit->trainer->Cancel();
  work_cv_.SignalAll();
  queue_cv_.SignalAll();
}

StatusOr<std::shared_ptr<TrainingUnit>> TrainingPool::Join(const std::string& device_id) {
  const std::string group = GroupOf(config_, device_id);
  const std::string key = group.empty() ? device_id : kGroupKeyPrefix + group;
  {
    MutexLock lock(&mu_);
    if (auto it = units_.find(key); it != units_.end()) {
      unit_of_[device_id] = it->second;
      return it->second;
    }
  }
  // Made outside the lock (a checkpoint is read, a student built); devices join from the one
  // thread that makes or reloads the registry, so no second caller makes the same unit.
  const std::vector<std::string> members = group.empty() ? std::vector<std::string>{device_id} : config_.groups.at(group);
  SD_ASSIGN_OR_RETURN(const StartingPoint start, StartingPointOf(members));
  const std::string& weights = start.weights;
  const uint64_t version = start.version;
  SD_ASSIGN_OR_RETURN(auto unit, NewUnit(group, members, weights, version));
  unit->resumed_map50 = start.map50;
  unit->comparable_from = std::max<uint64_t>(1, version);  // a stored version is the device's own
  if (!group.empty())
    spdlog::info("group {}: {} devices share one student, from version {}", group, unit->members.size(),
                 unit->trainer->version());
  MutexLock lock(&mu_);
  units_[key] = unit;
  unit_of_[device_id] = unit;
  return unit;
}

StatusOr<TrainingPool::StartingPoint> TrainingPool::StartingPointOf(const std::vector<std::string>& members) const {
  // A group starts from its member with the newest stored version, so that no member's
  // version number ever goes down.
  std::optional<VersionRecord> newest;
  for (const std::string& member : members) {
    auto latest = deps_.store->LatestVersion(member);
    if (latest.ok() && (!newest || latest->version > newest->version)) newest = *latest;
  }
  StartingPoint start;
  if (newest) {
    SD_ASSIGN_OR_RETURN(start.weights, deps_.store->LoadCheckpoint(*newest));
    start.version = newest->version;
    start.map50 = newest->val_map50;
  } else if (!config_.init_weights.empty()) {
    SD_ASSIGN_OR_RETURN(auto model, StudentModel::LoadFromFile(config_.init_weights));
    start.weights = model->SerializeWeights();
  } else {
    SD_ASSIGN_OR_RETURN(auto model, StudentModel::Create(config_.student, config_.model_seed));
    start.weights = model->SerializeWeights();
  }
  return start;
}

StatusOr<std::shared_ptr<TrainingUnit>> TrainingPool::NewUnit(const std::string& group,
                                                              std::vector<std::string> members,
                                                              const std::string& weights, uint64_t version) const {
  auto unit = std::make_shared<TrainingUnit>();
  const std::string name = group.empty() ? members.front() : group;
  unit->key = group.empty() ? name : kGroupKeyPrefix + group;
  unit->group = group;
  unit->label = (group.empty() ? "device " : "group ") + name;
  unit->members = std::move(members);
  const UpdatePolicy& policy = UpdatesFor(config_, unit->members.front());
  RoundOptions round = config_.round;
  round.sparse_fraction = RoundSparseFraction(policy);
  SD_ASSIGN_OR_RETURN(unit->trainer, DeviceTrainer::Create(name, config_.student, weights, version, round,
                                                           MakeUpdateEncoder(policy, tensor_sizes_)));
  return unit;
}

std::shared_ptr<TrainingUnit> TrainingPool::UnitOf(const std::string& device_id) const {
  MutexLock lock(&mu_);
  auto it = unit_of_.find(device_id);
  return it == unit_of_.end() ? nullptr : it->second;
}

void TrainingPool::OnNewFrame(const std::string& device_id, double image_score) {
  MutexLock lock(&mu_);
  auto it = unit_of_.find(device_id);
  if (it == unit_of_.end()) return;
  scheduler_.OnNewFrame(it->second->key, SteadySeconds(), image_score);
  work_cv_.SignalAll();
}

double TrainingPool::Benefit(const std::string& device_id) const {
  MutexLock lock(&mu_);
  auto it = unit_of_.find(device_id);
  return it == unit_of_.end() ? 0 : scheduler_.Benefit(it->second->key, SteadySeconds());
}

bool TrainingPool::AnyMemberPaused(const TrainingUnit& unit) const {
  for (const std::string& member : unit.members)  // members never change: no lock needed
    if (deps_.admin->Get(member).paused) return true;
  return false;
}

void TrainingPool::RefreshPaused(const std::string& device_id) {
  // The admin store is read with mu_ not held, between two steps under it: the device's unit
  // is taken with a reading number, and the pause applies only if no other reading (another
  // refresh, or a regroup's) began meanwhile; otherwise it is read again. So the reading
  // applied last began last and saw the newest state, and a regroup that moved the device
  // between the steps made this one start over with the new unit.
  for (;;) {
    std::shared_ptr<TrainingUnit> unit;
    uint64_t reading = 0;
    {
      MutexLock lock(&mu_);
      auto it = unit_of_.find(device_id);
      if (it == unit_of_.end()) return;
      unit = it->second;
      reading = ++pause_readings_;
    }
    // With replicas, a group's round is queued by every replica serving a member (the queue
    // keeps one) and stored for all members by whichever replica runs it.
    const bool paused = AnyMemberPaused(*unit) || !ServesAnyMember(*unit);
    const bool device_paused = paused && !unit->group.empty() && deps_.admin->Get(device_id).paused;
    MutexLock lock(&mu_);
    if (pause_readings_ != reading) continue;
    scheduler_.SetPaused(unit->key, paused, SteadySeconds());
    if (device_paused) spdlog::debug("{}: paused while {} is", unit->label, LogSafe(device_id));
    work_cv_.SignalAll();
    return;
  }
}

bool TrainingPool::ServesAnyMember(const TrainingUnit& unit) const {
  if (!deps_.served_here) return true;
  for (const std::string& member : unit.members)
    if (deps_.served_here(member)) return true;
  return false;
}

std::shared_ptr<TrainingUnit> TrainingPool::UnitByKey(const std::string& key) const {
  MutexLock lock(&mu_);
  auto it = units_.find(key);
  return it == units_.end() ? nullptr : it->second;
}

std::string TrainingPool::GroupOfKey(const std::string& key) {
  return key.rfind(kGroupKeyPrefix, 0) == 0 ? key.substr(kGroupKeyPrefix.size()) : std::string();
}

StatusOr<std::vector<std::string>> TrainingPool::MembersOfKey(const std::string& key) const {
  const std::string group = GroupOfKey(key);
  if (group.empty()) return std::vector<std::string>{key};
  auto it = config_.groups.find(group);
  if (it == config_.groups.end())
    return Status::FailedPrecondition(UnitLabel(key) + " is not in this replica's groups (server.yaml differs?)");
  return it->second;
}

std::string TrainingPool::UnitLabel(const std::string& key) {
  const std::string group = GroupOfKey(key);
  return group.empty() ? "device " + key : "group " + group;
}

bool TrainingPool::ServedHere(const TrainingUnit& unit) const {
  if (!deps_.served_here) return true;
  for (const std::string& member : unit.members)
    if (!deps_.served_here(member)) return false;
  return true;
}

StatusOr<bool> TrainingPool::CatchUp(const std::string& device_id) {
  std::shared_ptr<TrainingUnit> unit = UnitOf(device_id);
  if (!unit) return false;
  // A group's newest version is its newest member's: all got it, or a member's alone from
  // before it joined.
  std::optional<VersionRecord> newest;
  for (const std::string& member : unit->members) {
    auto latest = deps_.store->LatestVersion(member);
    if (!latest.ok() && latest.status().code() == Status::Code::kNotFound) continue;
    SD_RETURN_IF_ERROR(latest.status());
    if (!newest || latest->version > newest->version) newest = *latest;
  }
  if (!newest || newest->version <= unit->trainer->version()) return false;
  SD_ASSIGN_OR_RETURN(std::string weights, deps_.store->LoadCheckpoint(*newest));
  SD_ASSIGN_OR_RETURN(std::shared_ptr<TrainingUnit> fresh, NewUnit(unit->group, unit->members, weights, newest->version));
  fresh->resumed_map50 = newest->val_map50;
  fresh->comparable_from = newest->version;
  MutexLock training(&unit->train_mu);  // a round of the old unit ends first; its result is fenced off
  MutexLock lock(&mu_);
  // Another member's call (a group) may have caught the unit up while this one loaded.
  if (auto it = units_.find(unit->key); it == units_.end() || it->second != unit) return true;
  unit->retired = true;
  units_[fresh->key] = fresh;
  for (auto& [id, its_unit] : unit_of_)
    if (its_unit == unit) its_unit = fresh;
  spdlog::info("{}: continues from version {} (stored by another replica)", fresh->label, newest->version);
  return true;
}

Status TrainingPool::RequestRound(const std::string& device_id) {
  std::shared_ptr<TrainingUnit> unit = UnitOf(device_id);
  if (!unit) return Status::NotFound("unknown device '" + LogSafe(device_id) + "'");
  int64_t frames = -1;
  for (;;) {
    // Pauses and frames are read with no lock held: the store is slow.
    if (AnyMemberPaused(*unit)) return Status::FailedPrecondition(unit->label + " is paused; resume it first");
    if (frames < 0) {
      frames = 0;
      for (const std::string& member : unit->members) frames += deps_.store->Count(member, false);
      if (frames == 0) return Status::FailedPrecondition(unit->label + " has no training frames yet");
    }
    MutexLock lock(&mu_);
    // A regroup may have moved the device meanwhile: the request goes to its unit now, which
    // holds the frames counted above, unless that unit is paused (checked on the next turn).
    const std::shared_ptr<TrainingUnit>& now = unit_of_.at(device_id);
    if (now == unit) {
      scheduler_.RequestRound(now->key, SteadySeconds());
      work_cv_.SignalAll();
      return Status::Ok();
    }
    unit = now;
  }
}

StatusOr<std::optional<RoundResult>> TrainingPool::RunScheduledRound() {
  std::optional<ScheduledRound> next;
  std::shared_ptr<TrainingUnit> unit;
  {
    MutexLock lock(&mu_);
    next = scheduler_.Next(SteadySeconds());
    if (!next) return std::optional<RoundResult>();
    // Another unit may be due as well: an idle worker looks now, not at its next timeout.
    work_cv_.Signal();
    if (auto it = units_.find(next->device); it != units_.end()) unit = it->second;  // the scheduler knows only keys
  }
  StatusOr<RoundResult> round = Status::Aborted(next->device + ": regrouped before its round began");
  if (unit) {
    spdlog::info("{}: round starts ({})", unit->label, next->why);
    round = RunUnitRound(*unit, RoundIterations(config_.round.iterations, *next, config_.schedule));
  }
  {
    MutexLock lock(&mu_);
    scheduler_.RoundDone(next->device, unit ? unit->trainer->published_map50() : -1, SteadySeconds());
    work_cv_.SignalAll();  // the unit may have work again, for another worker
  }
  if (config_.grouping.automatic) RegroupWhenDue();
  // A unit regrouped between the pick and the round: its frames went to the unit that replaced
  // it, so there was nothing to do.
  if (!round.ok() && (!unit || unit->retired)) return std::optional<RoundResult>();
  if (!round.ok()) return round.status().WithContext(unit->label + ": round");
  return std::optional<RoundResult>(*std::move(round));
}

StatusOr<RoundResult> TrainingPool::RunRound(const std::string& device_id, int iterations) {
  for (;;) {  // again with the device's new unit when a regroup replaced the one it had
    std::shared_ptr<TrainingUnit> unit = UnitOf(device_id);
    if (!unit) return Status::NotFound("unknown device '" + LogSafe(device_id) + "'");
    StatusOr<RoundResult> round = RunUnitRound(*unit, iterations);
    if (round.ok() || !unit->retired) return round;
  }
}

StatusOr<RoundResult> TrainingPool::RunUnitRound(TrainingUnit& unit, int iterations) {
  MutexLock train_lock(&unit.train_mu);
  if (unit.retired) return Status::Aborted(unit.label + ": regrouped before its round began");
  // The members enrolled now; a group member not enrolled yet has no frames either.
  std::vector<Device*> members;
  std::vector<std::string> member_ids;
  for (const std::string& id : unit.members)
    if (auto device = deps_.find_device(id); device.ok()) {
      members.push_back(*device);
      member_ids.push_back(id);
    }
  for (Device* device : members) {
    MutexLock lock(&device->mu);
    device->counters.round_start_s = SteadySeconds();
  }
  // Whatever way the round ends.
  struct MarkEnd {
    const std::vector<Device*>& members;
    ~MarkEnd() {
      for (Device* device : members) {
        MutexLock lock(&device->mu);
        device->counters.round_end_s = SteadySeconds();
      }
    }
  } mark_end{members};
  SD_ASSIGN_OR_RETURN(RoundRecords records,
                      SelectRoundRecords(HistoryOf(*deps_.store), member_ids, RoundWindowsOf(config_)));
  if (records.train.empty()) return Status::FailedPrecondition(unit.label + " has no training frames");
  SD_ASSIGN_OR_RETURN(RoundInputs inputs, LoadRoundInputs(*deps_.store, unit.members, records, config_.student,
                                                          config_.round.trainer.max_scale, &decoded_frames_));
  SD_ASSIGN_OR_RETURN(RoundResult round,
                      unit.trainer->RunRound(inputs.train, inputs.validation, iterations, inputs.memory));
  RecentRound recent{WallMillis(), round};
  recent.result.update = {};  // the payload can be megabytes; the dashboard lists the outcome
  for (Device* device : members) {
    MutexLock lock(&device->mu);
    ++device->counters.rounds;
    device->rounds.push_back(recent);
    if (device->rounds.size() > Device::kRecentRounds) device->rounds.pop_front();
  }
  LogRound(unit, round, "");
  RecordRoundMetrics(member_ids, round);
  if (!round.published) return round;
  SD_RETURN_IF_ERROR(deps_.publisher->PublishRound(members, *unit.trainer, round));
  return round;
}

void TrainingPool::LogRound(const TrainingUnit& unit, const RoundResult& round, const std::string& for_whom) const {
  spdlog::info("{}: round of {} steps on {} + {} long-term frames ({} + {} validation) in {:.1f}s{}: mAP50 {:.3f} -> "
               "{:.3f}, {}: {}",
               unit.label, round.iterations, round.train_frames, round.memory_frames, round.val_frames,
               round.longterm_val_frames, round.seconds, for_whom, round.map50_before, round.map50_after,
               round.published ? "published v" + std::to_string(round.version) : "discarded", round.reason);
}

void TrainingPool::RecordRoundMetrics(const std::vector<std::string>& members, const RoundResult& round) const {
  ServerMetrics& metrics = *deps_.metrics;
  metrics.round_seconds.Observe(round.seconds);
  const double heldout_map50 = round.published ? round.map50_after : round.map50_before;
  const double longterm_map50 = round.published ? round.longterm_map50_after : round.longterm_map50_before;
  for (const std::string& id : members) {
    if (heldout_map50 >= 0) metrics.heldout_map50.With({id}).Set(heldout_map50);
    if (longterm_map50 >= 0) metrics.longterm_map50.With({id}).Set(longterm_map50);
    metrics.rounds.With({id, round.published ? "published" : "discarded"}).Inc();
  }
}

StatusOr<std::optional<RoundResult>> TrainingPool::RunClaimedRound() {
  PgRoundQueue& queue = *deps_.round_queue;
  SD_ASSIGN_OR_RETURN(std::optional<RoundClaim> claim, queue.Claim());
  if (!claim) return std::optional<RoundResult>();
  std::string whose = claim->requested_by == queue.replica() ? "its own" : "queued by replica " + claim->requested_by;
  if (!claim->previous.empty())
    whose += ", claimed again after replica " + claim->previous + "'s claim expired";
  const std::string label = UnitLabel(claim->unit);
  spdlog::info("{}: round claimed ({}; attempt {}; queued {:.1f}s ago; {})", label, whose, claim->attempts,
               claim->waited_s, claim->why);
  deps_.metrics->rounds_claimed.With({claim->requested_by == queue.replica() ? "own" : "other"}).Inc();
  deps_.metrics->round_queue_wait_seconds.Observe(claim->waited_s);
  // The serving replica runs its own unit's round on its warm student and sends the version
  // itself; any other runs it from the newest stored version and stores it for the server.
  std::shared_ptr<TrainingUnit> unit = UnitByKey(claim->unit);
  const bool here = unit && ServedHere(*unit);
  StatusOr<RoundResult> round = here ? RunUnitRound(*unit, claim->iterations) : RunRoundForClaim(*claim);
  if (!round.ok() && stopping_) {
    queue.Release(*claim);  // another replica claims it at once rather than after the ttl
  } else if (here || !round.ok() || !round->published) {
    // Published away from home, the version's transaction ended the claim already.
    Status finished = queue.Finish(*claim);
    if (!finished.ok()) spdlog::warn("{}: {}", label, finished.ToString());
  }
  if (!round.ok()) return round.status().WithContext(label + ": claimed round");
  return std::optional<RoundResult>(*std::move(round));
}

StatusOr<RoundResult> TrainingPool::RunRoundForClaim(const RoundClaim& claim) {
  SD_ASSIGN_OR_RETURN(const std::vector<std::string> members, MembersOfKey(claim.unit));
  const std::string group = GroupOfKey(claim.unit);
  for (const std::string& member : members)
    if (deps_.admin->Get(member).paused)
      return Status::FailedPrecondition("device " + member + " was paused after the round was queued");
  SD_ASSIGN_OR_RETURN(const StartingPoint start, StartingPointOf(members));
  SD_ASSIGN_OR_RETURN(std::shared_ptr<TrainingUnit> unit, NewUnit(group, members, start.weights, start.version));
  // Cancelled with the others at a shutdown (BeginShutdown), which must not wait for it.
  struct Registered {
    TrainingPool* pool;
    TrainingUnit* unit;
    Registered(TrainingPool* p, TrainingUnit* u) : pool(p), unit(u) {
      MutexLock lock(&pool->mu_);
      pool->claimed_units_.insert(unit);
      if (pool->stopping_) unit->trainer->Cancel();
    }
    ~Registered() {
      MutexLock lock(&pool->mu_);
      pool->claimed_units_.erase(unit);
    }
  } registered(this, unit.get());
  SD_ASSIGN_OR_RETURN(RoundRecords records,
                      SelectRoundRecords(HistoryOf(*deps_.store), unit->members, RoundWindowsOf(config_)));
  if (records.train.empty()) return Status::FailedPrecondition(unit->label + " has no training frames");
  SD_ASSIGN_OR_RETURN(RoundInputs inputs, LoadRoundInputs(*deps_.store, unit->members, records, config_.student,
                                                          config_.round.trainer.max_scale, &decoded_frames_));
  SD_ASSIGN_OR_RETURN(RoundResult round,
                      unit->trainer->RunRound(inputs.train, inputs.validation, claim.iterations, inputs.memory));
  LogRound(*unit, round, " for replica " + claim.requested_by);
  RecordRoundMetrics(unit->members, round);
  if (!round.published) return round;
  // Stored for every member with the round's update, for the replicas serving them to send;
  // under the claim's fence, all in one transaction.
  const std::vector<float> flat = unit->trainer->flat_weights();
  const bool delta = !round.update.payload.empty() && !IsFullEncoding(round.update.encoding);
  std::vector<PgFrameStore::VersionWithUpdate> versions;
  for (const std::string& member : unit->members) {
    if (!deps_.find_device(member).ok()) continue;  // a member not enrolled (yet), as PublishRound skips it
    SD_ASSIGN_OR_RETURN(auto full, deps_.publisher->EncodeFull(member, round.version, flat));
    PgFrameStore::VersionWithUpdate v;
    v.record.device_id = member;
    v.record.version = round.version;
    v.record.base_version = delta ? round.version - 1 : 0;
    v.record.encoding = UpdateEncodingName(round.update.payload.empty() ? full->encoding : round.update.encoding);
    v.record.weights_checksum = full->weights_checksum;
    v.record.val_map50 = round.map50_after;
    v.record.created_ms = WallMillis();
    v.update_payload = round.update.payload.empty() ? full->payload : round.update.payload;
    versions.push_back(std::move(v));
  }
  if (versions.empty()) return Status::FailedPrecondition(unit->label + ": no member is enrolled");
  PgRoundQueue& queue = *deps_.round_queue;
  SD_RETURN_IF_ERROR(deps_.claimed_versions->PutClaimedVersions(
      versions, unit->trainer->weights(), [&](pqxx::dbtransaction& tx) { return queue.FenceAndFinish(tx, claim); }));
  return round;
}

void TrainingPool::WatchRoundQueue() {
  while (!stopping_) {
    QueueDueRounds();
    CollectEndedRounds();
    {
      MutexLock lock(&mu_);
      if (!stopping_) queue_cv_.WaitFor(std::chrono::milliseconds(500));
    }
  }
}

void TrainingPool::QueueDueRounds() {
  for (;;) {
    std::optional<ScheduledRound> next;
    std::shared_ptr<TrainingUnit> unit;
    {
      MutexLock lock(&mu_);
      next = scheduler_.Next(SteadySeconds());
      if (!next) return;
      if (auto it = units_.find(next->device); it != units_.end()) unit = it->second;
    }
    Status queued = unit ? deps_.round_queue->Request(
                               next->device, RoundIterations(config_.round.iterations, *next, config_.schedule), next->why)
                         : Status::Aborted(next->device + ": regrouped before its round was queued");
    MutexLock lock(&mu_);
    if (queued.ok()) {
      queued_rounds_.insert(next->device);
      spdlog::info("{}: round queued for any replica ({})", unit->label, next->why);
      queue_cv_.SignalAll();  // this replica's idle workers claim it now, not at their next poll
    } else {
      if (unit) spdlog::warn("{}: {}", unit->label, queued.ToString());
      scheduler_.RoundDone(next->device, unit ? unit->trainer->published_map50() : -1, SteadySeconds());
    }
  }
}

void TrainingPool::CollectEndedRounds() {
  std::vector<std::string> queued;
  {
    MutexLock lock(&mu_);
    queued.assign(queued_rounds_.begin(), queued_rounds_.end());
  }
  auto still = deps_.round_queue->Queued(queued);
  if (!still.ok()) {
    spdlog::warn("round queue: {}", still.status().ToString());
    return;
  }
  std::set<std::string> ended;
  for (const std::string& key : queued)
    if (!still->count(key)) ended.insert(key);
  // A version may be newer than this replica's student because a round queued here ended on
  // another replica, or one queued by the device's previous server did.
  std::vector<std::string> served;
  for (const std::string& id : deps_.device_ids())
    if (deps_.served_here(id)) served.push_back(id);
  auto newest = deps_.round_queue->NewestVersions(served);
  if (!newest.ok()) {
    spdlog::warn("round queue: {}", newest.status().ToString());
    return;
  }
  for (const auto& [device_id, version] : *newest) {
    std::shared_ptr<TrainingUnit> unit = UnitOf(device_id);
    if (unit && version > unit->trainer->version() && deps_.stored_elsewhere) deps_.stored_elsewhere(device_id);
  }
  MutexLock lock(&mu_);
  for (const std::string& key : ended) {
    queued_rounds_.erase(key);
    auto it = units_.find(key);
    scheduler_.RoundDone(key, it == units_.end() ? -1 : it->second->trainer->published_map50(), SteadySeconds());
  }
  if (!ended.empty()) queue_cv_.SignalAll();  // the units may have work again: queue it now
}

void TrainingPool::TrainingLoop() {
  SetTorchThreads(config_.threads_per_worker);  // this thread's OpenMP team (docs/operations.md)
  while (!stopping_) {
    auto round = deps_.round_queue ? RunClaimedRound() : RunScheduledRound();
    // A round's tensors take about 1 GB (round-bench's memory section) that glibc keeps after
    // they are freed, so an idle server held ~0.9 GB per worker it no longer used; trimming
    // after each round hands it back for a few milliseconds a round.
    if (round.ok() && round->has_value()) {
      malloc_trim(0);
      continue;
    }
    if (!round.ok() && !stopping_) spdlog::warn("training round failed: {}", round.status().ToString());
    MutexLock lock(&mu_);
    // With replicas, frames arriving here do not mean a round to claim: another replica's
    // queued rounds are polled once a second, this replica's own come with a signal.
    if (!stopping_) (deps_.round_queue ? queue_cv_ : work_cv_).WaitFor(std::chrono::seconds(1));
  }
}

}  // namespace sd
