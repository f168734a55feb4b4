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
  std::vector<std::string> split_off;  // devices split off their group this time
  std::vector<std::string> reasons;    // one line per split and merge, with its figures
};

// Splits, then merges, with `margin` the mAP50 a device may lose and still count as alike:
//  - split: a member of a group whose score on the group's student falls more than `margin`
//    below the mean of the other members' scores leaves it (the worst first, one at a time,
//    the mean taken again after each);
//  - merge: complete linkage over the devices of comparable units not split this time whose
//    student scores its own members above `margin` on average (one that does not has learnt
//    nothing a comparison could tell apart: untrained students would all look alike). Devices
//    a and b of different units are `margin`-alike when a's student scores b's frames within
//    margin of b's own student and the other way round; the distance of two clusters is the
//    largest loss over all their pairs, and the closest two merge while it is <= margin. So
//    every pair in a merged group is alike. Devices of one unit are at distance 0.
GroupingDecision DecideGroups(const std::vector<UnitScores>& units, double margin);

// The transfer matrix for the log, one unit per row: "[cam1+cam2] cam1 .81 cam2 .79 cam3 .12".
std::string TransferMatrix(const std::vector<UnitScores>& units);

}  // namespace sd
