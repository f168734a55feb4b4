#include "server/pg_enrolment.h"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace sd {
namespace {

class PgSource : public EnrolmentSource {
 public:
  explicit PgSource(const PgPool* pool) : pool_(pool), name_("postgres '" + pool->redacted_dsn() + "' enrolled_devices") {}

  StatusOr<EnrolledDevices> Read() override {
    EnrolledDevices devices;
    int64_t generation = 0;
    SD_RETURN_IF_ERROR(pool_->Transact("reading the enrolled devices", [&](pqxx::dbtransaction& tx) -> Status {
      devices.clear();
      generation = tx.exec1("SELECT generation FROM enrolment_generation")[0].as<int64_t>();
      for (const pqxx::row& row : tx.exec("SELECT device_id, token_hash, enabled FROM enrolled_devices")) {
        const std::string id = row[0].as<std::string>();
        SD_RETURN_IF_ERROR(CheckDeviceId(id).WithContext(name_));
        auto hash = ParseTokenHash(row[1].as<std::string>());
        if (!hash.ok()) return hash.status().WithContext(name_ + ": device " + id);
        devices[id] = EnrolledDevice{*hash, row[2].as<bool>()};
      }
      return Status::Ok();
    }));
    read_generation_ = generation;
    // As the devices file that does not exist yet: the admin tool never wrote the set.
    if (generation == 0) return Status::NotFound(name_ + ": nothing enrolled yet (streamdistill-admin enrol --dsn)");
    return devices;
  }

  bool MayHaveChanged() override {
    int64_t generation = -1;
    Status status = pool_->Transact("polling the enrolment", [&](pqxx::dbtransaction& tx) {
      generation = tx.exec1("SELECT generation FROM enrolment_generation")[0].as<int64_t>();
      return Status::Ok();
    });
    return !status.ok() || generation != read_generation_;
  }

  const std::string& name() const override { return name_; }

 private:
  const PgPool* const pool_;
  const std::string name_;
  int64_t read_generation_ = -1;  // the registry's watcher thread alone calls Read and MayHaveChanged
};

}  // namespace

std::unique_ptr<EnrolmentSource> PgEnrolmentSource(const PgPool* pool) { return std::make_unique<PgSource>(pool); }

Status WritePgEnrolment(const PgPool& pool, const EnrolledDevices& devices) {
  return pool.Transact("writing the enrolled devices", [&](pqxx::dbtransaction& tx) -> Status {
    tx.exec("DELETE FROM enrolled_devices");
    for (const auto& [id, device] : devices) {
      SD_RETURN_IF_ERROR(CheckDeviceId(id));
      tx.exec_params("INSERT INTO enrolled_devices(device_id, token_hash, enabled) VALUES($1,$2,$3)", id,
                     FormatTokenHash(device.token), device.enabled);
    }
    tx.exec("UPDATE enrolment_generation SET generation = generation + 1");
    return Status::Ok();
  });
}

}  // namespace sd
