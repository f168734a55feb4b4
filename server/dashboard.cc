#include "server/dashboard.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/base/clock.h"
#include "common/base/token_hash.h"

namespace sd {
namespace {

using nlohmann::json;

// Versions and frames one response lists at most: a chart of 200 points and a page of frames
// stay small on a phone.
constexpr int kVersionsShown = 200;
constexpr int kDefaultFrames = 8;
constexpr int kMaxFrames = 50;

// NaN and infinities are not JSON; an unmeasured mAP50 (-1) reads as null too.
json Map50(double value) { return value >= 0 && value <= 1 ? json(value) : json(nullptr); }

HttpResponse Json(const json& body) {
  HttpResponse response;
  response.content_type = "application/json";
  response.body = body.dump();
  return response;
}

HttpResponse Error(int status, const std::string& message) {
  HttpResponse response;
  response.status = status;
  response.body = message + "\n";
  return response;
}

// The one place a Status becomes an HTTP status: the admin actions' errors.
HttpResponse ErrorFor(const Status& status) {
  switch (status.code()) {
    case Status::Code::kNotFound: return Error(404, status.message());
    case Status::Code::kInvalidArgument: return Error(400, status.message());
    case Status::Code::kFailedPrecondition: return Error(409, status.message());
    case Status::Code::kUnauthenticated: return Error(401, status.message());
    default: return Error(500, status.ToString());
  }
}

// Who the admin actions' log lines name.
constexpr char kHttpAdmin[] = "admin via HTTP";

// The token from "Authorization: Bearer <token>", else from ?token=.
std::string PresentedToken(const HttpRequest& request) {
  const std::string bearer = "Bearer ";
  if (request.authorization.rfind(bearer, 0) == 0) return request.authorization.substr(bearer.size());
  auto it = request.params.find("token");
  return it == request.params.end() ? "" : it->second;
}

json RoundJson(const RecentRound& round) {
  const RoundResult& r = round.result;
  return {{"ended_ms", round.ended_ms},   {"published", r.published},
          {"version", r.version},         {"map50_before", Map50(r.map50_before)},
          {"map50_after", Map50(r.map50_after)}, {"reason", r.reason},
          {"seconds", r.seconds},         {"train_frames", r.train_frames},
          {"val_frames", r.val_frames},   {"memory_frames", r.memory_frames},
          {"longterm_map50_before", Map50(r.longterm_map50_before)},
          {"longterm_map50_after", Map50(r.longterm_map50_after)},
          {"longterm_val_frames", r.longterm_val_frames}};
}

// A fleet table row: the device's state, its newest two versions (mAP50 and its trend) and
// its stored frames.
json DeviceRow(ServerCore& core, const DeviceState& state) {
  const DeviceCounters& c = state.counters;
  auto versions = core.store().Versions(state.id, 2);
  json map50 = nullptr, trend = nullptr;
  if (versions.ok() && !versions->empty()) {
    map50 = Map50(versions->back().val_map50);
    if (versions->size() == 2 && versions->front().val_map50 >= 0 && versions->back().val_map50 >= 0)
      trend = versions->back().val_map50 - versions->front().val_map50;
  }
  const double now = SteadySeconds();
  json row = {{"id", state.id},
              {"enabled", state.enabled},
              {"connected", state.connected},
              {"group", state.group},
              {"version", state.version},
              {"pinned_version", state.admin.pinned_version > 0 ? json(state.admin.pinned_version) : json(nullptr)},
              {"paused", state.admin.paused},
              {"served_version", c.served_version >= 0 ? json(c.served_version) : json(nullptr)},
              {"map50", map50},
              {"map50_trend", trend},
              {"frames", core.store().Usage(state.id).frames},
              {"rounds", c.rounds},
              {"published", c.published},
              {"round_running", c.round_start_s > c.round_end_s},
              {"kbps_in", c.in_kbps(now)},
              {"kbps_out", c.out_kbps(now)},
              {"last_round", state.rounds.empty() ? json(nullptr) : RoundJson(state.rounds.back())}};
  const auto budgets = core.Budgets();
  auto budget = budgets.find(state.id);
  row["budget"] = budget == budgets.end()
                      ? json(nullptr)
                      : json{{"requested", budget->second.requested > 0 ? json(budget->second.requested) : json(nullptr)},
                             {"granted", budget->second.granted > 0 ? json(budget->second.granted) : json(nullptr)},
                             {"reason", budget->second.reason},
                             {"agreement", Map50(budget->second.agreement)}};
  return row;
}

HttpResponse DeviceList(ServerCore& core) {
  json devices = json::array();
  for (const std::string& id : core.DeviceIds()) {
    auto state = core.State(id);
    if (state.ok()) devices.push_back(DeviceRow(core, *state));
  }
  return Json({{"devices", devices}});
}

HttpResponse DeviceDetail(ServerCore& core, const std::string& id) {
  auto state = core.State(id);
  if (!state.ok()) return Error(404, "unknown device");
  auto versions = core.store().Versions(id, kVersionsShown);
  if (!versions.ok()) return Error(500, versions.status().ToString());
  json version_list = json::array();
  for (const VersionRecord& v : *versions)
    version_list.push_back({{"version", v.version}, {"val_map50", Map50(v.val_map50)}, {"created_ms", v.created_ms}});
  json rounds = json::array();
  for (const RecentRound& round : state->rounds) rounds.push_back(RoundJson(round));
  json detail = DeviceRow(core, *state);
  json moves = json::array();
  const auto budgets = core.Budgets();
  if (auto budget = budgets.find(id); budget != budgets.end()) {
    // Steady-clock times as wall-clock milliseconds, for the page's clock.
    const double now_s = SteadySeconds();
    const double now_ms = static_cast<double>(WallMillis());
    for (const CameraBudget::Move& m : budget->second.moves)
      moves.push_back({{"time_ms", static_cast<int64_t>(now_ms - (now_s - m.time_s) * 1000)},
                       {"requested", m.requested > 0 ? json(m.requested) : json(nullptr)},
                       {"granted", m.granted > 0 ? json(m.granted) : json(nullptr)},
                       {"reason", m.reason}});
  }
  detail["budget_moves"] = moves;
  detail["versions"] = version_list;
  detail["recent_rounds"] = rounds;
  return Json(detail);
}

HttpResponse Frames(ServerCore& core, const std::string& id, const HttpRequest& request) {
  if (!core.State(id).ok()) return Error(404, "unknown device");
  int n = kDefaultFrames;
  if (auto it = request.params.find("n"); it != request.params.end()) {
    n = std::atoi(it->second.c_str());
    if (n < 1 || n > kMaxFrames) return Error(400, "n must be in [1, " + std::to_string(kMaxFrames) + "]");
  }
  // The newest n of both kinds: n of each, merged, the newest n kept.
  std::vector<FrameRecord> frames;
  for (bool validation : {false, true}) {
    auto recent = core.store().Recent(id, validation, n);
    if (!recent.ok()) return Error(500, recent.status().ToString());
    frames.insert(frames.end(), recent->begin(), recent->end());
  }
  std::sort(frames.begin(), frames.end(),
            [](const FrameRecord& a, const FrameRecord& b) { return a.sequence > b.sequence; });
  if (static_cast<int>(frames.size()) > n) frames.resize(n);
  json list = json::array();
  for (const FrameRecord& f : frames) {
    json labels = json::array();
    for (const Detection& d : f.labels)
      labels.push_back({{"x1", d.box.x1}, {"y1", d.box.y1}, {"x2", d.box.x2}, {"y2", d.box.y2},
                        {"score", d.score}, {"class_id", d.class_id}});
    list.push_back({{"sequence", f.sequence},
                    {"validation", f.validation},
                    {"capture_time_s", f.capture_time_s},
                    {"labels", labels},
                    {"privacy", f.privacy},  // the edge's mask declaration; "" when none
                    {"url", "/api/devices/" + id + "/frames/" + std::to_string(f.sequence) + ".jpg"}});
  }
  json class_names = core.config().class_names;
  return Json({{"device", id}, {"class_names", class_names}, {"frames", list}});
}

HttpResponse Image(ServerCore& core, const std::string& id, const std::string& sequence) {
  if (!core.State(id).ok()) return Error(404, "unknown device");
  FrameRecord frame;
  frame.device_id = id;
  frame.sequence = std::strtoull(sequence.c_str(), nullptr, 10);
  auto jpeg = core.store().LoadImage(frame);
  // Not stored (never, or pruned since the list was read): LoadImage says NotFound or DataLoss.
  if (!jpeg.ok()) return Error(404, "frame not stored");
  HttpResponse response;
  response.content_type = "image/jpeg";
  response.body = *std::move(jpeg);
  return response;
}

// The version of a pin's body, {"version": N} with N >= 1.
StatusOr<uint64_t> PinnedVersion(const std::string& body) {
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("version") || !parsed["version"].is_number_unsigned() ||
      parsed["version"].get<uint64_t>() == 0)
    return Status::InvalidArgument("the body must be {\"version\": N} with a version N >= 1");
  return parsed["version"].get<uint64_t>();
}

// The admin actions of POST /api/devices/<id>/<action>, by name.
enum class AdminVerb { kPin, kRollback, kUnpin, kTrain, kPause, kResume };

const std::map<std::string, AdminVerb>& AdminVerbs() {
  static const std::map<std::string, AdminVerb> verbs = {
      {"pin", AdminVerb::kPin},     {"rollback", AdminVerb::kRollback}, {"unpin", AdminVerb::kUnpin},
      {"train", AdminVerb::kTrain}, {"pause", AdminVerb::kPause},       {"resume", AdminVerb::kResume}};
  return verbs;
}

StatusOr<AdminVerb> ParseAdminVerb(const std::string& name) {
  auto it = AdminVerbs().find(name);
  if (it == AdminVerbs().end()) return Status::NotFound("no admin action '" + name.substr(0, 40) + "'");
  return it->second;
}

// The route's alternation of the names: "(pin|rollback|...)".
std::string AdminVerbPattern() {
  std::string pattern;
  for (const auto& [name, verb] : AdminVerbs()) pattern += (pattern.empty() ? "(" : "|") + name;
  return pattern + ")";
}

// POST /api/devices/<id>/<action>: the action's error, or the device's row after it.
HttpResponse AdminAction(ServerCore& core, const std::string& id, const std::string& action, const HttpRequest& request) {
  StatusOr<AdminVerb> verb = ParseAdminVerb(action);
  if (!verb.ok()) return ErrorFor(verb.status());
  Status done;
  switch (*verb) {
    case AdminVerb::kPin: {
      auto version = PinnedVersion(request.body);
      done = version.ok() ? core.Pin(id, *version, kHttpAdmin) : version.status();
      break;
    }
    case AdminVerb::kRollback: done = core.Rollback(id, kHttpAdmin).status(); break;
    case AdminVerb::kUnpin: done = core.Unpin(id, kHttpAdmin); break;
    case AdminVerb::kTrain: done = core.RequestRound(id, kHttpAdmin); break;
    case AdminVerb::kPause: done = core.SetPaused(id, true, kHttpAdmin); break;
    case AdminVerb::kResume: done = core.SetPaused(id, false, kHttpAdmin); break;
  }
  if (!done.ok()) return ErrorFor(done);
  auto state = core.State(id);
  if (!state.ok()) return ErrorFor(state.status());
  return Json(DeviceRow(core, *state));
}

}  // namespace

