#include "server/pg_leases.h"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace sd {
namespace {

std::string Interval(double seconds) { return std::to_string(static_cast<int64_t>(seconds * 1000)) + " milliseconds"; }

}  // namespace

PgLeases::PgLeases(const PgPool* pool, std::string replica, double ttl_s)
    : pool_(pool), replica_(std::move(replica)), ttl_s_(ttl_s) {}

StatusOr<uint64_t> PgLeases::Acquire(const std::string& device_id) {
  uint64_t epoch = 0;
  std::string holder;
  double holder_left_s = 0;
  SD_RETURN_IF_ERROR(pool_->Transact("taking the lease of device " + device_id, [&](pqxx::dbtransaction& tx) {
    // A new row, or a row whose lease expired or is already this replica's: a new epoch.
    pqxx::result r = tx.exec_params(
        "INSERT INTO device_leases(device_id, replica, epoch, expires_at) VALUES($1, $2, 1, now() + $3::interval) "
        "ON CONFLICT (device_id) DO UPDATE SET replica = EXCLUDED.replica, epoch = device_leases.epoch + 1, "
        "expires_at = EXCLUDED.expires_at "
        "WHERE device_leases.expires_at < now() OR device_leases.replica = EXCLUDED.replica RETURNING epoch",
        device_id, replica_, Interval(ttl_s_));
    if (!r.empty()) {
      epoch = r[0][0].as<uint64_t>();
      return Status::Ok();
    }
    pqxx::result h = tx.exec_params(
        "SELECT replica, extract(epoch FROM expires_at - now()) FROM device_leases WHERE device_id=$1", device_id);
    if (!h.empty()) {
      holder = h[0][0].as<std::string>();
      holder_left_s = h[0][1].as<double>();
    }
    return Status::Ok();
  }));
  if (epoch == 0)
    return Status::Unavailable("device " + device_id + " is served by replica " + holder + " (its lease runs " +
                               std::to_string(static_cast<int>(holder_left_s + 0.999)) + " s more): retry later");
  MutexLock lock(&mu_);
  held_[device_id] = epoch;
  return epoch;
}

std::vector<std::string> PgLeases::RenewAll() {
  std::map<std::string, uint64_t> held;
  {
    MutexLock lock(&mu_);
    held = held_;
  }
  std::vector<std::string> lost;
  if (held.empty()) return lost;
  Status renewed = pool_->Transact("renewing leases", [&](pqxx::dbtransaction& tx) {
    lost.clear();
    for (const auto& [device, epoch] : held) {
      pqxx::result r = tx.exec_params(
          "UPDATE device_leases SET expires_at = now() + $4::interval WHERE device_id=$1 AND replica=$2 AND epoch=$3 "
          "AND expires_at > now() RETURNING 1",
          device, replica_, epoch, Interval(ttl_s_));
      if (r.empty()) lost.push_back(device);
    }
    return Status::Ok();
  });
  if (!renewed.ok()) {
    spdlog::warn("replica {}: {}", replica_, renewed.ToString());
    return {};
  }
  MutexLock lock(&mu_);
  for (const std::string& device : lost) {
    auto it = held_.find(device);
    if (it != held_.end() && it->second == held[device]) held_.erase(it);
  }
  return lost;
}

void PgLeases::Release(const std::string& device_id, uint64_t epoch) {
  {
    MutexLock lock(&mu_);
    auto it = held_.find(device_id);
    if (it == held_.end() || it->second != epoch) return;
    held_.erase(it);
  }
  Status released = pool_->Transact("giving up the lease of device " + device_id, [&](pqxx::dbtransaction& tx) {
    // Expired rather than deleted: the epoch keeps rising for the device's next holder.
    tx.exec_params(
        "UPDATE device_leases SET expires_at = now() - interval '1 millisecond' WHERE device_id=$1 AND replica=$2 "
        "AND epoch=$3",
        device_id, replica_, epoch);
    return Status::Ok();
  });
  // Not fatal: the lease then merely expires.
  if (!released.ok()) spdlog::warn("replica {}: {}", replica_, released.ToString());
}

uint64_t PgLeases::Held(const std::string& device_id) const {
  MutexLock lock(&mu_);
  auto it = held_.find(device_id);
  return it == held_.end() ? 0 : it->second;
}

Status PgLeases::CheckFence(pqxx::dbtransaction& tx, const std::string& device_id) const {
  const uint64_t epoch = Held(device_id);
  if (epoch == 0)
    return Status::FailedPrecondition("replica " + replica_ + " does not serve device " + device_id +
                                      " (it holds no lease for it)");
  pqxx::result r = tx.exec_params(
      "SELECT 1 FROM device_leases WHERE device_id=$1 AND replica=$2 AND epoch=$3 AND expires_at > now() FOR SHARE",
      device_id, replica_, epoch);
  if (r.empty())
    return Status::FailedPrecondition("replica " + replica_ + " lost the lease of device " + device_id + " (epoch " +
                                      std::to_string(epoch) + "): another replica serves it now");
  return Status::Ok();
}

}  // namespace sd
