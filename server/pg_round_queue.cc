#include "server/pg_round_queue.h"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace sd {

PgRoundQueue::PgRoundQueue(const PgPool* pool, std::string replica, double claim_ttl_s)
    : pool_(pool), replica_(std::move(replica)), ttl_s_(claim_ttl_s) {}

Status PgRoundQueue::Request(const std::string& unit, int iterations, const std::string& why) {
  return pool_->Transact("queueing a round of " + unit, [&](pqxx::dbtransaction& tx) {
    tx.exec_params("INSERT INTO round_queue(unit, iterations, why, requested_by) VALUES($1,$2,$3,$4) "
                   "ON CONFLICT (unit) DO NOTHING",
                   unit, iterations, why, replica_);
    return Status::Ok();
  });
}

StatusOr<std::optional<RoundClaim>> PgRoundQueue::Claim() {
  std::optional<RoundClaim> claim;
  SD_RETURN_IF_ERROR(pool_->Transact("claiming a round", [&](pqxx::dbtransaction& tx) {
    claim.reset();
    // SKIP LOCKED: a request another worker is claiming right now is passed over, not waited for.
    pqxx::result r = tx.exec_params(
        "UPDATE round_queue q SET claimed_by=$1, claim_epoch=q.claim_epoch+1, "
        "claim_expires_at=now() + make_interval(secs => $2), attempts=q.attempts+1 "
        "FROM (SELECT unit, coalesce(claimed_by, '') AS previous FROM round_queue "
        "      WHERE claimed_by IS NULL OR claim_expires_at < now() "
        "      ORDER BY (requested_at < now() - interval '5 seconds') DESC, (requested_by = $1) DESC, requested_at "
        "      LIMIT 1 FOR UPDATE SKIP LOCKED) pick "
        "WHERE q.unit = pick.unit "
        "RETURNING q.unit, q.iterations, q.why, q.requested_by, q.claim_epoch, q.attempts, pick.previous, "
        "extract(epoch from clock_timestamp() - q.requested_at)",
        replica_, ttl_s_);
    if (r.empty()) return Status::Ok();
    RoundClaim c;
    c.unit = r[0][0].as<std::string>();
    c.iterations = r[0][1].as<int>();
    c.why = r[0][2].as<std::string>();
    c.requested_by = r[0][3].as<std::string>();
    c.epoch = r[0][4].as<uint64_t>();
    c.attempts = r[0][5].as<int>();
    c.previous = r[0][6].as<std::string>();
    c.waited_s = r[0][7].as<double>();
    claim = std::move(c);
    return Status::Ok();
  }));
  if (claim) {
    MutexLock lock(&mu_);
    held_[claim->unit] = claim->epoch;
  }
  return claim;
}

void PgRoundQueue::RenewAll() {
  std::map<std::string, uint64_t> held;
  {
    MutexLock lock(&mu_);
    held = held_;
  }
  for (const auto& held_claim : held) {
    // Copies: clang 14 cannot capture structured bindings in a lambda.
    const std::string& unit = held_claim.first;
    const int64_t epoch = static_cast<int64_t>(held_claim.second);
    Status renewed = pool_->Transact("renewing the claim on a round of " + unit, [&](pqxx::dbtransaction& tx) {
      tx.exec_params("UPDATE round_queue SET claim_expires_at=now() + make_interval(secs => $1) "
                     "WHERE unit=$2 AND claimed_by=$3 AND claim_epoch=$4",
                     ttl_s_, unit, replica_, epoch);
      return Status::Ok();
    });
    // Not fatal: the claim runs towards its expiry, and the round's version is fenced by it.
    if (!renewed.ok()) spdlog::warn("replica {}: {}", replica_, renewed.ToString());
  }
}

Status PgRoundQueue::Finish(const RoundClaim& claim) {
  Status status = pool_->Transact("ending the round of " + claim.unit, [&](pqxx::dbtransaction& tx) {
    tx.exec_params("DELETE FROM round_queue WHERE unit=$1 AND claimed_by=$2 AND claim_epoch=$3", claim.unit, replica_,
                   static_cast<int64_t>(claim.epoch));
    return Status::Ok();
  });
  Forget(claim);
  return status;
}

void PgRoundQueue::Release(const RoundClaim& claim) {
  Status status = pool_->Transact("giving back the round of " + claim.unit, [&](pqxx::dbtransaction& tx) {
    tx.exec_params("UPDATE round_queue SET claimed_by=NULL, claim_expires_at=NULL "
                   "WHERE unit=$1 AND claimed_by=$2 AND claim_epoch=$3",
                   claim.unit, replica_, static_cast<int64_t>(claim.epoch));
    return Status::Ok();
  });
  // Not fatal: the claim expires after ttl instead.
  if (!status.ok()) spdlog::warn("replica {}: {}", replica_, status.ToString());
  Forget(claim);
}

Status PgRoundQueue::FenceAndFinish(pqxx::dbtransaction& tx, const RoundClaim& claim) {
  pqxx::result r = tx.exec_params(
      "SELECT 1 FROM round_queue WHERE unit=$1 AND claimed_by=$2 AND claim_epoch=$3 AND claim_expires_at > now() "
      "FOR UPDATE",
      claim.unit, replica_, static_cast<int64_t>(claim.epoch));
  if (r.empty())
    return Status::FailedPrecondition("the claim of replica " + replica_ + " on the round of " + claim.unit +
                                      " has expired or was taken over: its version is not stored");
  tx.exec_params("DELETE FROM round_queue WHERE unit=$1", claim.unit);
  Forget(claim);
  return Status::Ok();
}

StatusOr<std::set<std::string>> PgRoundQueue::Queued(const std::vector<std::string>& units) const {
  std::set<std::string> out;
  if (units.empty()) return out;
  const std::set<std::string> wanted(units.begin(), units.end());
  SD_RETURN_IF_ERROR(pool_->Transact("reading the round queue", [&](pqxx::dbtransaction& tx) {
    out.clear();
    // The queue holds a row per unit waiting or in a round: small, read whole.
    for (const pqxx::row& row : tx.exec("SELECT unit FROM round_queue")) {
      std::string unit = row[0].as<std::string>();
      if (wanted.count(unit)) out.insert(std::move(unit));
    }
    return Status::Ok();
  }));
  return out;
}

StatusOr<std::map<std::string, uint64_t>> PgRoundQueue::NewestVersions(const std::vector<std::string>& devices) const {
  std::map<std::string, uint64_t> out;
  if (devices.empty()) return out;
  SD_RETURN_IF_ERROR(pool_->Transact("reading the newest versions", [&](pqxx::dbtransaction& tx) {
    out.clear();
    for (const std::string& device : devices) {
      pqxx::result r = tx.exec_params("SELECT max(version) FROM versions WHERE device_id=$1", device);
      if (!r.empty() && !r[0][0].is_null()) out[device] = r[0][0].as<uint64_t>();
    }
    return Status::Ok();
  }));
  return out;
}

void PgRoundQueue::Forget(const RoundClaim& claim) {
  MutexLock lock(&mu_);
  auto it = held_.find(claim.unit);
  if (it != held_.end() && it->second == claim.epoch) held_.erase(it);
}

}  // namespace sd
