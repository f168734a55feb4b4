#include "server/update_encoder.h"

#include <spdlog/spdlog.h>

#include "common/update_codec.h"

namespace sd {

UpdateEncoder MakeUpdateEncoder(const UpdatePolicy& policy, std::vector<size_t> tensor_sizes) {
  return [policy, tensor_sizes = std::move(tensor_sizes)](uint64_t base_version, const std::vector<float>& base,
                                                          const std::vector<float>& candidate)
             -> StatusOr<DeliveredUpdate> {
    DeliveredUpdate update;
    update.encoding = policy.encoding;
    if (base_version == 0 && !IsFullUpdateEncoding(update.encoding)) update.encoding = "full_fp16";
    StatusOr<std::string> payload = EncodeUpdate(update.encoding, base, candidate, tensor_sizes, policy.zstd);
    if (!payload.ok() && update.encoding != "full_fp32") {
      spdlog::warn("{} update not possible ({}), sending full_fp32", update.encoding, payload.status().ToString());
      update.encoding = "full_fp32";
      payload = EncodeUpdate(update.encoding, base, candidate, tensor_sizes, policy.zstd);
    }
    if (!payload.ok()) return payload.status();
    update.payload = std::move(payload).value();
    SD_ASSIGN_OR_RETURN(update.delivered, DecodeUpdate(update.encoding, base, update.payload, candidate.size()));
    return update;
  };
}

}  // namespace sd
