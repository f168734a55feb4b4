#include "server/server_config.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "common/config/config.h"
#include "common/link/update_codec.h"
#include "common/config/yaml_reader.h"
#include "server/frame_store.h"

namespace sd {
namespace {

// The dashboard shows camera images to whoever has the token, over a port that may be
// tunnelled or bound beyond loopback: long enough that guessing is hopeless.

// The update keys of `section` (the file's root or one device), over `policy`'s values.
Status ReadUpdatePolicy(const YamlReader& section, UpdatePolicy* policy) {
  std::string encoding = UpdateEncodingName(policy->encoding);
  SD_RETURN_IF_ERROR(section.Get("update_encoding", &encoding));
  SD_RETURN_IF_ERROR(section.Get("update_fraction", &policy->sparse_fraction));
  SD_RETURN_IF_ERROR(section.Get("update_zstd", &policy->zstd));
  StatusOr<UpdateEncoding> parsed = ParseUpdateEncoding(encoding);
  if (!parsed.ok()) return section.Error("update_encoding", "must be full_fp32, full_fp16, sparse or int8");
  policy->encoding = *parsed;
  return section.Check(policy->Validate(), {{"sparse_fraction", "update_fraction"}});
}

// The keys of one retention section over `bounds`' values.
Status ReadRetentionBounds(const YamlReader& section, RetentionBounds* bounds) {
  SD_RETURN_IF_ERROR(section.Get("max_frames", &bounds->max_frames));
  SD_RETURN_IF_ERROR(section.Get("max_bytes", &bounds->max_bytes));
  SD_RETURN_IF_ERROR(section.Get("max_age_s", &bounds->max_age_s));
  return section.Check(bounds->Validate());
}

Status ReadStorage(const YamlReader& root, StorageOptions* storage) {
  SD_ASSIGN_OR_RETURN(YamlReader section, root.Child("storage"));
  std::string backend = "sqlite";
  SD_RETURN_IF_ERROR(section.Get("backend", &backend));
  auto parsed = ParseStorageBackend(backend);
  if (!parsed.ok()) return section.Error("backend", parsed.status().message());
  storage->backend = *parsed;
  SD_RETURN_IF_ERROR(section.Get("dsn", &storage->postgres.dsn));
  SD_RETURN_IF_ERROR(section.Get("password_file", &storage->postgres.password_file));
  SD_RETURN_IF_ERROR(section.Get("password_env", &storage->postgres.password_env));
  SD_RETURN_IF_ERROR(section.Get("connections", &storage->postgres.connections));
  SD_RETURN_IF_ERROR(section.Get("connect_timeout_s", &storage->postgres.connect_timeout_s));
  SD_RETURN_IF_ERROR(section.Get("blobs", &storage->blobs));
  SD_RETURN_IF_ERROR(section.Get("replica", &storage->replica));
  SD_RETURN_IF_ERROR(section.Get("lease_ttl_s", &storage->lease_ttl_s));
  return section.Check(storage->Validate());
}

Status ReadRetention(const YamlReader& root, ServerConfig* c) {
  SD_ASSIGN_OR_RETURN(YamlReader retention, root.Child("retention"));
  SD_RETURN_IF_ERROR(ReadRetentionBounds(retention, &c->retention));
  SD_ASSIGN_OR_RETURN(YamlReader devices, retention.Child("devices"));
  for (const std::string& id : devices.Keys()) {
    if (!IsValidDeviceId(id)) return devices.Error(id, "device ids are 1-64 characters of A-Z a-z 0-9 _ . -");
    SD_ASSIGN_OR_RETURN(YamlReader device, devices.Child(id));
    RetentionBounds own = c->retention;
    SD_RETURN_IF_ERROR(ReadRetentionBounds(device, &own));
    c->device_retention[id] = own;
  }
  return Status::Ok();
}

// `privacy: required | optional` of `section`; absent: `otherwise`.
StatusOr<bool> ReadPrivacyPolicy(const YamlReader& section, bool otherwise) {
  std::string policy = otherwise ? "required" : "optional";
  SD_RETURN_IF_ERROR(section.Get("privacy", &policy));
  if (policy != "required" && policy != "optional") return section.Error("privacy", "must be required or optional");
  return policy == "required";
}

Status ReadDevices(const YamlReader& root, ServerConfig* c) {
  SD_ASSIGN_OR_RETURN(c->privacy_required_all, ReadPrivacyPolicy(root, false));
  SD_RETURN_IF_ERROR(root.Get("devices_file", &c->devices_file));
  SD_RETURN_IF_ERROR(root.Get("devices_file_poll_s", &c->devices_file_poll_s));
  SD_ASSIGN_OR_RETURN(YamlReader devices, root.Child("devices"));
  // A map of device id -> {token: ...}: ids are keys, so duplicates cannot happen.
  for (const std::string& id : devices.Keys()) {
    // Ids become directory names in the store.
    if (!IsValidDeviceId(id)) return devices.Error(id, "device ids are 1-64 characters of A-Z a-z 0-9 _ . -");
    SD_ASSIGN_OR_RETURN(YamlReader device, devices.Child(id));
    std::string token;
    SD_RETURN_IF_ERROR(device.Require("token", &token));
    if (token.size() < 8) return device.Error("token", "must be at least 8 characters");
    c->device_tokens[id] = token;
    SD_ASSIGN_OR_RETURN(const bool required, ReadPrivacyPolicy(device, c->privacy_required_all));
    if (required) c->privacy_required.insert(id);
    if (device.Has("update_encoding") || device.Has("update_fraction") || device.Has("update_zstd")) {
      UpdatePolicy own = c->updates;
      SD_RETURN_IF_ERROR(ReadUpdatePolicy(device, &own));
      c->device_updates[id] = own;
    }
  }
  return Status::Ok();
}

// `grouping.mode`, as GroupingOptions::automatic: config (false) or auto (true).
StatusOr<bool> ParseGroupingMode(const std::string& name) {
  if (name == "config") return false;
  if (name == "auto") return true;
  return Status::InvalidArgument("must be config or auto");
}

// `grouping.start`, as GroupingOptions::start_together: together (true) or alone (false).
StatusOr<bool> ParseGroupingStart(const std::string& name) {
  if (name == "together") return true;
  if (name == "alone") return false;
  return Status::InvalidArgument("must be together or alone");
}

Status ReadGroups(const YamlReader& root, ServerConfig* c) {
  SD_ASSIGN_OR_RETURN(YamlReader groups, root.Child("groups"));
  std::map<std::string, std::string> group_of;
  for (const std::string& name : groups.Keys()) {
    if (!IsValidDeviceId(name)) return groups.Error(name, "group names are 1-64 characters of A-Z a-z 0-9 _ . -");
    std::vector<std::string> members;
    SD_RETURN_IF_ERROR(groups.Require(name, &members));
    if (members.size() < 2) return groups.Error(name, "a group shares a student among at least 2 devices");
    for (const std::string& member : members) {
      if (!IsValidDeviceId(member))
        return groups.Error(name, "'" + member.substr(0, 80) + "' is not a device id (1-64 characters of A-Z a-z 0-9 _ . -)");
      auto [it, fresh] = group_of.emplace(member, name);
      if (!fresh) return groups.Error(name, "device " + member + " is in group " + it->second + " already");
    }
    c->groups[name] = members;
  }
  SD_ASSIGN_OR_RETURN(YamlReader grouping, root.Child("grouping"));
  std::string mode = "config";
  GroupingOptions& g = c->grouping;
  SD_RETURN_IF_ERROR(grouping.Get("mode", &mode));
  SD_RETURN_IF_ERROR(grouping.Get("every_s", &g.every_s));
  SD_RETURN_IF_ERROR(grouping.Get("margin", &g.margin));
  SD_RETURN_IF_ERROR(grouping.Get("min_heldout_frames", &g.min_heldout_frames));
  SD_RETURN_IF_ERROR(grouping.Get("heldout_frames", &g.heldout_frames));
  std::string start = g.start_together ? "together" : "alone";
  SD_RETURN_IF_ERROR(grouping.Get("start", &start));
  StatusOr<bool> together = ParseGroupingStart(start);
  if (!together.ok()) return grouping.Error("start", together.status().message());
  g.start_together = *together;
  StatusOr<bool> automatic = ParseGroupingMode(mode);
  if (!automatic.ok()) return grouping.Error("mode", automatic.status().message());
  g.automatic = *automatic;
  return grouping.Check(g.Validate());
}

// What trains on its own: each group once, and each configured device in no group.
size_t TrainingUnits(const ServerConfig& c) {
  size_t units = c.groups.size();
  for (const auto& [id, token] : c.device_tokens) units += GroupOf(c, id).empty() ? 1 : 0;
  return units;
}

// training.workers and training.threads_per_worker, 0 or absent: DefaultTrainingPool. The top
// level `threads` of earlier releases (the one training thread's libtorch threads) still reads
// as threads_per_worker, so old files keep their meaning on the machine they were written for.
Status ReadTrainingPool(const YamlReader& root, const YamlReader& training, ServerConfig* c) {
  int workers = 0, threads_per_worker = 0;
  SD_RETURN_IF_ERROR(training.Get("workers", &workers));
  SD_RETURN_IF_ERROR(training.Get("threads_per_worker", &threads_per_worker));
  if (root.Has("threads")) {
    if (training.Has("threads_per_worker"))
      return root.Error("threads", "is the old name of training.threads_per_worker; give only that one");
    SD_RETURN_IF_ERROR(root.Get("threads", &threads_per_worker));
    if (threads_per_worker < 1) return root.Error("threads", "must be >= 1");
  }
  if (workers < 0) return training.Error("workers", "must be >= 1 (0 or absent: one per core)");
  if (threads_per_worker < 0)
    return training.Error("threads_per_worker", "must be >= 1 (0 or absent: the cores shared among the workers)");
  // Devices enrolled through the file may come and go: size the pool for the machine then.
  const size_t units = c->devices_file.empty() ? TrainingUnits(*c) : 0;
  DefaultTrainingPool(std::thread::hardware_concurrency(), units, &workers, &threads_per_worker);
  c->training_workers = workers;
  c->threads_per_worker = threads_per_worker;
  return Status::Ok();
}

Status ReadSchedulePolicy(const YamlReader& training, SchedulerOptions* schedule) {
  std::string policy = SchedulePolicyName(schedule->policy);
  SD_RETURN_IF_ERROR(training.Get("schedule", &policy));
  SD_RETURN_IF_ERROR(training.Get("max_skips", &schedule->max_skips));
  StatusOr<SchedulePolicy> parsed = ParseSchedulePolicy(policy);
  if (!parsed.ok()) return training.Error("schedule", parsed.status().message());
  schedule->policy = *parsed;
  return training.Check(schedule->Validate());
}

// ServerConfig's fields whose key is not the field's name at the top of the file.
const std::map<std::string, std::string> kServerConfigKeys = {
    {"admin_token", "http.admin_token"},
    {"admin_token_file", "http.admin_token_file"},
    {"device_tokens", "devices"},
    {"grouping", "grouping.mode"},
    {"labeler_workers", "labeler.workers"},
    {"labeler_queue", "labeler.queue"},
    {"labeler_max_queue_seconds", "labeler.max_queue_seconds"},
    {"class_names", "student.class_names"},
    {"validation_every", "training.validation_every"},
    {"validation_frames", "training.validation_frames"},
    {"memory_frames", "training.memory_frames"},
    {"longterm_validation_frames", "training.longterm_validation_frames"},
    {"memory_history", "training.memory_history"},
    {"decoded_cache_mb", "training.decoded_cache_mb"},
};

Status Parse(const YamlReader& root, ServerConfig* c) {
  SD_RETURN_IF_ERROR(root.Get("listen", &c->listen));
  SD_RETURN_IF_ERROR(ReadHttpOptions(root, &c->http));
  SD_ASSIGN_OR_RETURN(YamlReader http, root.Child("http"));
  SD_RETURN_IF_ERROR(http.Get("admin_token", &c->admin_token));
  SD_RETURN_IF_ERROR(http.Get("admin_token_file", &c->admin_token_file));
  SD_RETURN_IF_ERROR(root.Get("storage_dir", &c->storage_dir));
  SD_RETURN_IF_ERROR(ReadStorage(root, &c->storage));
  SD_RETURN_IF_ERROR(root.Get("max_connection_age_s", &c->max_connection_age_s));
  SD_RETURN_IF_ERROR(root.Get("max_message_bytes", &c->max_message_bytes));
  SD_RETURN_IF_ERROR(root.Get("update_chunk_bytes", &c->update_chunk_bytes));
  SD_RETURN_IF_ERROR(ReadUpdatePolicy(root, &c->updates));
  SD_RETURN_IF_ERROR(root.Get("init_weights", &c->init_weights));
  SD_RETURN_IF_ERROR(root.Get("model_seed", &c->model_seed));

  SD_ASSIGN_OR_RETURN(YamlReader tls, root.Child("tls"));
  SD_ASSIGN_OR_RETURN(c->tls.cert, ReadFileAtKey(tls, "cert"));
  SD_ASSIGN_OR_RETURN(c->tls.key, ReadFileAtKey(tls, "key"));
  SD_ASSIGN_OR_RETURN(c->tls.client_ca, ReadFileAtKey(tls, "client_ca"));
  SD_RETURN_IF_ERROR(tls.Check(c->tls.Validate()));

  SD_RETURN_IF_ERROR(ReadDevices(root, c));
  SD_RETURN_IF_ERROR(ReadRetention(root, c));
  SD_RETURN_IF_ERROR(ReadGroups(root, c));

  SD_ASSIGN_OR_RETURN(YamlReader teacher, root.Child("teacher"));
  SD_RETURN_IF_ERROR(ReadTeacherOptions(teacher, &c->teacher));
  SD_ASSIGN_OR_RETURN(YamlReader labeler, root.Child("labeler"));
  SD_RETURN_IF_ERROR(labeler.Get("workers", &c->labeler_workers));
  SD_RETURN_IF_ERROR(labeler.Get("queue", &c->labeler_queue));
  SD_RETURN_IF_ERROR(labeler.Get("stored_image_max_width", &c->stored_image_max_width));
  SD_RETURN_IF_ERROR(labeler.Get("max_queue_seconds", &c->labeler_max_queue_seconds));
  SD_RETURN_IF_ERROR(labeler.Get("share_capacity", &c->label_budget.share));
  SD_RETURN_IF_ERROR(labeler.Get("target_utilisation", &c->label_budget.utilisation));
  SD_RETURN_IF_ERROR(labeler.Get("min_budget_per_minute", &c->label_budget.min_per_minute));
  SD_RETURN_IF_ERROR(labeler.Check(c->label_budget.Validate()));

  SD_ASSIGN_OR_RETURN(YamlReader limits, root.Child("limits"));
  SD_RETURN_IF_ERROR(limits.Get("max_image_width", &c->limits.image.max_width));
  SD_RETURN_IF_ERROR(limits.Get("max_image_height", &c->limits.image.max_height));
  SD_RETURN_IF_ERROR(limits.Get("max_image_pixels", &c->limits.image.max_pixels));
  SD_RETURN_IF_ERROR(limits.Get("max_sequence_gap", &c->limits.max_sequence_gap));
  SD_RETURN_IF_ERROR(limits.Get("full_model_burst", &c->limits.full_model_burst));
  SD_RETURN_IF_ERROR(limits.Get("full_model_refill_s", &c->limits.full_model_refill_s));
  SD_RETURN_IF_ERROR(limits.Get("stream_backlog", &c->limits.stream_backlog));
  SD_RETURN_IF_ERROR(limits.Get("max_embedding", &c->limits.max_embedding));
  SD_RETURN_IF_ERROR(limits.Check(c->limits.Validate(), {{"image.max_width", "max_image_width"},
                                                          {"image.max_height", "max_image_height"},
                                                          {"image.max_pixels", "max_image_pixels"}}));

  SD_ASSIGN_OR_RETURN(YamlReader student, root.Child("student"));
  SD_RETURN_IF_ERROR(student.Get("class_names", &c->class_names));
  SD_RETURN_IF_ERROR(ReadStudentArchitecture(student, &c->student));

  SD_ASSIGN_OR_RETURN(YamlReader training, root.Child("training"));
  SD_RETURN_IF_ERROR(training.Get("iterations", &c->round.iterations));
  SD_RETURN_IF_ERROR(training.Get("replay_frames", &c->round.replay_frames));
  SD_RETURN_IF_ERROR(training.Get("max_map50_drop", &c->round.max_map50_drop));
  SD_RETURN_IF_ERROR(training.Get("min_validation_frames", &c->round.min_validation_frames));
  SD_RETURN_IF_ERROR(training.Get("validation_every", &c->validation_every));
  SD_RETURN_IF_ERROR(training.Get("validation_frames", &c->validation_frames));
  SD_RETURN_IF_ERROR(training.Get("memory_frames", &c->memory_frames));
  SD_RETURN_IF_ERROR(training.Get("longterm_validation_frames", &c->longterm_validation_frames));
  SD_RETURN_IF_ERROR(training.Get("memory_history", &c->memory_history));
  SD_RETURN_IF_ERROR(training.Get("decoded_cache_mb", &c->decoded_cache_mb));
  SD_RETURN_IF_ERROR(training.Get("max_forgetting", &c->round.max_forgetting));
  SD_RETURN_IF_ERROR(training.Get("trigger_frames", &c->schedule.min_new_frames));
  SD_RETURN_IF_ERROR(training.Get("trigger_seconds", &c->schedule.max_wait_s));
  SD_RETURN_IF_ERROR(training.Get("background", &c->train_in_background));
  SD_RETURN_IF_ERROR(ReadTrainingPool(root, training, c));
  SD_RETURN_IF_ERROR(ReadSchedulePolicy(training, &c->schedule));
  // The round's own fields; its trainer (the optimizer's keys) is checked as it is read below.
  SD_RETURN_IF_ERROR(training.Check(c->round.Validate()));
  SD_ASSIGN_OR_RETURN(YamlReader optimizer, training.Child("optimizer"));
  c->round.trainer.total_steps = c->round.iterations;
  c->round.trainer.warmup_steps = 10;
  SD_RETURN_IF_ERROR(ReadTrainerOptions(optimizer, &c->round.trainer));
  SD_RETURN_IF_ERROR(root.Check(c->Validate(), kServerConfigKeys));
  return root.CheckAllKeysUsed();
}

}  // namespace

Status ServerConfig::Validate() const {
  auto invalid = [](const std::string& problem) { return Status::InvalidArgument(problem); };
  if (!admin_token.empty() && admin_token.size() < kMinAdminTokenChars)
    return invalid("admin_token: must be at least " + std::to_string(kMinAdminTokenChars) +
                   " characters (empty: no dashboard)");
  if (!admin_token.empty() && !admin_token_file.empty())
    return invalid("admin_token_file: set admin_token or admin_token_file, not both");
  if (max_message_bytes < (64 << 10)) return invalid("max_message_bytes: must be at least 65536");
  if (update_chunk_bytes < 1024 || update_chunk_bytes > max_message_bytes / 2)
    return invalid("update_chunk_bytes: must be in [1024, max_message_bytes / 2]");
  if (!(devices_file_poll_s >= 0)) return invalid("devices_file_poll_s: must be >= 0 (0: on SIGHUP only)");
  if (!(max_connection_age_s >= 0)) return invalid("max_connection_age_s: must be >= 0 (0: never)");
  if (storage.backend == StorageBackend::kPostgres) {
    // Replicas share devices through the database: enrolment lives there too. Groups of
    // server.yaml are the same on every replica; automatic ones are each server's own
    // decision, which replicas would make apart.
    if (!devices_file.empty())
      return invalid("devices_file: with storage.backend postgres devices are enrolled in the database "
                     "(streamdistill-admin enrol --dsn); remove devices_file");
    if (grouping.automatic)
      return invalid("grouping: mode auto is not supported with storage.backend postgres yet (each replica would "
                     "group apart); list the shared students in `groups` (mode config)");
  }
  // With postgres the devices are enrolled in the database (streamdistill-admin enrol --dsn),
  // so a replica may start before the first one is.
  if (device_tokens.empty() && devices_file.empty() && storage.backend != StorageBackend::kPostgres)
    return invalid("device_tokens: at least one device with a token is required (or a devices_file)");
  if (grouping.automatic && !groups.empty())
    return invalid("grouping: auto forms the groups itself: leave `groups` out (it is for mode config)");
  if (labeler_workers < 1) return invalid("labeler_workers: must be >= 1");
  if (labeler_queue < 1) return invalid("labeler_queue: must be >= 1");
  if (!(labeler_max_queue_seconds >= 0) || !std::isfinite(labeler_max_queue_seconds))
    return invalid("labeler_max_queue_seconds: must be >= 0 (0: labeler.queue frames alone)");
  if (!class_names.empty() && static_cast<int>(class_names.size()) != student.num_classes)
    return invalid("class_names: must name each of the " + std::to_string(student.num_classes) + " classes");
  for (const std::string& name : class_names)
    if (name.empty()) return invalid("class_names: a name must not be empty");
  if (validation_every < 2) return invalid("validation_every: must be >= 2");
  if (validation_frames < 1) return invalid("validation_frames: must be >= 1");
  if (memory_frames < 0) return invalid("memory_frames: must be >= 0 (0: no long-term replay)");
  if (longterm_validation_frames < 0)
    return invalid("longterm_validation_frames: must be >= 0 (0: no forgetting check)");
  if (memory_history < 1) return invalid("memory_history: must be >= 1");
  if (decoded_cache_mb < 0 || decoded_cache_mb > kMaxDecodedCacheMb)
    return invalid("decoded_cache_mb: must be in [0, " + std::to_string(kMaxDecodedCacheMb) +
                   "] MiB (0: frames are decoded for every round)");
  return Status::Ok();
}

Status TlsServerOptions::Validate() const {
  if (cert.empty() != key.empty()) return Status::InvalidArgument("cert: cert and key must be given together");
  if (!client_ca.empty() && cert.empty()) return Status::InvalidArgument("client_ca: needs cert and key");
  return Status::Ok();
}

Status UpdatePolicy::Validate() const {
  if (!(sparse_fraction > 0 && sparse_fraction < 1)) return Status::InvalidArgument("sparse_fraction: must be in (0, 1)");
  return Status::Ok();
}

Status ServerLimits::Validate() const {
  Status image_valid = image.Validate();
  if (!image_valid.ok()) return Status::InvalidArgument("image." + image_valid.message());
  if (max_sequence_gap < 1) return Status::InvalidArgument("max_sequence_gap: must be >= 1");
  if (full_model_burst < 1) return Status::InvalidArgument("full_model_burst: must be >= 1");
  if (!(full_model_refill_s >= 0)) return Status::InvalidArgument("full_model_refill_s: must be >= 0");
  if (stream_backlog < 8) return Status::InvalidArgument("stream_backlog: must be >= 8");
  if (max_embedding < 0) return Status::InvalidArgument("max_embedding: must be >= 0");
  return Status::Ok();
}

Status GroupingOptions::Validate() const {
  if (!(every_s > 0)) return Status::InvalidArgument("every_s: must be > 0");
  if (!(margin >= 0 && margin < 1)) return Status::InvalidArgument("margin: must be in [0, 1)");
  if (min_heldout_frames < 1) return Status::InvalidArgument("min_heldout_frames: must be >= 1");
  if (heldout_frames < min_heldout_frames)
    return Status::InvalidArgument("heldout_frames: must be >= min_heldout_frames");
  return Status::Ok();
}

void DefaultTrainingPool(unsigned cores, size_t devices, int* workers, int* threads_per_worker) {
  const int usable_cores = std::max(1, static_cast<int>(cores));
  if (*workers <= 0) {
    *workers = usable_cores;
    if (devices > 0) *workers = std::min<int>(usable_cores, static_cast<int>(devices));
  }
  if (*threads_per_worker <= 0) *threads_per_worker = std::max(1, usable_cores / *workers);
}

std::string GroupOf(const ServerConfig& config, const std::string& device_id) {
  for (const auto& [name, members] : config.groups)
    if (std::find(members.begin(), members.end(), device_id) != members.end()) return name;
  return "";
}

const UpdatePolicy& UpdatesFor(const ServerConfig& config, const std::string& device_id) {
  auto it = config.device_updates.find(device_id);
  return it == config.device_updates.end() ? config.updates : it->second;
}

double RoundSparseFraction(const UpdatePolicy& policy) {
  return policy.encoding == UpdateEncoding::kSparse ? policy.sparse_fraction : 0;
}

const RetentionBounds& RetentionFor(const ServerConfig& config, const std::string& device_id) {
  auto it = config.device_retention.find(device_id);
  return it == config.device_retention.end() ? config.retention : it->second;
}

StatusOr<ServerConfig> ParseServerConfig(const std::string& yaml_text, const std::string& name) {
  return LoadYamlConfig<ServerConfig>(YamlReader::FromString(yaml_text, name), &Parse);
}

StatusOr<ServerConfig> LoadServerConfig(const std::string& path) {
  return LoadYamlConfig<ServerConfig>(YamlReader::FromFile(path), &Parse);
}

}  // namespace sd
