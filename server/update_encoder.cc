#include "server/update_encoder.h"

#include <spdlog/spdlog.h>

#include "common/student/student.h"

namespace sd {

StatusOr<DeliveredUpdate> EncodeDelivered(UpdateEncoding encoding, const std::vector<float>& base,
                                          const std::vector<float>& target, const std::vector<size_t>& tensor_sizes,
                                          bool zstd) {
  DeliveredUpdate update;
  update.encoding = encoding;
  SD_ASSIGN_OR_RETURN(update.payload, EncodeUpdate(encoding, base, target, tensor_sizes, zstd));
  SD_ASSIGN_OR_RETURN(update.delivered, DecodeUpdate(encoding, base, update.payload, target.size()));
  return update;
}

UpdateEncoder MakeUpdateEncoder(const UpdatePolicy& policy, std::vector<size_t> tensor_sizes) {
  return [policy, tensor_sizes = std::move(tensor_sizes)](uint64_t base_version, const std::vector<float>& base,
                                                          const std::vector<float>& candidate)
             -> StatusOr<DeliveredUpdate> {
    UpdateEncoding encoding = policy.encoding;
    if (base_version == 0 && !IsFullEncoding(encoding)) encoding = UpdateEncoding::kFullFp16;
    StatusOr<DeliveredUpdate> update = EncodeDelivered(encoding, base, candidate, tensor_sizes, policy.zstd);
    if (!update.ok() && encoding != UpdateEncoding::kFullFp32) {
      spdlog::warn("{} update not possible ({}), sending full_fp32", UpdateEncodingName(encoding),
                   update.status().ToString());
      update = EncodeDelivered(UpdateEncoding::kFullFp32, base, candidate, tensor_sizes, policy.zstd);
    }
    return update;
  };
}

StatusOr<std::shared_ptr<const ModelUpdate>> EncodeFullModel(const UpdatePolicy& policy, uint64_t version,
                                                             const std::vector<float>& flat) {
  const UpdateEncoding encoding =
      policy.encoding == UpdateEncoding::kFullFp16 ? UpdateEncoding::kFullFp16 : UpdateEncoding::kFullFp32;
  SD_ASSIGN_OR_RETURN(DeliveredUpdate delivered, EncodeDelivered(encoding, {}, flat, {}, policy.zstd));
  auto update = std::make_shared<ModelUpdate>();
  update->new_version = version;
  update->encoding = encoding;
  update->payload = std::move(delivered.payload);
  update->weights_checksum = WeightsChecksum(delivered.delivered);
  return std::shared_ptr<const ModelUpdate>(update);
}

}  // namespace sd
