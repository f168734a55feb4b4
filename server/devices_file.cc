#include "server/devices_file.h"

#include "common/config/yaml_reader.h"
#include "server/frame_store.h"

namespace sd {

StatusOr<EnrolledDevices> ParseDevicesFile(const std::string& yaml_text, const std::string& name) {
  SD_ASSIGN_OR_RETURN(YamlReader root, YamlReader::FromString(yaml_text, name));
  SD_ASSIGN_OR_RETURN(YamlReader devices, root.Child("devices"));
  EnrolledDevices out;
  for (const std::string& id : devices.Keys()) {
    if (!IsValidDeviceId(id)) return devices.Error(id, "device ids are 1-64 characters of A-Z a-z 0-9 _ . -");
    SD_ASSIGN_OR_RETURN(YamlReader device, devices.Child(id));
    if (device.Has("token"))
      return device.Error("token", "plaintext tokens are not accepted in the devices file; store token_hash "
                                   "(streamdistill-admin enrol or hash-token)");
    std::string hash_text;
    SD_RETURN_IF_ERROR(device.Require("token_hash", &hash_text));
    auto hash = ParseTokenHash(hash_text);
    if (!hash.ok()) return device.Error("token_hash", hash.status().message());
    EnrolledDevice& entry = out[id];
    entry.token = *hash;
    SD_RETURN_IF_ERROR(device.Get("enabled", &entry.enabled));
  }
  SD_RETURN_IF_ERROR(root.CheckAllKeysUsed());
  return out;
}

StatusOr<EnrolledDevices> ReadDevicesFile(Env* env, const std::string& path) {
  SD_ASSIGN_OR_RETURN(std::string text, env->ReadFile(path));
  return ParseDevicesFile(text, path);
}

std::string FormatDevicesFile(const EnrolledDevices& devices) {
  std::string text =
      "# streamdistill devices file (docs/operations.md, section 4): salted token hashes, never tokens.\n"
      "# The server reloads it when it changes; streamdistill-admin rewrites it (comments are not kept).\n"
      "devices:\n";
  if (devices.empty()) return text.substr(0, text.size() - 1) + " {}\n";
  for (const auto& [id, device] : devices)
    text += "  " + id + ": {token_hash: \"" + FormatTokenHash(device.token) +
            "\", enabled: " + (device.enabled ? "true" : "false") + "}\n";
  return text;
}

Status WriteDevicesFile(Env* env, const std::string& path, const EnrolledDevices& devices) {
  return WriteFileDurably(env, path, FormatDevicesFile(devices));
}

}  // namespace sd
