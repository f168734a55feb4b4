#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/base/env.h"
#include "common/base/token_hash.h"

#include "server/dashboard.h"
#include "server/edge_link_service.h"

namespace sd {
namespace {

constexpr size_t kAdminTokenBytes = 16;  // 32 hex characters

// The dashboard's token: http.admin_token, else the one in http.admin_token_file, which is made
// with a random token when it does not exist yet; "" when neither is set (no dashboard).
StatusOr<std::string> AdminToken(const ServerConfig& config) {
  if (config.admin_token_file.empty()) return config.admin_token;
  const std::string& path = config.admin_token_file;
  Env* env = Env::Default();
  auto stored = env->ReadFile(path, 4096);
  if (stored.ok()) {
    std::string token = *stored;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
    if (token.size() < kMinAdminTokenChars)
      return Status::InvalidArgument("http.admin_token_file " + path + ": the token must be at least " +
                                     std::to_string(kMinAdminTokenChars) + " characters");
    return token;
  }
  if (stored.status().code() != Status::Code::kNotFound) return stored.status();
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (!dir.empty()) SD_RETURN_IF_ERROR(env->CreateDir(dir));
  SD_ASSIGN_OR_RETURN(std::string random, RandomBytes(kAdminTokenBytes));
  const std::string token = HexEncode(random);
  SD_RETURN_IF_ERROR(WriteFileDurably(env, path, token + "\n"));
  // Only the owner may read it: the token shows every camera's images.
  if (::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0)
    return Status::Internal("http.admin_token_file " + path + ": chmod 0600: " + std::strerror(errno));
  spdlog::info("made a new admin token in {} (http.admin_token_file)", path);
  return token;
}

}  // namespace

StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config, TeacherFactory teachers) {
  std::unique_ptr<Server> server(new Server());
  SD_ASSIGN_OR_RETURN(server->core_, ServerCore::Create(config, std::move(teachers)));
  server->service_ = std::make_unique<EdgeLinkService>(server->core_.get());
  if (config.http.enabled) {
    // The HTTP port follows the gRPC port: HTTPS with its certificate when it has TLS.
    server->http_ = std::make_unique<HttpEndpoint>(config.http, "streamdistill-server",
                                                   HttpsCertificate{config.tls.cert, config.tls.key});
    SD_RETURN_IF_ERROR(server->http_->ServeMetrics(&server->core_->metrics().registry));
    // The gRPC health service's answer over plain HTTP, for load balancers that cannot send
    // a gRPC request in a check (HAProxy 2.6: deploy/haproxy/streamdistill.cfg). NOT_SERVING
    // (503) from the moment a shutdown begins, so no new stream is sent here while it drains.
    SD_RETURN_IF_ERROR(server->http_->Handle("/healthz", [serving = &server->serving_](const HttpRequest&) {
      HttpResponse response;
      response.status = *serving ? 200 : 503;
      response.body = *serving ? "SERVING\n" : "NOT_SERVING\n";
      return response;
    }));
    SD_ASSIGN_OR_RETURN(const std::string admin_token, AdminToken(config));
    if (!admin_token.empty())
      SD_RETURN_IF_ERROR(ServeDashboard(server->core_.get(), admin_token, server->http_.get()));
    SD_RETURN_IF_ERROR(server->http_->Start());
    if (!admin_token.empty())
      spdlog::info("dashboard: http://{}:{}/dashboard?token=<admin token{}>", config.http.bind, server->http_->port(),
                   config.admin_token_file.empty() ? "" : " in " + config.admin_token_file);
  }

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!config.tls.cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(config.tls.client_ca.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = config.tls.client_ca;
    ssl.pem_key_cert_pairs.push_back({config.tls.key, config.tls.cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  // Frames and control messages are small; anything larger than the limit is refused by
  // gRPC itself with RESOURCE_EXHAUSTED before it reaches our code.
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  // Dead edges (cable pulled) are noticed within a minute instead of never.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (config.max_connection_age_s > 0) {
    // gRPC adds +-10% jitter, so replicas' connections do not all end at once; the grace lets
    // a stream end by the edge's reconnect rather than mid-message.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, static_cast<int>(config.max_connection_age_s * 1000));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 5000);
  }
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0)
    return Status::Unavailable("cannot listen on " + config.listen + " (address in use or invalid)");
  server->server_->GetHealthCheckService()->SetServingStatus("streamdistill.v1.EdgeLink", true);
  server->serving_ = true;
  spdlog::info("listening on {} (port {}, {}), {} devices in the config{}, teacher {}, student {}", config.listen,
               server->port_,
               config.tls.cert.empty() ? "plaintext" : (config.tls.client_ca.empty() ? "TLS" : "mutual TLS"),
               config.device_tokens.size(),
               config.devices_file.empty() ? "" : " and those of " + config.devices_file, TeacherKindName(config.teacher.kind),
               config.student.Fingerprint());
  return server;
}

Server::~Server() { Shutdown(); }

void Server::Shutdown() {
  if (http_) http_->Stop();
  if (!server_) return;
  serving_ = false;
  server_->GetHealthCheckService()->SetServingStatus(false);
  // First: a round that finishes while the streams wind down must not be published.
  core_->BeginShutdown();
  // Streams are endless: give them a moment to finish their writes, then cancel.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  server_.reset();
  core_.reset();  // joins the training thread and the labellers
}

void Server::Wait() {
  if (server_) server_->Wait();
}

}  // namespace sd
