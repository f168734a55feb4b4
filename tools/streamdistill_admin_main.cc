// streamdistill-admin: edits the server's devices file (server/devices_file.h), which a
// running server reloads by itself, or with --dsn the enrolled devices of a cluster's
// PostgreSQL (storage.backend postgres, docs/scale-out.md), which every replica reloads. `enrol` makes a device with a new random token and prints
// the token once (only its salted hash is stored); `enrol --rotate` gives an enrolled device a
// new one; `disable` / `enable` flip a device; `hash-token` hashes a token read from stdin for
// a file kept by other means. One admin at a time: each command rewrites the whole file.
//
// `list`, `pin`, `rollback`, `unpin`, `train`, `pause` and `resume` talk to a running server's
// HTTP port instead (server/dashboard.h) with its admin token, read from --admin-token-file or
// STREAMDISTILL_ADMIN_TOKEN, never from the command line, where `ps` would show it.
//
// `health` asks a server's gRPC health service (exit 0: SERVING), the images' health check.
#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "common/base/env.h"
#include "common/base/token_hash.h"
#include "common/link/health_probe.h"
#include "server/devices_file.h"
#include "server/frame_store.h"
#include "server/pg_enrolment.h"
#include "server/pg_schema.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

constexpr size_t kTokenBytes = 24;  // 48 hex characters: as `openssl rand -hex 24`

int Fail(const Status& status) {
  std::fprintf(stderr, "streamdistill-admin: error: %s\n", status.message().c_str());
  return 1;
}

// Where the enrolled devices live: the devices file, or a cluster's database.
struct Enrolment {
  std::string path;  // --devices-file
  PgOptions postgres;  // --dsn, --password-file, --password-env
  std::string name() const { return path.empty() ? "postgres '" + RedactDsn(postgres.dsn) + "'" : path; }
};

// The enrolled devices; none when the file does not exist yet.
StatusOr<EnrolledDevices> Load(const Enrolment& where) {
  if (!where.postgres.dsn.empty()) {
    SD_ASSIGN_OR_RETURN(std::unique_ptr<PgPool> pool, PgPool::Connect(where.postgres));
    SD_RETURN_IF_ERROR(MigratePgSchema(*pool));
    return PgEnrolmentSource(pool.get())->Read();
  }
  auto devices = ReadDevicesFile(Env::Default(), where.path);
  if (!devices.ok() && devices.status().code() == Status::Code::kNotFound) return EnrolledDevices();
  return devices;
}

Status Write(const Enrolment& where, const EnrolledDevices& devices) {
  if (!where.postgres.dsn.empty()) {
    SD_ASSIGN_OR_RETURN(std::unique_ptr<PgPool> pool, PgPool::Connect(where.postgres));
    return WritePgEnrolment(*pool, devices);
  }
  return WriteDevicesFile(Env::Default(), where.path, devices);
}

int Enrol(const Enrolment& where, const std::string& id, bool rotate, bool disabled) {
  if (!IsValidDeviceId(id)) return Fail(Status::InvalidArgument("device ids are 1-64 characters of A-Z a-z 0-9 _ . -"));
  auto devices = Load(where);
  if (!devices.ok()) return Fail(devices.status());
  const bool enrolled = devices->count(id) > 0;
  if (enrolled && !rotate)
    return Fail(Status::AlreadyExists(where.name() + ": device " + id + " is enrolled (--rotate gives it a new token)"));
  if (!enrolled && rotate) return Fail(Status::NotFound(where.name() + ": device " + id + " is not enrolled"));
  auto random = RandomBytes(kTokenBytes);
  if (!random.ok()) return Fail(random.status());
  const std::string token = HexEncode(*random);
  auto hash = HashToken(token);
  if (!hash.ok()) return Fail(hash.status());
  EnrolledDevice& device = (*devices)[id];
  device.token = *hash;
  if (!rotate) device.enabled = !disabled;
  const Status written = Write(where, *devices);
  if (!written.ok()) return Fail(written);
  std::fprintf(stderr, "device %s %s; its token (shown only now; put it in the edge's `token`):\n", id.c_str(),
               rotate ? "has a new token" : (disabled ? "enrolled, disabled" : "enrolled"));
  std::printf("%s\n", token.c_str());
  return 0;
}

