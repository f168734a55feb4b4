// The teacher's time shared among cameras (issue 26). The labellers' measured capacity (workers
// over seconds a frame) is divided among the cameras that send frames, by benefit (the round
// scheduler's signals: held-out deficit, drift, new data, waiting), and each edge is told its
// share in every ack (FrameAck.budget_per_minute). A camera that asks for less than its share
// (its own adaptive budget, SampledFrame.budget_per_minute) gets what it asks for and the rest
// goes to the others (max-min fair, weighted: water-filling). While frames queue for the
// labellers the shares shrink, so edges slow down before the queue reaches its bound
// (labeler.max_queue_seconds, which LabelerPool enforces by not reading streams: nothing is
// dropped).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "common/vision/detection.h"

namespace sd {

struct LabelBudgetOptions {
  bool share = true;         // labeler.share_capacity: tell edges their budget
  double utilisation = 0.8;  // labeler.target_utilisation: the share of measured capacity handed out
  double min_per_minute = 0.5;  // labeler.min_budget_per_minute: no camera is told less
  double active_s = 120;     // a camera without a frame for this long gets no share
  // Each message starts with its field's name (YamlReader::Check maps it to the key).
  Status Validate() const;
};

// The labellers as the budget sees them (LabelerPool's measurements).
struct LabelCapacity {
  int workers = 1;
  double seconds_per_frame = 0;  // measured, 0: not yet
  double queued_seconds = 0;     // labelling work waiting
  double max_queue_seconds = 0;  // the queue's bound; 0: none
  double PerMinute(double utilisation) const;  // frames a minute handed out; 0 unknown
};

// One camera as /metrics and the dashboard show it.
struct CameraBudget {
  double requested = 0;   // frames a minute the edge asks for (0: it did not say)
  std::string reason;     // the edge's why ("agreement", "scene_change", ...)
  double granted = 0;     // frames a minute it was told last (0: nothing told)
  double agreement = -1;  // the student's agreement with the teacher, smoothed; -1 unknown
  double last_frame_s = 0;
  struct Move {
    double time_s;  // steady clock
    double requested, granted;
    std::string reason;
  };
  std::deque<Move> moves;  // the newest kMoves changes of its budget, oldest first
  static constexpr size_t kMoves = 20;
};

// The edge's reason as the server keeps it: a word of lower-case letters and '_' of at most 32
// characters, else "other" (a client must not fill logs or metric labels with what it likes).
std::string BudgetReasonWord(const std::string& reason);

// Student detections with boxes in [0, 1] of the frame (SampledFrame.student_detections)
// against the teacher's labels in pixels of a width x height image: LabelAgreement.
double StudentAgreement(const Detections& normalised_student, const Detections& teacher, int width, int height);

// What a frame says of its edge's budget (SampledFrame fields 20-22), and what its ack answers.
struct FrameBudgetAsk {
  double requested = 0;      // frames a minute the edge's own budget allows (0: not said)
  std::string reason;        // why, a word (edge/budget_controller.h)
  Detections student;        // the student's detections, boxes in [0, 1] of the frame
};
struct FrameBudgetAnswer {
  double student_agreement = -1;  // the student's against the teacher's labels; -1 unknown
  double budget_per_minute = 0;   // the edge's share of the labellers; 0: no bound
};

class LabelBudget {
 public:
  explicit LabelBudget(LabelBudgetOptions options) : options_(options) {}

  // A camera's frame was labelled: what it asks for (<= 0: unknown) and why, and its
  // agreement (< 0: unknown). Then the budget to tell it, 0 for none: its share of `capacity`
  // among the active cameras, weighted by `benefit` (called for each, with no lock held here).
  double OnFrame(const std::string& device, double requested, const std::string& reason, double agreement,
                 const LabelCapacity& capacity, const std::function<double(const std::string&)>& benefit,
                 double now_s) SD_EXCLUDES(mu_);

  std::map<std::string, CameraBudget> Cameras() const SD_EXCLUDES(mu_);
  double capacity_per_minute() const SD_EXCLUDES(mu_);  // as last shared

 private:
  // Water-filling of `capacity` (frames a minute) over the active cameras; fills granted.
  void Share(double capacity, const std::map<std::string, double>& weights, double now_s) SD_REQUIRES(mu_);

  const LabelBudgetOptions options_;
  mutable Mutex mu_;  // a leaf: nothing is called with it held
  std::map<std::string, CameraBudget> cameras_ SD_GUARDED_BY(mu_);
  double capacity_per_minute_ SD_GUARDED_BY(mu_) = 0;
};

}  // namespace sd
