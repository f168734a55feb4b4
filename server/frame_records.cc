#include "server/frame_records.h"

#include <algorithm>

namespace sd {

Status RetentionBounds::Validate() const {
  if (max_frames < 0) return Status::InvalidArgument("max_frames: must be >= 0 (0: no bound)");
  if (max_bytes < 0) return Status::InvalidArgument("max_bytes: must be >= 0 (0: no bound)");
  if (!(max_age_s >= 0)) return Status::InvalidArgument("max_age_s: must be >= 0 (0: no bound)");
  return Status::Ok();
}

bool IsValidDeviceId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

Status CheckDeviceId(const std::string& id) {
  if (!IsValidDeviceId(id)) {
    return Status::InvalidArgument("device id '" + id.substr(0, 80) +
                                   "' is not 1-64 characters of [A-Za-z0-9_.-] (it names a directory)");
  }
  return Status::Ok();
}

}  // namespace sd