int SetEnabled(const Enrolment& where, const std::string& id, bool enabled) {
  auto devices = Load(where);
  if (!devices.ok()) return Fail(devices.status());
  auto it = devices->find(id);
  if (it == devices->end()) return Fail(Status::NotFound(where.name() + ": device " + id + " is not enrolled"));
  it->second.enabled = enabled;
  const Status written = Write(where, *devices);
  if (!written.ok()) return Fail(written);
  std::fprintf(stderr, "device %s %s\n", id.c_str(), enabled ? "enabled" : "disabled");
  return 0;
}

// The server's HTTP port, as --server, --admin-token-file and --ca-cert give it.
struct ServerAddress {
  std::string url = "http://127.0.0.1:9464";
  std::string token_file;
  std::string ca_cert;
};

StatusOr<std::string> AdminToken(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    SD_ASSIGN_OR_RETURN(token, Env::Default()->ReadFile(token_file, 4096));
  } else if (const char* from_env = std::getenv("STREAMDISTILL_ADMIN_TOKEN")) {
    token = from_env;
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty())
    return Status::InvalidArgument("no admin token: --admin-token-file FILE or STREAMDISTILL_ADMIN_TOKEN");
  return token;
}

// GET (an empty `action`) /api/devices, or POST /api/devices/<device>/<action> with `body`:
// the response's JSON, or the server's message as the error.
StatusOr<nlohmann::json> CallServer(const ServerAddress& server, const std::string& device, const std::string& action,
                                    const std::string& body = "") {
  SD_ASSIGN_OR_RETURN(const std::string token, AdminToken(server.token_file));
  httplib::Client client(server.url);
  if (!client.is_valid()) return Status::InvalidArgument("--server " + server.url + ": not http(s)://host:port");
  if (!server.ca_cert.empty()) client.set_ca_cert_path(server.ca_cert.c_str());
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  const httplib::Headers headers = {{"Authorization", "Bearer " + token}};
  const std::string path = action.empty() ? "/api/devices" : "/api/devices/" + device + "/" + action;
  httplib::Result result = action.empty() ? client.Get(path, headers) : client.Post(path, headers, body, "application/json");
  if (!result)
    return Status::Unavailable(server.url + path + ": " + httplib::to_string(result.error()) +
                               (server.url.rfind("https", 0) == 0 ? " (--ca-cert FILE for the server's CA)" : ""));
  if (result->status != 200) {
    std::string message = result->body;
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Status::Unavailable(path + ": HTTP " + std::to_string(result->status) + ": " + message);
  }
  nlohmann::json parsed = nlohmann::json::parse(result->body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Status::DataLoss(path + ": the answer is not JSON");
  return parsed;
}

std::string VersionText(const nlohmann::json& version) { return version.is_null() ? "-" : "v" + version.dump(); }

// One device as a line: what it serves, what is published, and the admins' overrides.
std::string DeviceLine(const nlohmann::json& row) {
  return row.value("id", "?") + "  serves " + VersionText(row["served_version"]) + ", newest v" +
         row["version"].dump() + (row["pinned_version"].is_null() ? "" : ", pinned to " + VersionText(row["pinned_version"])) +
         (row.value("paused", false) ? ", training paused" : "") + (row.value("connected", false) ? ", connected" : "") +
         ", " + row["frames"].dump() + " frames";
}

int List(const ServerAddress& server) {
  auto devices = CallServer(server, "", "");
  if (!devices.ok()) return Fail(devices.status());
  for (const auto& row : (*devices)["devices"]) std::printf("%s\n", DeviceLine(row).c_str());
  return 0;
}

int Act(const ServerAddress& server, const std::string& device, const std::string& action, const std::string& body = "") {
  auto row = CallServer(server, device, action, body);
  if (!row.ok()) return Fail(row.status());
  std::printf("%s: done; %s\n", action.c_str(), DeviceLine(*row).c_str());
  return 0;
}

int HashStdin() {
  std::string token;
  std::getline(std::cin, token);
  if (token.size() < 8) return Fail(Status::InvalidArgument("a token must be at least 8 characters"));
  auto hash = HashToken(token);
  if (!hash.ok()) return Fail(hash.status());
  std::printf("%s\n", FormatTokenHash(*hash).c_str());
  return 0;
}

// Prints the server's health status; 0 when SERVING, 1 otherwise (no answer included).
int Health(HealthProbeOptions options, const std::string& ca_cert_file) {
  if (!ca_cert_file.empty()) {
    StatusOr<std::string> pem = Env::Default()->ReadFile(ca_cert_file, 1 << 20);
    if (!pem.ok()) return Fail(pem.status().WithContext("--ca-cert"));
    options.ca_cert = *pem;
  }
  StatusOr<std::string> serving = ProbeHealth(options);
  if (!serving.ok()) return Fail(serving.status());
  std::printf("%s\n", serving->c_str());
  return *serving == "SERVING" ? 0 : 1;
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-admin: enrol, disable and re-key devices in the server's devices file; pin, roll "
               "back, train and pause devices on a running server"};
  app.require_subcommand(1);
  std::string device;
  bool rotate = false, disabled = false;
  CLI::App* enrol = app.add_subcommand("enrol", "enrol a device with a new random token, printed once");
  CLI::App* disable = app.add_subcommand("disable", "refuse a device (its open stream is closed)");
  CLI::App* enable = app.add_subcommand("enable", "accept a disabled device again");
  CLI::App* hash = app.add_subcommand("hash-token", "print the token_hash of a token read from stdin");
  sd::Enrolment where;
  for (CLI::App* command : {enrol, disable, enable}) {
    CLI::Option* file = command->add_option("--devices-file", where.path, "the server's devices_file");
    CLI::Option* dsn = command->add_option("--dsn", where.postgres.dsn,
                                           "a cluster's PostgreSQL (storage.dsn), instead of a devices file");
    file->excludes(dsn);
    command->add_option("--password-file", where.postgres.password_file, "with --dsn: file holding the password");
    command->add_option("--password-env", where.postgres.password_env, "with --dsn: variable holding the password");
    command->add_option("--device", device, "device id")->required();
    command->callback([file, dsn] {
      if (file->count() + dsn->count() == 0) throw CLI::RequiredError("--devices-file or --dsn");
    });
  }
  enrol->add_flag("--rotate", rotate, "give an enrolled device a new token (the old one stops working)");
  enrol->add_flag("--disabled", disabled, "enrol it disabled");

  sd::ServerAddress server;
  uint64_t version = 0;
  CLI::App* list = app.add_subcommand("list", "a running server's devices: versions, pins, pauses");
  CLI::App* pin = app.add_subcommand("pin", "deploy a stored version to a device and keep it there");
  CLI::App* rollback = app.add_subcommand("rollback", "pin a device to the version before the one it serves");
  CLI::App* unpin = app.add_subcommand("unpin", "end a pin: the device gets the newest version again");
  CLI::App* train = app.add_subcommand("train", "run the device's training round next");
  CLI::App* pause = app.add_subcommand("pause", "stop scheduling the device's training (frames are still stored)");
  CLI::App* resume = app.add_subcommand("resume", "schedule the device's training again");
  for (CLI::App* command : {list, pin, rollback, unpin, train, pause, resume}) {
    command->add_option("--server", server.url, "the server's HTTP port, http(s)://host:port")->capture_default_str();
    command->add_option("--admin-token-file", server.token_file,
                        "file holding http.admin_token (else the env var STREAMDISTILL_ADMIN_TOKEN)");
    command->add_option("--ca-cert", server.ca_cert, "CA certificate (PEM) to check an https server with");
    if (command != list) command->add_option("DEVICE", device, "device id")->required();
  }
  sd::HealthProbeOptions probe;
  std::string probe_ca_file;
  CLI::App* health = app.add_subcommand("health", "a server's gRPC health status: exit 0 when SERVING");
  health->add_option("--target", probe.target, "the server's gRPC address, host:port")->required();
  health->add_option("--service", probe.service, "a service name (e.g. streamdistill.v1.EdgeLink); empty: the server");
  health->add_option("--ca-cert", probe_ca_file, "CA certificate (PEM): TLS, the server checked against it");
  health->add_option("--timeout", probe.timeout_s, "seconds for the whole check")->check(CLI::PositiveNumber);
  pin->add_option("VERSION", version, "a stored version of the device")->required()->check(CLI::PositiveNumber);
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  if (health->parsed()) return sd::Health(probe, probe_ca_file);
  if (list->parsed()) return sd::List(server);
  if (pin->parsed()) return sd::Act(server, device, "pin", nlohmann::json{{"version", version}}.dump());
  for (CLI::App* command : {rollback, unpin, train, pause, resume})
    if (command->parsed()) return sd::Act(server, device, command->get_name());
  if (enrol->parsed()) return sd::Enrol(where, device, rotate, disabled);
  if (disable->parsed()) return sd::SetEnabled(where, device, false);
  if (enable->parsed()) return sd::SetEnabled(where, device, true);
  if (hash->parsed()) return sd::HashStdin();
  return 2;
}
