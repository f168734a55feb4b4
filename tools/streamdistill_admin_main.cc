// streamdistill-admin: edits the server's devices file (server/devices_file.h), which a
// running server reloads by itself. `enrol` makes a device with a new random token and prints
// the token once (only its salted hash is stored); `enrol --rotate` gives an enrolled device a
// new one; `disable` / `enable` flip a device; `hash-token` hashes a token read from stdin for
// a file kept by other means. One admin at a time: each command rewrites the whole file.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "common/env.h"
#include "common/token_hash.h"
#include "server/devices_file.h"
#include "server/frame_store.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

constexpr size_t kTokenBytes = 24;  // 48 hex characters: as `openssl rand -hex 24`

int Fail(const Status& status) {
  std::fprintf(stderr, "streamdistill-admin: error: %s\n", status.message().c_str());
  return 1;
}

// The file's devices; none when it does not exist yet.
StatusOr<EnrolledDevices> Load(const std::string& path) {
  auto devices = ReadDevicesFile(Env::Default(), path);
  if (!devices.ok() && devices.status().code() == Status::Code::kNotFound) return EnrolledDevices();
  return devices;
}

int Enrol(const std::string& path, const std::string& id, bool rotate, bool disabled) {
  if (!IsValidDeviceId(id)) return Fail(Status::InvalidArgument("device ids are 1-64 characters of A-Z a-z 0-9 _ . -"));
  auto devices = Load(path);
  if (!devices.ok()) return Fail(devices.status());
  const bool enrolled = devices->count(id) > 0;
  if (enrolled && !rotate) return Fail(Status::AlreadyExists(path + ": device " + id + " is enrolled (--rotate gives it a new token)"));
  if (!enrolled && rotate) return Fail(Status::NotFound(path + ": device " + id + " is not enrolled"));
  auto random = RandomBytes(kTokenBytes);
  if (!random.ok()) return Fail(random.status());
  const std::string token = HexEncode(*random);
  auto hash = HashToken(token);
  if (!hash.ok()) return Fail(hash.status());
  EnrolledDevice& device = (*devices)[id];
  device.token = *hash;
  if (!rotate) device.enabled = !disabled;
  const Status written = WriteDevicesFile(Env::Default(), path, *devices);
  if (!written.ok()) return Fail(written);
  std::fprintf(stderr, "device %s %s; its token (shown only now; put it in the edge's `token`):\n", id.c_str(),
               rotate ? "has a new token" : (disabled ? "enrolled, disabled" : "enrolled"));
  std::printf("%s\n", token.c_str());
  return 0;
}

int SetEnabled(const std::string& path, const std::string& id, bool enabled) {
  auto devices = Load(path);
  if (!devices.ok()) return Fail(devices.status());
  auto it = devices->find(id);
  if (it == devices->end()) return Fail(Status::NotFound(path + ": device " + id + " is not enrolled"));
  it->second.enabled = enabled;
  const Status written = WriteDevicesFile(Env::Default(), path, *devices);
  if (!written.ok()) return Fail(written);
  std::fprintf(stderr, "device %s %s\n", id.c_str(), enabled ? "enabled" : "disabled");
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

}  // namespace
}  // namespace sd

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-admin: enrol, disable and re-key devices in the server's devices file"};
  app.require_subcommand(1);
  std::string devices_file, device;
  bool rotate = false, disabled = false;
  CLI::App* enrol = app.add_subcommand("enrol", "enrol a device with a new random token, printed once");
  CLI::App* disable = app.add_subcommand("disable", "refuse a device (its open stream is closed)");
  CLI::App* enable = app.add_subcommand("enable", "accept a disabled device again");
  CLI::App* hash = app.add_subcommand("hash-token", "print the token_hash of a token read from stdin");
  for (CLI::App* command : {enrol, disable, enable}) {
    command->add_option("--devices-file", devices_file, "the server's devices_file")->required();
    command->add_option("--device", device, "device id")->required();
  }
  enrol->add_flag("--rotate", rotate, "give an enrolled device a new token (the old one stops working)");
  enrol->add_flag("--disabled", disabled, "enrol it disabled");
  if (auto exit_code = sd::ParseToolCommandLine(app, argc, argv)) return *exit_code;
  if (enrol->parsed()) return sd::Enrol(devices_file, device, rotate, disabled);
  if (disable->parsed()) return sd::SetEnabled(devices_file, device, false);
  if (enable->parsed()) return sd::SetEnabled(devices_file, device, true);
  if (hash->parsed()) return sd::HashStdin();
  return 2;
}
