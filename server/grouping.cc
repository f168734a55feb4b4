#include "server/grouping.h"

#include <algorithm>
#include <limits>

#include <spdlog/fmt/fmt.h>

namespace sd {
namespace {

// The unit's score on `device`; 0 when not measured (a student that was not scored there
// counts as serving it badly, so that a missing figure never merges).
double ScoreOf(const UnitScores& unit, const std::string& device) {
  auto it = unit.map50.find(device);
  return it == unit.map50.end() ? 0 : it->second;
}

std::string Joined(const std::vector<std::string>& members) {
  std::string text;
  for (const std::string& m : members) text += (text.empty() ? "" : "+") + m;
  return text;
}

struct Cluster {
  std::vector<std::string> members;
  bool mergeable = true;
};

}  // namespace

GroupingDecision DecideGroups(const std::vector<UnitScores>& units, double margin) {
  GroupingDecision decision;
  std::map<std::string, const UnitScores*> unit_of;
  for (const UnitScores& unit : units)
    for (const std::string& member : unit.members) unit_of[member] = &unit;
  auto own = [&](const std::string& device) { return ScoreOf(*unit_of.at(device), device); };

  std::vector<Cluster> clusters;
  for (const UnitScores& unit : units) {
    std::vector<std::string> members = unit.members;
    while (members.size() >= 2) {
      size_t worst = 0;
      double worst_gap = -std::numeric_limits<double>::infinity(), worst_others = 0;
      for (size_t i = 0; i < members.size(); ++i) {
        double others = 0;
        for (size_t j = 0; j < members.size(); ++j) others += j == i ? 0 : own(members[j]);
        others /= members.size() - 1;
        if (others - own(members[i]) > worst_gap) worst_gap = others - own(members[i]), worst = i, worst_others = others;
      }
      if (worst_gap <= margin) break;
      const std::string device = members[worst];
      decision.reasons.push_back(fmt::format("{} split off [{}]: mAP50 {:.3f} on the group's student, the other "
                                             "members {:.3f} (more than the margin {:.3f} apart)",
                                             device, Joined(unit.members), own(device), worst_others, margin));
      decision.split_off.push_back(device);
      // It runs a copy of the group's student: like the group by construction, so it merges
      // again only once its own rounds have made that student its own.
      clusters.push_back({{device}, false});
      members.erase(members.begin() + worst);
    }
    double own_mean = 0;
    for (const std::string& member : members) own_mean += own(member);
    own_mean /= std::max<size_t>(1, members.size());
    clusters.push_back({members, unit.comparable && own_mean > margin});
  }

  // Complete linkage: the largest loss over every pair of devices across two clusters.
  auto loss = [&](const std::string& a, const std::string& b) {
    const UnitScores* ua = unit_of.at(a);
    const UnitScores* ub = unit_of.at(b);
    if (ua == ub) return 0.0;
    return std::max(own(b) - ScoreOf(*ua, b), own(a) - ScoreOf(*ub, a));
  };
  for (;;) {
    double best = std::numeric_limits<double>::infinity();
    size_t best_i = 0, best_j = 0;
    for (size_t i = 0; i < clusters.size(); ++i)
      for (size_t j = i + 1; j < clusters.size(); ++j) {
        if (!clusters[i].mergeable || !clusters[j].mergeable) continue;
        double link = 0;
        for (const std::string& a : clusters[i].members)
          for (const std::string& b : clusters[j].members) link = std::max(link, loss(a, b));
        if (link < best) best = link, best_i = i, best_j = j;
      }
    if (best > margin) break;
    decision.reasons.push_back(fmt::format("[{}] and [{}] merge: the worst loss of a device on the other's student "
                                           "is {:.3f} (within the margin {:.3f})",
                                           Joined(clusters[best_i].members), Joined(clusters[best_j].members), best,
                                           margin));
    std::vector<std::string>& into = clusters[best_i].members;
    into.insert(into.end(), clusters[best_j].members.begin(), clusters[best_j].members.end());
    clusters.erase(clusters.begin() + best_j);
  }
  for (Cluster& cluster : clusters) {
    if (cluster.members.empty()) continue;
    std::sort(cluster.members.begin(), cluster.members.end());
    decision.groups.push_back(cluster.members);
  }
  std::sort(decision.groups.begin(), decision.groups.end());
  return decision;
}

std::string TransferMatrix(const std::vector<UnitScores>& units) {
  std::string text;
  for (const UnitScores& unit : units) {
    text += (text.empty() ? "[" : " | [") + Joined(unit.members) + "]";
    for (const auto& [device, map50] : unit.map50) text += fmt::format(" {} {:.3f}", device, map50);
  }
  return text;
}

}  // namespace sd
