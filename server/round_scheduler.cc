#include "server/round_scheduler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

namespace sd {
namespace {


// Weights of the newest image score in the two running means of the drift signal: the recent
// one follows the last few frames, the long-run one the last few dozen.
constexpr double kRecentScoreWeight = 0.3;
constexpr double kLongRunScoreWeight = 0.05;

double Mix(double mean, double value, double weight) { return mean < 0 ? value : mean + weight * (value - mean); }

}  // namespace

StatusOr<SchedulePolicy> ParseSchedulePolicy(const std::string& name) {
  if (name == "benefit") return SchedulePolicy::kBenefit;
  if (name == "round_robin") return SchedulePolicy::kRoundRobin;
  return Status::InvalidArgument("must be benefit or round_robin");
}

const char* SchedulePolicyName(SchedulePolicy policy) {
  return policy == SchedulePolicy::kRoundRobin ? "round_robin" : "benefit";
}

Status SchedulerOptions::Validate() const {
  if (max_skips < 0) return Status::InvalidArgument("max_skips: must be >= 0");
  return Status::Ok();
}

int RoundIterations(int iterations, const ScheduledRound& round, const SchedulerOptions& options) {
  const int floor = std::max(1, (iterations + 3) / 4);
  const int new_frames = round.new_frames;
  if (round.others_waiting == 0 || new_frames >= options.min_new_frames || options.min_new_frames <= 0)
    return iterations;
  const int scaled = static_cast<int>(std::ceil(static_cast<double>(iterations) * new_frames / options.min_new_frames));
  return std::clamp(scaled, floor, iterations);
}

RoundScheduler::RoundScheduler(SchedulerOptions o) : options_(o) {}

RoundScheduler::DeviceState& RoundScheduler::Entry(const std::string& device, double now_s) {
  auto it = index_.find(device);
  if (it == index_.end()) {
    it = index_.emplace(device, devices_.size()).first;
    // A device's wait for its first round counts from its first frame.
    DeviceState fresh;
    fresh.name = device;
    fresh.last_round_s = now_s;
    devices_.push_back(fresh);
  }
  return devices_[it->second];
}

void RoundScheduler::SetPaused(const std::string& device, bool paused, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceState& d = Entry(device, now_s);
  d.paused = paused;
  if (paused) d.requested = false;
}

void RoundScheduler::RequestRound(const std::string& device, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry(device, now_s).requested = true;
}

void RoundScheduler::OnNewFrame(const std::string& device, double now_s, double image_score) {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceState& d = Entry(device, now_s);
  ++d.new_frames;
  if (std::isfinite(image_score)) {
    d.recent_score = Mix(d.recent_score, image_score, kRecentScoreWeight);
    d.longrun_score = Mix(d.longrun_score, image_score, kLongRunScoreWeight);
  }
}

bool RoundScheduler::HasWork(const DeviceState& d, double now_s) const {
  return !d.running && !d.paused &&
         (d.requested || d.new_frames >= options_.min_new_frames ||
                        (d.new_frames >= 1 && now_s - d.last_round_s >= options_.max_wait_s));
}

double RoundScheduler::BenefitOf(const DeviceState& d, double now_s) const {
  const double data = std::min(1.0, d.new_frames / (2.0 * std::max(1, options_.min_new_frames)));
  const double deficit = d.map50 < 0 ? 1.0 : 1.0 - std::clamp(d.map50, 0.0, 1.0);
  const double drift = d.recent_score < 0 ? 0.0 : std::clamp(4 * (d.longrun_score - d.recent_score), 0.0, 1.0);
  const double waiting = std::max(0.0, now_s - d.last_round_s) / std::max(1e-3, options_.max_wait_s);
  return data + deficit + drift + waiting;
}

std::optional<size_t> RoundScheduler::PickRoundRobin(double now_s) {
  const size_t n = devices_.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (cursor_ + k) % n;
    if (!HasWork(devices_[i], now_s)) continue;
    cursor_ = (i + 1) % n;
    return i;
  }
  return std::nullopt;
}

