// The server's half of model streaming: how a training round's candidate weights become the
// update an edge receives under a device's UpdatePolicy, and what the edge then holds.
#pragma once

#include <cstddef>
#include <vector>

#include "server/device_trainer.h"
#include "server/server_config.h"

namespace sd {

// From base version 0 (the edge may hold anything) a full model (full_fp16 under a delta
// policy); otherwise the policy's encoding, falling back to full_fp32 when a delta cannot carry
// the change (beyond fp16's range). `tensor_sizes`: StudentModel::TensorSizes() (int8 is
// quantized per tensor). The delivered weights are DecodeUpdate's result, bit-exactly what the
// edge computes.
UpdateEncoder MakeUpdateEncoder(const UpdatePolicy& policy, std::vector<size_t> tensor_sizes);

}  // namespace sd
