#include "common/obs/http_endpoint.h"

#include <sys/socket.h>

#include <chrono>

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "common/obs/metrics.h"

namespace sd {

const char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

namespace {

// Requests are few (a scrape every few seconds, an operator's browser): a small pool instead
// of httplib's default of one thread per core and at least 8. Not 1 or 2: a kept-alive
// connection holds its thread until it goes idle, and a scraper or two must leave room.
constexpr size_t kHttpThreads = 4;
constexpr size_t kMaxBodyBytes = 4096;

// Puts the PEM certificate chain (the leaf first, as tls.cert holds it for gRPC) and its key
// into `ctx`; "" on success, else what failed.
std::string LoadCertificate(SSL_CTX& ctx, const std::string& cert_pem, const std::string& key_pem) {
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  std::unique_ptr<BIO, decltype(&BIO_free)> certs(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())),
                                                  &BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> leaf(PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!leaf || SSL_CTX_use_certificate(&ctx, leaf.get()) != 1) return "the certificate (tls.cert) is not PEM";
  while (X509* intermediate = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr))
    if (SSL_CTX_add_extra_chain_cert(&ctx, intermediate) != 1) {  // owns it on success only
      X509_free(intermediate);
      return "an intermediate certificate of tls.cert does not load";
    }
  ERR_clear_error();  // the end of the chain reads as an error
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())),
                                                    &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
                                                          &EVP_PKEY_free);
  if (!key || SSL_CTX_use_PrivateKey(&ctx, key.get()) != 1) return "the key (tls.key) is not an unencrypted PEM key";
  if (SSL_CTX_check_private_key(&ctx) != 1) return "the key (tls.key) does not match the certificate (tls.cert)";
  return "";
}

// An httplib::SSLServer with `certificate`, or a plain one without; `setup` says
// why the certificate did not load (the server is then never started).
std::unique_ptr<httplib::Server> MakeServer(const HttpsCertificate& certificate, const std::string& name,
                                           Status* setup) {
  if (certificate.empty()) return std::make_unique<httplib::Server>();
  std::string failure = "HTTPS needs both a certificate and a key";
  if (!certificate.cert_pem.empty() && !certificate.key_pem.empty()) {
    auto server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
      failure = LoadCertificate(ctx, certificate.cert_pem, certificate.key_pem);
      return failure.empty();
    });
    if (server->is_valid()) return server;
  }
  *setup = Status::InvalidArgument("HTTPS (" + name + "): " + failure);
  return std::make_unique<httplib::Server>();
}

}  // namespace

HttpEndpoint::HttpEndpoint(HttpOptions options, std::string name, HttpsCertificate certificate)
    : options_(std::move(options)),
      name_(std::move(name)),
      tls_(!certificate.empty()),
      server_(MakeServer(certificate, name_, &setup_)) {
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
  // Admin actions' bodies are a few bytes (a version number); nothing else is posted.
  server_->set_payload_max_length(kMaxBodyBytes);
}

HttpEndpoint::~HttpEndpoint() { Stop(); }

Status HttpOptions::Validate() const {
  if (bind.empty()) return Status::InvalidArgument("bind: must be an address, e.g. 127.0.0.1 or 0.0.0.0");
  if (port < 0 || port > 65535) return Status::InvalidArgument("port: must be in [0, 65535] (0: a free port)");
  return Status::Ok();
}

Status HttpEndpoint::Handle(const std::string& path, HttpHandler handler, HttpMethod method) {
  if (thread_.joinable()) return Status::FailedPrecondition("HTTP route " + path + " added after Start()");
  paths_.push_back(method == HttpMethod::kPost ? "POST " + path : path);
  auto serve = [path, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest request;
    request.path = path;
    for (size_t i = 1; i < req.matches.size(); ++i) request.captures.push_back(req.matches[i].str());
    for (const auto& [key, value] : req.params) request.params[key] = value;
    request.authorization = req.get_header_value("Authorization");
    request.body = req.body;
    HttpResponse response = handler(request);
    res.status = response.status;
    res.set_content(std::move(response.body), response.content_type.c_str());
  };
  if (method == HttpMethod::kPost) {
    server_->Post(path, std::move(serve));
  } else {
    server_->Get(path, std::move(serve));
  }
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
  SD_RETURN_IF_ERROR(setup_);
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
  spdlog::info("{} ({}) on {}:{} serves {}", tls() ? "HTTPS" : "HTTP", name_, options_.bind, port_, routes);
  return Status::Ok();
}

void HttpEndpoint::Stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

}  // namespace sd