std::optional<size_t> RoundScheduler::PickByBenefit(double now_s) const {
  std::optional<size_t> best, most_skipped;
  double best_benefit = 0, most_skipped_benefit = 0;
  for (size_t i = 0; i < devices_.size(); ++i) {
    const DeviceState& d = devices_[i];
    if (!HasWork(d, now_s)) continue;
    const double benefit = BenefitOf(d, now_s);
    // Among the devices passed over too often, the most passed over; of those the one that
    // gains most (a device never trained before one that was).
    if (d.skipped >= options_.max_skips &&
        (!most_skipped || d.skipped > devices_[*most_skipped].skipped ||
         (d.skipped == devices_[*most_skipped].skipped && benefit > most_skipped_benefit)))
      most_skipped = i, most_skipped_benefit = benefit;
    if (!best || benefit > best_benefit) best = i, best_benefit = benefit;
  }
  return most_skipped ? most_skipped : best;
}

std::optional<ScheduledRound> RoundScheduler::Next(double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  // An operator's request goes before the policy's pick.
  std::optional<size_t> chosen;
  for (size_t i = 0; i < devices_.size() && !chosen; ++i)
    if (devices_[i].requested && HasWork(devices_[i], now_s)) chosen = i;
  const bool requested = chosen.has_value();
  if (!chosen) chosen = options_.policy == SchedulePolicy::kRoundRobin ? PickRoundRobin(now_s) : PickByBenefit(now_s);
  if (!chosen) return std::nullopt;
  DeviceState& d = devices_[*chosen];
  ScheduledRound round{d.name, d.new_frames, 0, ""};
  char summary[160];
  std::snprintf(summary, sizeof summary, "%s, %d new frames, benefit %.2f, passed over %d times",
                requested                                   ? "requested by an admin"
                : options_.policy == SchedulePolicy::kRoundRobin ? "round robin"
                : d.skipped >= options_.max_skips           ? "passed over most"
                                                            : "largest benefit",
                d.new_frames, BenefitOf(d, now_s), d.skipped);
  round.why = summary;
  for (size_t i = 0; i < devices_.size(); ++i) {
    DeviceState& other = devices_[i];
    if (i == *chosen || !HasWork(other, now_s)) continue;
    ++round.others_waiting;
    std::snprintf(summary, sizeof summary, "%s %s %df %ds %.2f", round.others_waiting == 1 ? "; waiting:" : ",",
                  other.name.c_str(), other.new_frames, other.skipped, BenefitOf(other, now_s));
    round.why += summary;
    if (options_.policy == SchedulePolicy::kBenefit) ++other.skipped;  // passed over with work
  }
  d.new_frames = 0;
  d.skipped = 0;
  d.requested = false;
  d.running = true;
  return round;
}

void RoundScheduler::RoundDone(const std::string& device, double published_map50, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(device);
  if (it == index_.end()) return;
  DeviceState& d = devices_[it->second];
  if (d.running) d.last_round_s = now_s;
  d.running = false;
  d.map50 = published_map50;
}

void RoundScheduler::Regrouped(const std::map<std::string, std::vector<std::string>>& sources, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<DeviceState> made;
  std::set<std::string> gone;
  for (const auto& [into, from] : sources) {
    DeviceState unit;
    unit.name = into;
    unit.last_round_s = now_s;
    for (const std::string& old : from) {
      gone.insert(old);
      auto it = index_.find(old);
      if (it == index_.end()) continue;
      const DeviceState& d = devices_[it->second];
      unit.new_frames += d.new_frames;
      unit.map50 = std::max(unit.map50, d.map50);
      if (unit.recent_score < 0) unit.recent_score = d.recent_score, unit.longrun_score = d.longrun_score;
    }
    gone.insert(into);  // a key used again (a device alone once more) starts afresh
    made.push_back(unit);
  }
  std::vector<DeviceState> kept;
  for (DeviceState& d : devices_)
    if (!gone.count(d.name)) kept.push_back(std::move(d));
  kept.insert(kept.end(), made.begin(), made.end());
  devices_ = std::move(kept);
  index_.clear();
  for (size_t i = 0; i < devices_.size(); ++i) index_[devices_[i].name] = i;
  cursor_ = devices_.empty() ? 0 : cursor_ % devices_.size();
}

int RoundScheduler::pending_frames(const std::string& device) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(device);
  return it == index_.end() ? 0 : devices_[it->second].new_frames;
}

double RoundScheduler::Benefit(const std::string& device, double now_s) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(device);
  return it == index_.end() ? 0 : BenefitOf(devices_[it->second], now_s);
}

}  // namespace sd
