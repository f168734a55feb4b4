// The one place that turns our Status into a grpc::Status: codes map one to one, and the
// message is bounded so that a long error cannot blow up a trailer.
#pragma once

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace sd {

grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status);
// The numeric google.rpc code of a Status (0 for OK), for in-stream acks.
int GrpcCode(const Status& status);

}  // namespace sd
