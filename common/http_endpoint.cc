#include "common/http_endpoint.h"

#include <sys/socket.h>

#include <chrono>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "common/metrics.h"

namespace sd {

const char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

namespace {

// Requests are few (a scrape every few seconds, an operator's browser): a small pool instead
// of httplib's default of one thread per core and at least 8. Not 1 or 2: a kept-alive
// connection holds its thread until it goes idle, and a scraper or two must leave room.
constexpr size_t kHttpThreads = 4;

}  // namespace

HttpEndpoint::HttpEndpoint(HttpOptions options, std::string name)
    : options_(std::move(options)), name_(std::move(name)), server_(std::make_unique<httplib::Server>()) {
  server_->new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  // httplib's default sets SO_REUSEPORT, with which a second daemon on the same port binds too
  // and the kernel splits the scrapes between the two: SO_REUSEADDR only (a restart may still
  // bind at once while old connections linger in TIME_WAIT), so the second one fails to start.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // A scrape takes milliseconds; a client that stalls mid-request must not hold a thread long.
  server_->set_read_timeout(std::chrono::seconds(5));
  server_->set_write_timeout(std::chrono::seconds(5));
}

HttpEndpoint::~HttpEndpoint() { Stop(); }

Status HttpEndpoint::Handle(const std::string& path, HttpHandler handler) {
  if (thread_.joinable()) return Status::FailedPrecondition("HTTP route " + path + " added after Start()");
  paths_.push_back(path);
  server_->Get(path, [path, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest request;
    request.path = path;
    for (size_t i = 1; i < req.matches.size(); ++i) request.captures.push_back(req.matches[i].str());
    for (const auto& [key, value] : req.params) request.params[key] = value;
    request.authorization = req.get_header_value("Authorization");
    HttpResponse response = handler(request);
    res.status = response.status;
    res.set_content(std::move(response.body), response.content_type.c_str());
  });
  return Status::Ok();
}

Status HttpEndpoint::ServeMetrics(const MetricsRegistry* registry) {
  return Handle("/metrics", [registry](const HttpRequest&) {
    HttpResponse response;
    response.content_type = kPrometheusContentType;
    response.body = registry->Render();
    return response;
  });
}

Status HttpEndpoint::Start() {
  if (thread_.joinable()) return Status::FailedPrecondition("HTTP endpoint started twice");
  const std::string address = options_.bind + ":" + std::to_string(options_.port);
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.bind);
  } else {
    port_ = server_->bind_to_port(options_.bind, options_.port) ? options_.port : -1;
  }
  if (port_ <= 0)
    return Status::Unavailable("cannot listen on " + address + " for HTTP (" + name_ +
                               "): address in use or invalid (http.bind, http.port)");
  std::string routes;
  for (const std::string& path : paths_) routes += (routes.empty() ? "" : " ") + path;
  thread_ = std::thread([this] {
    if (!server_->listen_after_bind()) spdlog::error("HTTP ({}): the listen loop failed", name_);
    loop_ended_ = true;
  });
  // httplib's stop() does nothing before its loop runs, so a Stop() right after Start() would
  // leave the loop running forever: wait until it is up (within a millisecond or so).
  while (!server_->is_running() && !loop_ended_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (loop_ended_) {
    thread_.join();
    return Status::Unavailable("HTTP (" + name_ + ") on " + address + ": the listen loop ended at once");
  }
  // Not "listening on": scripts wait for that line of the gRPC port.
  spdlog::info("HTTP ({}) on {}:{} serves {}", name_, options_.bind, port_, routes);
  return Status::Ok();
}

void HttpEndpoint::Stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

}  // namespace sd
