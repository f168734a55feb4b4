// Which training unit trains next (server/training_pool.h calls it under its lock).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace sd {

// Sharing training time among devices. A device has work when it has >= min_new_frames new
// training frames, or >= 1 new frame and max_wait_s since its last round (since its first frame
// before its first round); a device without a new frame is never trained. Among devices with
// work and no round running, the policy picks:
//   round_robin  turns in first-seen order, continuing after the device served last (the
//                server before the training pool; kept for comparison runs);
//   benefit      the largest expected benefit (Ekya's idea, with signals the server has):
//                  new data      min(1, new_frames / (2 x min_new_frames))
//                  mAP deficit   1 - published held-out mAP50; 1 when unknown (no version
//                                scored yet: bootstrapping comes first)
//                  drift         how far the mean image score of the student on the edge has
//                                fallen: 4 x (long-run mean - recent mean), clamped to [0, 1]
//                  waiting       seconds since the last round ended / max_wait_s
//                summed with equal weights. The waiting term grows without bound, and a hard
//                bound backs it: a device passed over max_skips times while it had work is
//                served before anyone else (the most-skipped first, ties to the larger
//                benefit), so with K devices that have work none waits more than
//                max_skips + K - 1 rounds.
// Time is passed in, so tests and the server's workers drive it. Thread-safe.
enum class SchedulePolicy { kBenefit, kRoundRobin };
// `training.schedule`: "benefit" or "round_robin".
StatusOr<SchedulePolicy> ParseSchedulePolicy(const std::string& name);
const char* SchedulePolicyName(SchedulePolicy policy);

struct SchedulerOptions {
  int min_new_frames = 20;
  double max_wait_s = 30;
  SchedulePolicy policy = SchedulePolicy::kBenefit;
  int max_skips = 4;  // benefit: rounds a device with work may be passed over
  // max_skips >= 0; the message starts with the field's name (YamlReader::Check).
  Status Validate() const;
};

// What Next hands a worker.
struct ScheduledRound {
  std::string device;
  int new_frames = 0;      // since its last round
  int others_waiting = 0;  // other devices that had work, not running, when this one was picked
  // For the round's log line: why this device, and each device passed over with its new
  // frames, times skipped and benefit ("cam2 14f 3s 2.71").
  std::string why;
};

// The Adam steps of a round: the full `iterations` for a device with min_new_frames new frames
// or when no other device waits; fewer for a device due by time with a few frames only while
// others wait (not much new to learn, and the time goes to them), never under a quarter of
// `iterations`. A shortened round only helps the devices waiting: alone, a camera got 0.69
// instead of 0.78 held-out mAP50 in the main job from rounds cut to 30-48 steps.
int RoundIterations(int iterations, const ScheduledRound& round, const SchedulerOptions& options);

class RoundScheduler {
 public:
  explicit RoundScheduler(SchedulerOptions o);
  // A new training frame; `image_score` is the edge student's score of it (the drift signal).
  void OnNewFrame(const std::string& device, double now_s, double image_score = 0);
  // An operator's pause (docs/operations.md, "Admin actions"): a paused device is never handed
  // out, whatever its frames; its new frames still count for when it is resumed.
  void SetPaused(const std::string& device, bool paused, double now_s);
  // An operator's "train now": the device is handed out before any other, once, even below
  // its thresholds (the caller checks that it has frames at all). Not while paused.
  void RequestRound(const std::string& device, double now_s);
  // The next device to train, or nullopt; marks its round running (no second round of it is
  // handed out until RoundDone) and resets its new frames.
  std::optional<ScheduledRound> Next(double now_s);
  // The device's round ended (published, discarded or failed) at `now_s`; `published_map50`
  // is its trainer's held-out mAP50 after the round, -1 unknown. Its waiting counts from here:
  // a device whose long round just ended must not compete as if it had waited all along.
  void RoundDone(const std::string& device, double published_map50, double now_s);
  // Automatic grouping replaced units: each key of `sources` is a new unit, made of the units
  // its value lists; those are forgotten, and their new frames (and drift signal, mAP50) carry
  // over to every unit they became, so no frame waits longer for a regroup. A forgotten unit's
  // RoundDone is ignored.
  void Regrouped(const std::map<std::string, std::vector<std::string>>& sources, double now_s);
  // New frames of `device` since its last round (0 for an unknown device).
  int pending_frames(const std::string& device) const;
  // The benefit of training `device` now (0 for an unknown device), for logs and tests.
  double Benefit(const std::string& device, double now_s) const;

 private:
  struct DeviceState {
    std::string name;
    int new_frames = 0;
    double last_round_s = 0;  // when its last round ended, or its first frame before its first round
    bool running = false;
    bool paused = false;
    bool requested = false;     // RequestRound since its last round began
    int skipped = 0;            // times passed over since its last round while it had work
    double map50 = -1;          // published held-out mAP50, -1 unknown
    double recent_score = -1;   // fast and slow means of the image scores (-1: none yet)
    double longrun_score = -1;
  };
  // The device's state, made on first mention (its wait counting from `now_s`).
  DeviceState& Entry(const std::string& device, double now_s);
  bool HasWork(const DeviceState& d, double now_s) const;
  double BenefitOf(const DeviceState& d, double now_s) const;
  std::optional<size_t> PickRoundRobin(double now_s);
  std::optional<size_t> PickByBenefit(double now_s) const;

  const SchedulerOptions options_;
  mutable std::mutex mu_;
  // Guarded by mu_: devices in first-seen order, the index of each, and where the next round
  // robin search starts (one past the device served last).
  std::vector<DeviceState> devices_;
  std::map<std::string, size_t> index_;
  size_t cursor_ = 0;
};

}  // namespace sd
