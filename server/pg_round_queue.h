// Training rounds shared by the replicas (docs/scale-out.md, "Rounds on any replica"): the
// replica serving a unit queues its round when the unit's scheduler picks it, and an idle
// training worker on any replica claims the oldest queued round with `SELECT ... FOR UPDATE
// SKIP LOCKED`, so two workers never claim one round and neither waits for the other. A claim
// is a lease like a device's: it names the replica, carries a fencing epoch bumped by every
// claim, and expires after ttl unless its replica renews it. A replica that dies mid-round
// stops renewing; once the claim expires another replica claims the round again and runs it
// from the newest stored version: only that round's work is lost. The version a claimed round
// publishes is stored only while its claim holds, in the transaction that drops the request
// (PgFrameStore::PutClaimedVersion), and the versions' primary key keeps each number unique.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"
#include "server/pg_connection.h"

namespace pqxx {
class dbtransaction;
}

namespace sd {

struct RoundClaim {
  std::string unit;          // the unit's key (a device id: shared students stay on one server)
  int iterations = 0;        // the steps its scheduler chose
  std::string why;           // the scheduler's reason
  std::string requested_by;  // the replica serving the unit when it was queued
  uint64_t epoch = 0;        // the claim's fencing epoch
  int attempts = 0;          // claims of this request so far, this one included
  std::string previous;      // the replica whose expired claim this one replaced ("" if none)
  double waited_s = 0;       // since it was queued, on the database's clock
};

class PgRoundQueue {
 public:
  PgRoundQueue(const PgPool* pool, std::string replica, double claim_ttl_s);

  // Queues a round of `unit`; a unit already queued (or running) keeps its request.
  Status Request(const std::string& unit, int iterations, const std::string& why);
  // The round this replica's worker should run next, claimed for it; nullopt when none waits.
  // Rounds that waited over 5 s go first, oldest first; otherwise this replica's own units
  // (their students and decoded frames are in its memory) before others'.
  StatusOr<std::optional<RoundClaim>> Claim() SD_EXCLUDES(mu_);
  // Extends the claims this process holds by ttl (ClusterBackend's keeper, every ttl/3). Only
  // those it holds: a replica restarted under the same name does not keep its dead
  // predecessor's claims alive.
  void RenewAll() SD_EXCLUDES(mu_);
  // The claimed round ended with nothing to store (discarded, failed, published through the
  // lease-fenced store by the serving replica itself): its request is dropped.
  Status Finish(const RoundClaim& claim) SD_EXCLUDES(mu_);
  // The claimed round did not run (shutdown): its request waits for another claim at once.
  void Release(const RoundClaim& claim) SD_EXCLUDES(mu_);
  // In a version's transaction: FailedPrecondition unless the claim still holds (this
  // replica, its epoch); then drops the request, so the version and the end of the round
  // commit together.
  Status FenceAndFinish(pqxx::dbtransaction& tx, const RoundClaim& claim) SD_EXCLUDES(mu_);
  // Which of `units` are queued or running now.
  StatusOr<std::set<std::string>> Queued(const std::vector<std::string>& units) const;
  // The newest stored version of each of `devices` that has one.
  StatusOr<std::map<std::string, uint64_t>> NewestVersions(const std::vector<std::string>& devices) const;

  const std::string& replica() const { return replica_; }

 private:
  void Forget(const RoundClaim& claim) SD_EXCLUDES(mu_);

  const PgPool* const pool_;
  const std::string replica_;
  const double ttl_s_;
  mutable Mutex mu_;  // a leaf
  std::map<std::string, uint64_t> held_ SD_GUARDED_BY(mu_);  // unit -> claim epoch
};

}  // namespace sd
