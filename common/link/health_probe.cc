#include "common/link/health_probe.h"

#include <chrono>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "common/link/grpc_status.h"

namespace sd {
namespace {

// grpc.health.v1's two messages, by hand: HealthCheckRequest {string service = 1;} and
// HealthCheckResponse {ServingStatus status = 1;}. The schema is not in Debian's gRPC
// packages, and a generated copy would register the same names as gRPC's own service.
std::string EncodeRequest(const std::string& service) {
  std::string bytes;
  if (service.empty()) return bytes;  // proto3: the default is not written
  google::protobuf::io::StringOutputStream out(&bytes);
  google::protobuf::io::CodedOutputStream coded(&out);
  coded.WriteTag(1 << 3 | 2);  // field 1, length-delimited
  coded.WriteVarint32(static_cast<uint32_t>(service.size()));
  coded.WriteString(service);
  return bytes;
}

StatusOr<int> DecodeStatus(const std::string& bytes) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  int status = 0;  // absent: UNKNOWN
  for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    if (tag == (1 << 3 | 0)) {
      uint32_t value = 0;
      if (!in.ReadVarint32(&value)) return Status::InvalidArgument("health answer: a truncated status");
      status = static_cast<int>(value);
    } else if (!google::protobuf::internal::WireFormatLite::SkipField(&in, tag)) {
      return Status::InvalidArgument("health answer: a malformed field");
    }
  }
  return status;
}

const char* StatusName(int status) {
  switch (status) {
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
  }
}

}  // namespace

StatusOr<std::string> ProbeHealth(const HealthProbeOptions& options) {
  if (options.target.empty()) return Status::InvalidArgument("target: host:port required");
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.ca_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.ca_cert;
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::GenericStub stub(grpc::CreateChannel(options.target, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000)));
  context.set_wait_for_ready(true);  // up to the deadline: a server still starting is waited for
  const std::string request = EncodeRequest(options.service);
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1), response_buffer;
  grpc::CompletionQueue queue;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request_buffer, &queue);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  if (!status.ok()) return FromGrpcStatus(status).WithContext("health of " + options.target);
  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok()) return Status::InvalidArgument("health answer: unreadable");
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  SD_ASSIGN_OR_RETURN(const int serving, DecodeStatus(bytes));
  return std::string(StatusName(serving));
}

}  // namespace sd
