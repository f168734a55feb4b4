#include "common/link/grpc_status.h"

namespace sd {
namespace {

constexpr size_t kMaxMessage = 512;

grpc::StatusCode ToCode(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return grpc::StatusCode::OK;
    case Status::Code::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case Status::Code::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case Status::Code::kAlreadyExists: return grpc::StatusCode::ALREADY_EXISTS;
    case Status::Code::kFailedPrecondition: return grpc::StatusCode::FAILED_PRECONDITION;
    case Status::Code::kResourceExhausted: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Status::Code::kUnauthenticated: return grpc::StatusCode::UNAUTHENTICATED;
    case Status::Code::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
    case Status::Code::kDataLoss: return grpc::StatusCode::DATA_LOSS;
    case Status::Code::kAborted: return grpc::StatusCode::ABORTED;
    case Status::Code::kInternal: return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::UNKNOWN;
}

}  // namespace

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message = status.message();
  if (message.size() > kMaxMessage) message = message.substr(0, kMaxMessage - 3) + "...";
  return grpc::Status(ToCode(status.code()), message);
}

int GrpcCode(const Status& status) { return static_cast<int>(ToCode(status.code())); }

Status FromGrpcStatus(const grpc::Status& status) {
  const std::string& m = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::OK: return Status::Ok();
    case grpc::StatusCode::INVALID_ARGUMENT: return Status::InvalidArgument(m);
    case grpc::StatusCode::NOT_FOUND: return Status::NotFound(m);
    case grpc::StatusCode::ALREADY_EXISTS: return Status::AlreadyExists(m);
    case grpc::StatusCode::FAILED_PRECONDITION: return Status::FailedPrecondition(m);
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return Status::ResourceExhausted(m);
    case grpc::StatusCode::UNAUTHENTICATED: return Status::Unauthenticated(m);
    case grpc::StatusCode::DATA_LOSS: return Status::DataLoss(m);
    case grpc::StatusCode::ABORTED: return Status::Aborted(m);
    case grpc::StatusCode::INTERNAL: return Status::Internal(m);
    default: return Status::Unavailable(m);
  }
}

}  // namespace sd
