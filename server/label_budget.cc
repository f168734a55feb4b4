#include "server/label_budget.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "server/labeler.h"

namespace sd {
namespace {

// A camera with no benefit at all still gets a little of what is spare.
constexpr double kMinWeight = 0.05;
// A change of a tenth or more of a camera's budget is a move worth remembering.
bool Moved(double before, double after) {
  return std::abs(after - before) > 0.1 * std::max(std::abs(before), 1e-9);
}

// Remembers the camera's budget when it moved since the last move remembered (or its reason
// changed), so slow drifts are seen too.
void RecordMove(CameraBudget* camera, double now_s) {
  if (!camera->moves.empty()) {
    const CameraBudget::Move& last = camera->moves.back();
    if (!Moved(last.requested, camera->requested) && !Moved(last.granted, camera->granted) &&
        last.reason == camera->reason)
      return;
  }
  camera->moves.push_back({now_s, camera->requested, camera->granted, camera->reason});
  if (camera->moves.size() > CameraBudget::kMoves) camera->moves.pop_front();
}

}  // namespace

Status LabelBudgetOptions::Validate() const {
  if (!(utilisation > 0 && utilisation <= 1))
    return Status::InvalidArgument("target_utilisation: must be in (0, 1], got " + std::to_string(utilisation));
  if (!(min_per_minute > 0) || !std::isfinite(min_per_minute))
    return Status::InvalidArgument("min_budget_per_minute: must be > 0, got " + std::to_string(min_per_minute));
  if (!(active_s > 0) || !std::isfinite(active_s))
    return Status::InvalidArgument("active_s: must be > 0, got " + std::to_string(active_s));
  return Status::Ok();
}

double LabelCapacity::PerMinute(double utilisation) const {
  if (!(seconds_per_frame > 0) || workers < 1) return 0;
  double per_minute = workers * 60.0 / seconds_per_frame * utilisation;
  // Work already queued: hand out less until it drains, the more the fuller the queue.
  if (max_queue_seconds > 0) per_minute *= std::max(0.1, 1 - queued_seconds / max_queue_seconds);
  return per_minute;
}

std::string BudgetReasonWord(const std::string& reason) {
  if (reason.empty()) return "";
  if (reason.size() > 32) return "other";
  for (char c : reason)
    if (!((c >= 'a' && c <= 'z') || c == '_')) return "other";
  return reason;
}

double StudentAgreement(const Detections& normalised_student, const Detections& teacher, int width, int height) {
  Detections student = normalised_student;
  ScaleDetections(&student, static_cast<float>(width), static_cast<float>(height));
  return LabelAgreement(teacher, student);
}

double LabelBudget::OnFrame(const std::string& device, double requested, const std::string& reason, double agreement,
                            const LabelCapacity& capacity, const std::function<double(const std::string&)>& benefit,
                            double now_s) {
  std::vector<std::string> active;
  {
    MutexLock lock(&mu_);
    CameraBudget& camera = cameras_[device];
    camera.requested = requested > 0 && std::isfinite(requested) ? requested : 0;
    camera.reason = reason;
    camera.last_frame_s = now_s;
    if (agreement >= 0 && agreement <= 1)
      camera.agreement = camera.agreement < 0 ? agreement : camera.agreement + 0.3 * (agreement - camera.agreement);
    RecordMove(&camera, now_s);
    for (const auto& [id, c] : cameras_)
      if (now_s - c.last_frame_s <= options_.active_s) active.push_back(id);
  }
  if (!options_.share) return 0;
  // The scheduler's lock is taken here, never under mu_.
  std::map<std::string, double> weights;
  for (const std::string& id : active) weights[id] = std::max(kMinWeight, benefit ? benefit(id) : 1.0);
  MutexLock lock(&mu_);
  capacity_per_minute_ = capacity.PerMinute(options_.utilisation);
  Share(capacity_per_minute_, weights, now_s);
  return cameras_[device].granted;
}

void LabelBudget::Share(double capacity, const std::map<std::string, double>& weights, double now_s) {
  if (!(capacity > 0)) return;  // not measured yet: nothing is told
  struct Entry {
    CameraBudget* camera;
    double weight, demand;
  };
  std::vector<Entry> entries;
  double total_weight = 0;
  for (const auto& [id, weight] : weights) {
    CameraBudget& camera = cameras_[id];
    entries.push_back({&camera, weight,
                       camera.requested > 0 ? camera.requested : std::numeric_limits<double>::infinity()});
    total_weight += weight;
  }
  // Water-filling: the cameras that ask least for their weight are served first, each within
  // its weighted share of what is left; the first that asks for more than that sets the level,
  // and every camera is told level x weight (those that asked for less may rise to it).
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.demand / a.weight < b.demand / b.weight; });
  double left = capacity, left_weight = total_weight;
  double level = std::numeric_limits<double>::infinity();
  for (const Entry& e : entries) {
    if (e.demand > left * e.weight / left_weight) {
      level = left / left_weight;
      break;
    }
    left -= e.demand;
    left_weight -= e.weight;
  }
  for (Entry& e : entries) {
    // Nobody was bounded: each may have what it asks for and a share of what is spare.
    const double share = std::isfinite(level) ? level * e.weight : e.demand + left * e.weight / total_weight;
    const double granted = std::max(options_.min_per_minute, share);
    e.camera->granted = granted;
    RecordMove(e.camera, now_s);
  }
}

std::map<std::string, CameraBudget> LabelBudget::Cameras() const {
  MutexLock lock(&mu_);
  return cameras_;
}

double LabelBudget::capacity_per_minute() const {
  MutexLock lock(&mu_);
  return capacity_per_minute_;
}

}  // namespace sd
