// The server's half of model streaming: how a training round's candidate weights, or a full
// model sent on request, become the update an edge receives under a device's UpdatePolicy,
// and what the edge then holds. Every payload the server sends is made by EncodeDelivered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/link/model_update.h"
#include "common/link/update_codec.h"
#include "server/device_trainer.h"
#include "server/server_config.h"

namespace sd {

// `encoding`'s payload of `target` against `base` and the weights the edge holds after applying
// it: DecodeUpdate's result, bit-exactly what the edge computes. Errors as EncodeUpdate's.
StatusOr<DeliveredUpdate> EncodeDelivered(UpdateEncoding encoding, const std::vector<float>& base,
                                          const std::vector<float>& target, const std::vector<size_t>& tensor_sizes,
                                          bool zstd);

// From base version 0 (the edge may hold anything) a full model (full_fp16 under a delta
// policy); otherwise the policy's encoding, falling back to full_fp32 when a delta cannot carry
// the change (beyond fp16's range). `tensor_sizes`: StudentModel::TensorSizes() (int8 is
// quantized per tensor).
UpdateEncoder MakeUpdateEncoder(const UpdatePolicy& policy, std::vector<size_t> tensor_sizes);

// Version `version`'s weights `flat` as a full model (base version 0), with the checksum of what
// the edge then holds. `flat` is what the edge holds already (rounds publish delivered weights),
// so the model must reproduce it exactly: full_fp16 only under a full_fp16 policy (which rounded
// to fp16 already), else full_fp32.
StatusOr<std::shared_ptr<const ModelUpdate>> EncodeFullModel(const UpdatePolicy& policy, uint64_t version,
                                                             const std::vector<float>& flat);

}  // namespace sd
