// The one place that turns our Status into a grpc::Status: codes map one to one, and the
// message is bounded so that a long error cannot blow up a trailer.
#pragma once

#include <cstdint>

#include <grpcpp/support/status.h>

#include "common/base/status.h"

namespace sd {

// gRPC's prefix of every message (a flag byte and a 4-byte length): the project's byte counts
// include it, on both sides and in the bench.
constexpr int64_t kGrpcFramingBytes = 5;

grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status);
// The numeric google.rpc code of a Status (0 for OK), for in-stream acks.
int GrpcCode(const Status& status);

}  // namespace sd
