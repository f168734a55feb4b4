// TrainingPool's automatic grouping (grouping.mode auto, CSBAD; docs/fleet.md): scores every
// unit's student on the newest held-out frames of every device that has
// grouping.min_heldout_frames, decides splits and merges (server/grouping.h), logs the transfer
// matrix and each change, and replaces the units that change. A unit in a round is waited for,
// never torn down, and a new unit starts from the newest version among the units it is made of.
#include <chrono>
#include <set>

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/base/clock.h"
#include "server/grouping.h"
#include "server/training_pool.h"

namespace sd {
namespace {

// The train locks of the units a regroup replaces, in the order given (their keys' order). A
// set of locks that the analysis cannot follow, so these two say what they do instead.
void LockAll(const std::vector<Mutex*>& mutexes) SD_NO_THREAD_SAFETY_ANALYSIS {
  for (Mutex* mu : mutexes) mu->Lock();
}
void UnlockAll(const std::vector<Mutex*>& mutexes) SD_NO_THREAD_SAFETY_ANALYSIS {
  for (auto it = mutexes.rbegin(); it != mutexes.rend(); ++it) (*it)->Unlock();
}

}  // namespace

Status TrainingPool::Regroup() {
  if (!config_.grouping.automatic) return Status::FailedPrecondition("grouping.mode is config: the groups are fixed");
  MutexLock lock(&regroup_mu_);
  return RegroupLocked();
}

void TrainingPool::RegroupWhenDue() {
  if (!regroup_mu_.TryLock()) return;  // another worker is at it
  if (SteadySeconds() >= next_regroup_s_ && !stopping_) {
    Status regrouped = RegroupLocked();
    // From the end of this one: an evaluation's own time does not count against the interval.
    next_regroup_s_ = SteadySeconds() + config_.grouping.every_s;
    if (!regrouped.ok() && !stopping_) spdlog::warn("grouping: not evaluated: {}", regrouped.ToString());
  }
  regroup_mu_.Unlock();
}

Status TrainingPool::RegroupLocked() {
  const GroupingOptions& options = config_.grouping;
  // The units now, as one snapshot: a regroup is the only thing that changes them, and it holds
  // regroup_mu_.
  std::map<std::string, std::shared_ptr<TrainingUnit>> current;  // by key
  std::map<std::string, TrainingUnit*> unit_of;                  // device -> its unit
  {
    MutexLock lock(&mu_);
    for (const auto& [device, unit] : unit_of_) {
      current[unit->key] = unit;
      unit_of[device] = unit.get();
    }
  }
  // Who takes part: the units all of whose members have enough held-out frames (a unit is
  // judged whole or not at all).
  std::map<std::string, std::vector<FrameRecord>> heldout;  // device -> its newest held-out frames
  for (const std::string& id : deps_.device_ids()) {
    if (!unit_of.count(id)) continue;
    SD_ASSIGN_OR_RETURN(auto records, deps_.store->Recent(id, true, options.heldout_frames));
    if (static_cast<int>(records.size()) < options.min_heldout_frames) continue;
    heldout[id] = std::move(records);
  }
  std::vector<std::shared_ptr<TrainingUnit>> taking_part;
  for (const auto& [key, unit] : current) {
    bool all = true;
    for (const std::string& member : unit->members) all = all && heldout.count(member) && unit_of[member] == unit.get();
    if (all) taking_part.push_back(unit);
  }
  if (taking_part.size() < 2 && (taking_part.empty() || taking_part.front()->members.size() < 2)) {
    spdlog::debug("grouping: nothing to decide ({} units with {} held-out frames per member)", taking_part.size(),
                  options.min_heldout_frames);
    return Status::Ok();
  }
  std::vector<UnitScores> scores(taking_part.size());
  for (size_t u = 0; u < taking_part.size(); ++u) {
    scores[u].members = taking_part[u]->members;
    scores[u].comparable = taking_part[u]->trainer->version() >= taking_part[u]->comparable_from;
  }
  // Every student on one device's frames at a time, so that the decoded frames held at once are
  // one device's however many there are. Through the rounds' cache: a device's newest held-out
  // frames are mostly its unit's recent window.
  for (const auto& other : taking_part)
    for (const std::string& device : other->members) {
      SD_ASSIGN_OR_RETURN(auto frames, decoded_frames_.Load(*deps_.store, heldout.at(device), config_.student, 1.0f));
      for (size_t u = 0; u < taking_part.size(); ++u) {
        SD_ASSIGN_OR_RETURN(EvalResult result, taking_part[u]->trainer->EvaluatePublished(frames));
        scores[u].map50[device] = result.map50;
      }
    }
  const GroupingDecision decision = DecideGroups(scores, options.margin);
  spdlog::info("grouping: transfer matrix (a unit's student: mAP50 on each device's newest {} held-out frames): {}",
               options.heldout_frames, TransferMatrix(scores));
  for (const std::string& reason : decision.reasons) spdlog::info("grouping: {}", reason);

  // The decided units that differ from the current ones, and the current units they replace.
  std::vector<const std::vector<std::string>*> changed;
  std::map<std::string, std::shared_ptr<TrainingUnit>> replaced;  // by key: the order their locks are taken in
  std::map<const std::vector<std::string>*, std::string> seed_of;  // changed group -> its seed ("" none)
  for (size_t g = 0; g < decision.groups.size(); ++g) {
    const std::vector<std::string>& group = decision.groups[g];
    TrainingUnit* first = unit_of.at(group.front());
    bool same = group.size() == first->members.size();
    for (const std::string& member : group) same = same && unit_of.at(member) == first;
    if (same) continue;
    changed.push_back(&group);
    seed_of[&group] = decision.seeds[g];
    for (const std::string& member : group) replaced[unit_of.at(member)->key] = current.at(unit_of.at(member)->key);
  }
  if (changed.empty()) {
    spdlog::info("grouping: no change; units now: {}", UnitsNow());
    return Status::Ok();
  }
  // A unit in a round is waited for, not torn down: its round ends and publishes to its members
  // first. No unit's round can begin meanwhile. The locks are taken in the order of the keys.
  std::vector<Mutex*> training;
  for (auto& [key, unit] : replaced) training.push_back(&unit->train_mu);
  LockAll(training);
  Status swapped = [&]() -> Status {
    regroup_mu_.AssertHeld();  // run in place, within RegroupLocked
    if (stopping_) return Status::Aborted("shutting down");
    // Everything that can fail comes first, so that a failure changes nothing.
    std::vector<std::shared_ptr<TrainingUnit>> made;
    std::map<std::string, std::vector<std::string>> sources;  // new unit key -> the keys of the units it is made of
    std::vector<std::string> changes;
    for (const std::vector<std::string>* group : changed) {
      // The student of the unit that took the others (it serves them all), else the newest
      // version among the units it is made of; numbered after the newest of them, so that no
      // member's version goes down.
      std::set<TrainingUnit*> from_units;
      TrainingUnit* newest = nullptr;
      for (const std::string& member : *group) {
        TrainingUnit* unit = unit_of.at(member);
        from_units.insert(unit);
        if (!newest || unit->trainer->version() > newest->trainer->version()) newest = unit;
      }
      const std::string& seed = seed_of.at(group);
      TrainingUnit* from = seed.empty() ? newest : unit_of.at(seed);
      const bool split = group->size() == 1 && from->members.size() > 1;
      const std::string name = group->size() > 1 ? "auto" + std::to_string(++auto_groups_made_) : "";
      const uint64_t version = newest->trainer->version();
      SD_ASSIGN_OR_RETURN(auto unit, NewUnit(name, *group, from->trainer->weights(), version));
      unit->resumed_map50 = from->trainer->published_map50();
      unit->comparable_from = split ? version + 1 : std::max<uint64_t>(1, version);
      for (TrainingUnit* old : from_units) sources[unit->key].push_back(old->key);
      changes.push_back(fmt::format("{} ({}) from the student of {}, as version {}", unit->label,
                                    group->size() > 1 ? "members " + fmt::format("{}", fmt::join(*group, "+")) : "alone",
                                    from->label, version));
      made.push_back(std::move(unit));
    }
    for (auto& [key, unit] : replaced) unit->retired = true;
    for (;;) {
      // The pauses follow a device into its new unit (a unit is paused while any member is).
      // They are read with mu_ not held and applied only if no other reading began meanwhile
      // (as RefreshPaused does): an admin action between the two steps makes this read again.
      uint64_t reading = 0;
      {
        MutexLock lock(&mu_);
        reading = ++pause_readings_;
      }
      std::vector<bool> paused;  // of `made`, in order
      for (const auto& unit : made) paused.push_back(AnyMemberPaused(*unit));
      // One step for every reader: the devices' units, the units, the scheduler and the pauses.
      MutexLock lock(&mu_);
      if (pause_readings_ != reading) continue;
      for (const auto& unit : made)
        for (const std::string& member : unit->members) unit_of_[member] = unit;
      for (const auto& [key, unit] : replaced)
        if (auto it = units_.find(key); it != units_.end() && it->second == unit) units_.erase(it);
      for (const auto& unit : made) units_[unit->key] = unit;
      scheduler_.Regrouped(sources, SteadySeconds());
      for (size_t i = 0; i < made.size(); ++i) scheduler_.SetPaused(made[i]->key, paused[i], SteadySeconds());
      work_cv_.SignalAll();
      break;
    }
    if (stopping_)  // BeginShutdown may have cancelled the units before these replaced them
      for (const auto& unit : made) unit->trainer->Cancel();
    for (const std::string& change : changes) spdlog::info("grouping: now {}", change);
    return Status::Ok();
  }();
  UnlockAll(training);
  if (swapped.ok()) spdlog::info("grouping: units now: {}", UnitsNow());
  return swapped;
}

std::string TrainingPool::UnitsNow() const {
  // The devices of the current set (a device whose enrolment failed after it joined is not).
  const std::vector<std::string> ids = deps_.device_ids();
  std::map<std::string, std::vector<std::string>> members;  // group name ("" for none) -> devices
  std::string text;
  MutexLock lock(&mu_);
  for (const std::string& id : ids) {
    auto it = unit_of_.find(id);
    if (it == unit_of_.end()) continue;
    if (it->second->group.empty()) {
      text += (text.empty() ? "" : " ") + id;
    } else {
      members[it->second->group].push_back(id);
    }
  }
  for (const auto& [group, ids] : members) text += fmt::format("{}{}={}", text.empty() ? "" : " ", group, fmt::join(ids, "+"));
  return text;
}

}  // namespace sd
