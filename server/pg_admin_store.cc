#include "server/pg_admin_store.h"

#include <pqxx/pqxx>

namespace sd {

StatusOr<std::unique_ptr<PgAdminStore>> PgAdminStore::Open(const PgPool* pool) {
  std::unique_ptr<PgAdminStore> store(new PgAdminStore(pool));
  SD_RETURN_IF_ERROR(store->Refresh().status());
  return store;
}

StatusOr<std::map<std::string, AdminState>> PgAdminStore::ReadAll() const {
  std::map<std::string, AdminState> states;
  SD_RETURN_IF_ERROR(pool_->Transact("reading the admin state", [&](pqxx::dbtransaction& tx) {
    states.clear();
    for (const pqxx::row& row : tx.exec("SELECT device_id, pinned_version, paused FROM admin_state"))
      states[row[0].as<std::string>()] = AdminState{row[1].as<uint64_t>(), row[2].as<bool>()};
    return Status::Ok();
  }));
  return states;
}

AdminState PgAdminStore::Get(const std::string& device_id) const {
  MutexLock lock(&mu_);
  auto it = states_.find(device_id);
  return it == states_.end() ? AdminState() : it->second;
}

Status PgAdminStore::Update(const std::string& device_id, const std::function<void(AdminState&)>& change) {
  AdminState next;
  SD_RETURN_IF_ERROR(pool_->Transact("saving the admin state of " + device_id, [&](pqxx::dbtransaction& tx) {
    tx.exec_params("INSERT INTO admin_state(device_id) VALUES($1) ON CONFLICT DO NOTHING", device_id);
    pqxx::row row =
        tx.exec_params1("SELECT pinned_version, paused FROM admin_state WHERE device_id=$1 FOR UPDATE", device_id);
    next = AdminState{row[0].as<uint64_t>(), row[1].as<bool>()};
    change(next);
    tx.exec_params("UPDATE admin_state SET pinned_version=$2, paused=$3, changed_at=now() WHERE device_id=$1",
                   device_id, next.pinned_version, next.paused);
    return Status::Ok();
  }));
  MutexLock lock(&mu_);
  states_[device_id] = next;
  return Status::Ok();
}

StatusOr<std::vector<std::string>> PgAdminStore::Refresh() {
  using States = std::map<std::string, AdminState>;
  SD_ASSIGN_OR_RETURN(States fresh, ReadAll());
  std::vector<std::string> changed;
  MutexLock lock(&mu_);
  for (const auto& [id, state] : fresh) {
    auto it = states_.find(id);
    const AdminState before = it == states_.end() ? AdminState() : it->second;
    if (before.pinned_version != state.pinned_version || before.paused != state.paused) changed.push_back(id);
  }
  states_ = std::move(fresh);
  return changed;
}

}  // namespace sd
