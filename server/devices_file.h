// The server's devices file (`devices_file:` in server.yaml): the devices enrolled at run
// time, each with a salted token hash and an enabled flag. The server reloads it on SIGHUP and
// when it changes (ServerCore::ReloadDevices); streamdistill-admin writes it.
//
//   devices:
//     cam7: {token_hash: "sha256$<salt-hex>$<hash-hex>", enabled: true}
//
// Plaintext tokens are refused here (`token:` is an error naming the line): the file is meant
// to be readable by operators and tools, so it holds no secret. server.yaml's inline
// `devices.<id>.token` still works for devices that never change.
#pragma once

#include <map>
#include <string>

#include "common/base/env.h"
#include "common/base/status.h"
#include "common/base/token_hash.h"

namespace sd {

struct EnrolledDevice {
  TokenHash token;
  bool enabled = true;
};
using EnrolledDevices = std::map<std::string, EnrolledDevice>;  // by device id

// InvalidArgument naming the file, the key and its line for anything malformed: a bad id
// (ids become directory names), a missing or malformed token_hash, a plaintext token, an
// unknown key.
StatusOr<EnrolledDevices> ParseDevicesFile(const std::string& yaml_text, const std::string& name);
// NotFound when the file does not exist.
StatusOr<EnrolledDevices> ReadDevicesFile(Env* env, const std::string& path);
// The file's text, devices in id order; the writer's comments are not kept.
std::string FormatDevicesFile(const EnrolledDevices& devices);
// Replaces the file atomically and durably (WriteFileDurably): the server never reads half.
Status WriteDevicesFile(Env* env, const std::string& path, const EnrolledDevices& devices);

}  // namespace sd
