// The server's dashboard on its HTTP port (docs/operations.md, "Dashboard"): a page with the
// fleet table and, per device, mAP50 and versions over time, recent rounds and the latest
// labelled frames, and the JSON and images behind it. Everything but /metrics needs the admin
// token (http.admin_token), as "Authorization: Bearer <token>" or, for the page a browser
// opens, "?token=<token>", which the page then sends as the header.
//
//   GET /dashboard                              the page (HTML, JavaScript, SVG; no build step)
//   GET /api/devices                            the fleet table
//   GET /api/devices/<id>                       versions (mAP50 over time) and recent rounds
//   GET /api/devices/<id>/frames?n=<count>      the newest labelled frames with the teacher's boxes
//   GET /api/devices/<id>/frames/<seq>.jpg      a stored frame's JPEG
#pragma once

#include <string>

#include "common/http_endpoint.h"
#include "common/status.h"
#include "server/server_core.h"

namespace sd {

// The page, embedded in the binary so that no install path is needed (server/dashboard_page.cc).
extern const char kDashboardPage[];

// Adds the dashboard's routes to `http` (before its Start()); `core` must outlive the endpoint.
// InvalidArgument for an empty token (the caller leaves the dashboard off then).
Status ServeDashboard(ServerCore* core, const std::string& admin_token, HttpEndpoint* http);

}  // namespace sd
