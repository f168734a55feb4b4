// A client of the gRPC health service (grpc.health.v1.Health/Check), for the probes of the
// images and of operators' scripts (`streamdistill-admin health`): the same answer a
// Kubernetes gRPC probe or HAProxy's check gets.
#pragma once

#include <string>

#include "common/base/status.h"

namespace sd {

struct HealthProbeOptions {
  std::string target;     // host:port of the gRPC server
  std::string service;    // "" (the server as a whole) or e.g. "streamdistill.v1.EdgeLink"
  std::string ca_cert;    // PEM; non-empty: TLS, the server checked against it
  double timeout_s = 3;   // the whole call, connection included
};

// "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN": the status the server gave.
// Unavailable / DeadlineExceeded when no answer came, NotFound for a service the server
// does not know (gRPC's NOT_FOUND), InvalidArgument for a malformed answer.
StatusOr<std::string> ProbeHealth(const HealthProbeOptions& options);

}  // namespace sd
