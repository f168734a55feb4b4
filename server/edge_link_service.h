// The EdgeLink gRPC service: one bidirectional stream per edge (callback API, one reactor
// per stream, at most one write in flight).
#pragma once

#include <memory>

#include "streamdistill.grpc.pb.h"

#include "server/server_core.h"

namespace sd {

class EdgeLinkService final : public streamdistill::v1::EdgeLink::CallbackService {
 public:
  explicit EdgeLinkService(ServerCore* core) : core_(core) {}
  grpc::ServerBidiReactor<streamdistill::v1::EdgeMessage, streamdistill::v1::ServerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  ServerCore* core_;
};

}  // namespace sd
