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
  std::vector<std::string> members;  // the first one's unit's student is the cluster's
  bool mergeable = true;  // may take part in a merge at all (not split off this time)
  bool serves = false;    // may take others: its student is its own and learnt something
  bool taken = false;     // taken by another this time
  bool seed = false;      // took others: the group starts from its student
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
      // Against the median of the group, not its mean: a group of alike cameras and one that
      // its student serves better must not split off the alike ones.
      std::vector<double> scores;
      for (const std::string& m : members) scores.push_back(own(m));
      std::sort(scores.begin(), scores.end());
      const size_t n = scores.size();
      const double median = n % 2 ? scores[n / 2] : (scores[n / 2 - 1] + scores[n / 2]) / 2;
      size_t worst = 0;
      double worst_gap = -std::numeric_limits<double>::infinity();
      for (size_t i = 0; i < members.size(); ++i)
        if (median - own(members[i]) > worst_gap) worst_gap = median - own(members[i]), worst = i;
      if (worst_gap <= margin) break;
      const std::string device = members[worst];
      decision.reasons.push_back(fmt::format("{} split off [{}]: mAP50 {:.3f} on the group's student, the group's "
                                             "median {:.3f} (more than the margin {:.3f} apart)",
                                             device, Joined(unit.members), own(device), median, margin));
      decision.split_off.push_back(device);
      // It runs a copy of the group's student: like the group by construction, so it merges
      // again only once its own rounds have made that student its own.
      clusters.push_back({{device}, /*mergeable=*/false});
      members.erase(members.begin() + worst);
    }
    double own_mean = 0;
    for (const std::string& member : members) own_mean += own(member);
    own_mean /= std::max<size_t>(1, members.size());
    clusters.push_back({members, /*mergeable=*/true, /*serves=*/unit.comparable && own_mean > margin});
  }

  // One way: a cluster's student serves device b when it scores b's frames within the margin
  // of b's own student and above the margin (a student that finds nothing there serves no
  // one, however little b's own finds). Of all (server, other) pairs where the server's student
  // serves every device of the other, the one that loses least merges first, again and again:
  // a server keeps taking; one that was taken, or took others, is not taken any more.
  auto serves = [&](const Cluster& server, const std::string& b) {
    const double on_b = ScoreOf(*unit_of.at(server.members.front()), b);
    return on_b > margin && on_b >= own(b) - margin;
  };
  auto loss = [&](const Cluster& server, const std::string& b) {
    return own(b) - ScoreOf(*unit_of.at(server.members.front()), b);
  };
  for (;;) {
    double best = std::numeric_limits<double>::infinity();
    size_t best_i = clusters.size(), best_j = clusters.size();
    for (size_t i = 0; i < clusters.size(); ++i) {
      if (!clusters[i].serves || clusters[i].taken) continue;
      for (size_t j = 0; j < clusters.size(); ++j) {
        const Cluster& other = clusters[j];
        if (j == i || !other.mergeable || other.taken || other.seed || other.members.empty()) continue;
        double worst = -std::numeric_limits<double>::infinity();
        bool all = true;
        for (const std::string& b : other.members) {
          all = all && serves(clusters[i], b);
          worst = std::max(worst, loss(clusters[i], b));
        }
        if (all && worst < best) best = worst, best_i = i, best_j = j;
      }
    }
    if (best_i == clusters.size()) break;
    Cluster& server = clusters[best_i];
    Cluster& other = clusters[best_j];
    std::string figures;
    for (const std::string& b : other.members)
      figures += fmt::format("{}{} {:.3f} (own {:.3f})", figures.empty() ? "" : ", ", b,
                             ScoreOf(*unit_of.at(server.members.front()), b), own(b));
    decision.reasons.push_back(fmt::format("[{}] joins [{}]: its student serves them within the margin {:.3f}: {}",
                                           Joined(other.members), Joined(server.members), margin, figures));
    server.members.insert(server.members.end(), other.members.begin(), other.members.end());
    other.members.clear();
    other.taken = true;
    server.seed = true;
  }
  std::vector<std::pair<std::vector<std::string>, std::string>> groups;  // sorted members, seed
  for (Cluster& cluster : clusters) {
    if (cluster.members.empty()) continue;
    const std::string seed = cluster.seed ? cluster.members.front() : "";
    std::sort(cluster.members.begin(), cluster.members.end());
    groups.emplace_back(cluster.members, seed);
  }
  std::sort(groups.begin(), groups.end());
  for (auto& [members, seed] : groups) {
    decision.groups.push_back(std::move(members));
    decision.seeds.push_back(std::move(seed));
  }
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
