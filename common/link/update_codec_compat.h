// TEMPORARY: the string forms of the update-encoding API that two files owned by other
// branches still call: server/server_core.cc (UpdatePolicy::encoding compared with a word,
// EncodeUpdate/DecodeUpdate by name) and edge/edge_agent.cc (DecodeUpdate by name). Each only
// parses the name and calls the one enum function. When both switch to the enum API
// (RoundSparseFraction, EncodeFullModel, DecodeUpdate(update.encoding, ...)), delete this
// header and its include at the end of common/link/update_codec.h. Nothing else may use it.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "common/link/update_codec.h"

namespace sd {

inline bool operator==(UpdateEncoding encoding, const char* name) {
  return std::strcmp(UpdateEncodingName(encoding), name) == 0;
}

inline StatusOr<std::string> EncodeUpdate(const char* name, const std::vector<float>& base,
                                          const std::vector<float>& target, const std::vector<size_t>& tensor_sizes,
                                          bool allow_zstd = true) {
  SD_ASSIGN_OR_RETURN(UpdateEncoding encoding, ParseUpdateEncoding(name));
  return EncodeUpdate(encoding, base, target, tensor_sizes, allow_zstd);
}

inline StatusOr<std::vector<float>> DecodeUpdate(const char* name, const std::vector<float>& base,
                                                 const std::string& payload, size_t expected_size) {
  SD_ASSIGN_OR_RETURN(UpdateEncoding encoding, ParseUpdateEncoding(name));
  return DecodeUpdate(encoding, base, payload, expected_size);
}

}  // namespace sd
