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
//
// and the admin actions (ServerCore::Pin and the rest), each answering the device's row:
//
//   POST /api/devices/<id>/pin        {"version": N}: deploy stored version N and keep it
//   POST /api/devices/<id>/rollback   pin to the version before the one it serves
//   POST /api/devices/<id>/unpin      back to the newest version, and every later one
//   POST /api/devices/<id>/train      its round next, below its thresholds
//   POST /api/devices/<id>/pause      its training unit is not scheduled
//   POST /api/devices/<id>/resume
//
// Errors: 401 without the token, 404 an unknown device or version, 400 a bad body, 409 an
// action the device's state refuses (train while paused or without frames, nothing to roll
// back to).
#pragma once

#include <string>

#include "common/obs/http_endpoint.h"
#include "common/base/status.h"
#include "server/server_core.h"

namespace sd {

// The page, embedded in the binary so that no install path is needed (server/dashboard_page.cc).
extern const char kDashboardPage[];

// Adds the dashboard's routes to `http` (before its Start()); `core` must outlive the endpoint.
// InvalidArgument for an empty token (the caller leaves the dashboard off then).
Status ServeDashboard(ServerCore* core, const std::string& admin_token, HttpEndpoint* http);

}  // namespace sd
