// CSBAD's automatic grouping (docs/fleet.md, "Automatic groups"): which devices share one
// student, decided from how well the students transfer to each other's held-out frames. Pure
// functions on scores that the server measures; no models, no locks.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace sd {

// A training unit as the decision sees it: its members, its student's held-out mAP50 on each
// participating device's frames, and whether that student is its own.
struct UnitScores {
  std::vector<std::string> members;
  // Device id -> the unit's student's mAP50 on the device's newest held-out frames, for every
  // participating device (members and others).
  std::map<std::string, double> map50;
  // False while the unit's student is not yet its own (no version trained, or the copy a split
  // started from): it cannot tell whether its members are like others, so it does not merge.
  bool comparable = true;
};

struct GroupingDecision {
  // The devices of each unit after the decision (each sorted, in first-member order). A unit
  // equal to one before is unchanged.
  std::vector<std::vector<std::string>> groups;
  // Per group: the member whose unit's student it starts from, when it took others this time
  // (that student serves them all); "" otherwise (then the newest version among its units).
  std::vector<std::string> seeds;
  std::vector<std::string> split_off;  // devices split off their group this time
  std::vector<std::string> reasons;    // one line per split and merge, with its figures
};

// Splits, then merges, with `margin` the mAP50 a device may lose and still be served:
//  - split: a member of a group whose score on the group's student falls more than `margin`
//    below the median of the group's scores leaves it (the worst first, one at a time, the
//    median taken again after each); it is taken by others again, but takes no one until its
//    own rounds have made its student its own;
//  - merge, one way: a unit whose student is its own (comparable) and scores its members above
//    `margin` on average may take another unit all of whose devices its student serves: scores
//    their frames above `margin` and within `margin` of their own student. The pair that loses
//    least merges first, again and again; a unit that took others is not taken. A device loses at most the margin by joining, however weak its
//    own student (a symmetric test would wait until every student is good: CSBAD's cameras
//    share a student exactly so that they need not each train one first).
GroupingDecision DecideGroups(const std::vector<UnitScores>& units, double margin);

// The transfer matrix for the log, one unit per row: "[cam1+cam2] cam1 .81 cam2 .79 cam3 .12".
std::string TransferMatrix(const std::vector<UnitScores>& units);

}  // namespace sd
