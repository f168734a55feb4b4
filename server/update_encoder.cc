#include "server/update_encoder.h"

#include <spdlog/spdlog.h>

#include "common/link/model_update.h"
#include "common/link/update_codec.h"

namespace sd {

UpdateEncoder MakeUpdateEncoder(const UpdatePolicy& policy, std::vector<size_t> tensor_sizes) {
  return [policy, tensor_sizes = std::move(tensor_sizes)](uint64_t base_version, const std::vector<float>& base,
                                                          const std::vector<float>& candidate)
             -> StatusOr<DeliveredUpdate> {
    DeliveredUpdate update;
    // The policy's name was checked when the config was read.
    update.encoding = ParseUpdateEncoding(policy.encoding).value();
    if (base_version == 0 && !IsFullEncoding(update.encoding)) update.encoding = UpdateEncoding::kFullFp16;
    StatusOr<std::string> payload =
        EncodeUpdate(UpdateEncodingName(update.encoding), base, candidate, tensor_sizes, policy.zstd);
    if (!payload.ok() && update.encoding != UpdateEncoding::kFullFp32) {
      spdlog::warn("{} update not possible ({}), sending full_fp32", UpdateEncodingName(update.encoding),
                   payload.status().ToString());
      update.encoding = UpdateEncoding::kFullFp32;
      payload = EncodeUpdate(UpdateEncodingName(update.encoding), base, candidate, tensor_sizes, policy.zstd);
    }
    if (!payload.ok()) return payload.status();
    update.payload = std::move(payload).value();
    SD_ASSIGN_OR_RETURN(update.delivered, DecodeUpdate(UpdateEncodingName(update.encoding), base, update.payload,
                                                       candidate.size()));
    return update;
  };
}

}  // namespace sd