Status ServeDashboard(ServerCore* core, const std::string& admin_token, HttpEndpoint* http) {
  if (admin_token.empty()) return Status::InvalidArgument("the dashboard needs an admin token (http.admin_token)");
  // Compared as salted hashes: TokenMatches takes the same time whichever bytes differ.
  SD_ASSIGN_OR_RETURN(TokenHash hash, HashToken(admin_token));
  auto token_hash = std::make_shared<const TokenHash>(std::move(hash));
  // Every route checks the token first and answers 401 with no data without it.
  auto guarded = [token_hash](std::function<HttpResponse(const HttpRequest&)> handler) -> HttpHandler {
    return [token_hash, handler = std::move(handler)](const HttpRequest& request) {
      if (!TokenMatches(*token_hash, PresentedToken(request)))
        return Error(401, "admin token required: Authorization: Bearer <token>, or ?token=<token> on /dashboard");
      return handler(request);
    };
  };
  SD_RETURN_IF_ERROR(http->Handle("/dashboard", guarded([](const HttpRequest&) {
                                    HttpResponse response;
                                    response.content_type = "text/html; charset=utf-8";
                                    response.body = kDashboardPage;
                                    return response;
                                  })));
  SD_RETURN_IF_ERROR(http->Handle("/api/devices", guarded([core](const HttpRequest&) { return DeviceList(*core); })));
  // Device ids are [A-Za-z0-9_.-]{1,64} (server/frame_store.h), so a pattern of those
  // characters cannot swallow the "/frames" that follows.
  const std::string device = "/api/devices/([A-Za-z0-9_.-]{1,64})";
  SD_RETURN_IF_ERROR(http->Handle(device, guarded([core](const HttpRequest& request) {
                                    return DeviceDetail(*core, request.captures.at(0));
                                  })));
  SD_RETURN_IF_ERROR(http->Handle(device + "/frames", guarded([core](const HttpRequest& request) {
                                    return Frames(*core, request.captures.at(0), request);
                                  })));
  SD_RETURN_IF_ERROR(http->Handle(device + "/frames/([0-9]{1,19})\\.jpg", guarded([core](const HttpRequest& request) {
                                    return Image(*core, request.captures.at(0), request.captures.at(1));
                                  })));
  SD_RETURN_IF_ERROR(http->Handle(device + "/" + AdminVerbPattern(),
                                  guarded([core](const HttpRequest& request) {
                                    return AdminAction(*core, request.captures.at(0), request.captures.at(1), request);
                                  }),
                                  HttpMethod::kPost));
  return Status::Ok();
}

}  // namespace sd
