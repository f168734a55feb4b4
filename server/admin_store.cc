#include "server/admin_store.h"

#include <nlohmann/json.hpp>

#include "common/base/log_safe.h"

namespace sd {

StatusOr<std::unique_ptr<FileAdminStore>> FileAdminStore::Open(Env* env, const std::string& storage_dir) {
  std::unique_ptr<FileAdminStore> store(new FileAdminStore(env, storage_dir + "/admin_state.json"));
  SD_RETURN_IF_ERROR(store->Load());
  return store;
}

Status FileAdminStore::Load() {
  auto text = env_->ReadFile(path_);
  if (!text.ok() && text.status().code() == Status::Code::kNotFound) return Status::Ok();  // no action yet
  if (!text.ok()) return text.status().WithContext("reading " + path_);
  const nlohmann::json parsed = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("devices") || !parsed["devices"].is_object())
    return Status::DataLoss(path_ + ": not an admin state file (a \"devices\" object expected)");
  MutexLock lock(&mu_);
  for (const auto& [id, entry] : parsed["devices"].items()) {
    if (!entry.is_object() || !entry.contains("pinned_version") || !entry["pinned_version"].is_number_unsigned() ||
        !entry.contains("paused") || !entry["paused"].is_boolean())
      return Status::DataLoss(path_ + ": device " + LogSafe(id) + ": pinned_version and paused expected");
    states_[id] = AdminState{entry["pinned_version"].get<uint64_t>(), entry["paused"].get<bool>()};
  }
  return Status::Ok();
}

Status FileAdminStore::Save(const std::map<std::string, AdminState>& states) const {
  nlohmann::json devices = nlohmann::json::object();
  for (const auto& [id, state] : states)
    if (state.pinned_version > 0 || state.paused)
      devices[id] = {{"pinned_version", state.pinned_version}, {"paused", state.paused}};
  return WriteFileDurably(env_, path_, nlohmann::json{{"devices", devices}}.dump(2) + "\n")
      .WithContext("saving the admin state to " + path_);
}

AdminState FileAdminStore::Get(const std::string& device_id) const {
  MutexLock lock(&mu_);
  auto it = states_.find(device_id);
  return it == states_.end() ? AdminState() : it->second;
}

Status FileAdminStore::Update(const std::string& device_id, const std::function<void(AdminState&)>& change) {
  MutexLock saving(&save_mu_);
  std::map<std::string, AdminState> next;
  {
    MutexLock lock(&mu_);
    next = states_;
  }
  change(next[device_id]);
  SD_RETURN_IF_ERROR(Save(next));  // on a failed save nothing changed, in memory as on disk
  MutexLock lock(&mu_);
  states_ = std::move(next);
  return Status::Ok();
}

}  // namespace sd
