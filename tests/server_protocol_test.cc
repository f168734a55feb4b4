// The EdgeLink protocol as a client sees it: a real in-process sd::Server on a loopback port
// and a raw gRPC client (no edge code), checking the wire behaviour documented in
// proto/streamdistill.proto: hello first, acks with google.rpc codes, dedupe by sequence,
// authentication errors, the receive limit, the standard health service and TLS.
#include <gtest/gtest.h>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server/server.h"
#include "server/server_config.h"
#include "streamdistill.grpc.pb.h"
#include "tests/protocol_client.h"
#include "tests/test_certificates.h"

namespace {

namespace fs = std::filesystem;
using streamdistill::v1::EdgeLink;
using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;

constexpr char kDevice[] = "cam1";
constexpr char kToken[] = "secret-token-1";
using sd::testing::ExpectNoStream;
using sd::testing::ExpectWelcome;
using sd::testing::Plaintext;
using sd::testing::RealJpeg;
using sd::testing::SendFrame;
using sd::testing::Stream;

fs::path UniqueDir(const std::string& what) {
  static std::atomic<int> counter{0};
  const fs::path dir = fs::path(SD_BINARY_DIR) / "test_tmp" /
                       ("server_protocol_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" + what);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ServerYaml(const fs::path& storage_dir, int max_message_bytes) {
  std::ostringstream y;
  y << "listen: \"127.0.0.1:0\"\n"
    << "http: {port: 0}\n"
    << "storage_dir: \"" << storage_dir.string() << "\"\n"
    << "max_message_bytes: " << max_message_bytes << "\n"
    << "update_chunk_bytes: 16384\n"
    << "threads: 1\n"
    << "devices:\n  cam1: {token: \"" << kToken << "\"}\n"
    << "teacher:\n  kind: onnx\n  model: \"" SD_SOURCE_DIR "/tests/data/tiny_yolo.onnx\"\n"
    << "labeler: {workers: 1, queue: 4}\n"
    << "student:\n  input_width: 128\n  input_height: 96\n  classes: 1\n"
    << "  channels: [8, 8, 16, 16, 32]\n  block: separable\n"
    << "training: {background: false}\n";
  return y.str();
}

sd::ServerConfig MakeConfig(const fs::path& storage_dir, int max_message_bytes = 65536) {
  auto config = sd::ParseServerConfig(ServerYaml(storage_dir, max_message_bytes), "server_protocol_test.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : sd::ServerConfig();
}

EdgeMessage Hello(const std::string& architecture, const std::string& device = kDevice,
                  const std::string& token = kToken) {
  return sd::testing::HelloMessage(architecture, device, token);
}

EdgeMessage Frame(uint64_t sequence, const std::string& jpeg) { return sd::testing::FrameMessage(sequence, jpeg); }

// One plaintext server (max_message_bytes 65536) shared by the suite, so that the final test
// sees it after every kind of bad stream.
class ServerProtocolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(UniqueDir("plain"));
    config_ = new sd::ServerConfig(MakeConfig(*dir_ / "store"));
    auto server = sd::Server::Start(*config_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete config_;
    config_ = nullptr;
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static std::string Arch() { return config_->student.Fingerprint(); }
  static int Port() { return server_->port(); }

  // Opens a stream, sends the hello and expects the stream to end with `code`.
  static void ExpectRejectedHello(const EdgeMessage& hello, grpc::StatusCode code) {
    Stream s(Plaintext(Port()));
    s.Send(hello);  // may already fail if the server finished first
    ExpectNoStream(s, code);
  }

  static fs::path* dir_;
  static sd::ServerConfig* config_;
  static sd::Server* server_;
};

fs::path* ServerProtocolTest::dir_ = nullptr;
sd::ServerConfig* ServerProtocolTest::config_ = nullptr;
sd::Server* ServerProtocolTest::server_ = nullptr;

TEST_F(ServerProtocolTest, ValidHelloGetsWelcomeFirst) {
  Stream s(Plaintext(Port()));
  ASSERT_TRUE(s.Send(Hello(Arch())));
  streamdistill::v1::Welcome welcome;
  ASSERT_TRUE(ExpectWelcome(s, &welcome));
  EXPECT_EQ(welcome.max_message_bytes(), 65536u);
  EXPECT_EQ(welcome.latest_version(), 0u);  // nothing trained yet (training.background false)
  grpc::Status status = s.Close();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

// Runs on a server of its own with a short deadline: if the ack never came (a labeller that
// deadlocked on a rejected frame once did exactly that), the test fails and leaks that server
// on purpose, since destroying it would block, and the rest of the suite still runs.
TEST_F(ServerProtocolTest, CorruptFrameIsRejectedAndTheStreamGoesOn) {
  const fs::path dir = UniqueDir("corrupt");
  auto started = sd::Server::Start(MakeConfig(dir / "store"));
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  std::unique_ptr<sd::Server> server = std::move(*started);
  bool wedged = false;
  {
    Stream s(Plaintext(server->port()), std::chrono::seconds(4));
    ASSERT_TRUE(s.Send(Hello(Arch())));
    ASSERT_TRUE(ExpectWelcome(s));

    streamdistill::v1::FrameAck ack;
    ::testing::AssertionResult got = SendFrame(s, 1, "not a jpeg", &ack);
    if (!got) {
      wedged = true;
      server.release();  // see the comment above: its destructor would never return
      FAIL() << got.message()
             << "\n(the server never acked a rejected frame: see the comment above this test)";
    }
    EXPECT_EQ(ack.code(), 3) << ack.message();  // INVALID_ARGUMENT
    EXPECT_FALSE(ack.message().empty());
    EXPECT_FALSE(ack.duplicate());

    const std::string jpeg = RealJpeg();
    ASSERT_TRUE(SendFrame(s, 2, jpeg, &ack));
    EXPECT_EQ(ack.code(), 0) << ack.message();
    EXPECT_FALSE(ack.duplicate());

    ASSERT_TRUE(SendFrame(s, 2, jpeg, &ack));  // a re-send after a reconnect
    EXPECT_EQ(ack.code(), 0) << ack.message();
    EXPECT_TRUE(ack.duplicate());

    grpc::Status status = s.Close();
    EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();

    sd::FrameStore& store = server->core().store();
    EXPECT_EQ(store.LastSequence(kDevice), 2u);
    auto frames = store.Since(kDevice, 0, 100);
    ASSERT_TRUE(frames.ok()) << frames.status().ToString();
    ASSERT_EQ(frames->size(), 1u);
    EXPECT_EQ((*frames)[0].sequence, 2u);
    auto image = store.LoadImage((*frames)[0]);
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    EXPECT_EQ(*image, jpeg);

    const sd::DeviceCounters counters = server->core().Counters(kDevice);
    EXPECT_EQ(counters.frames_rejected, 1);
    EXPECT_EQ(counters.frames_stored, 1);
    EXPECT_EQ(counters.duplicates, 1);
  }
  // A new stream learns where the store is, and the server is fine.
  Stream again(Plaintext(server->port()));
  ASSERT_TRUE(again.Send(Hello(Arch())));
  streamdistill::v1::Welcome welcome;
  ASSERT_TRUE(ExpectWelcome(again, &welcome));
  EXPECT_EQ(welcome.last_stored_sequence(), 2u);
  EXPECT_TRUE(again.Close().ok());
  if (!wedged) {
    server.reset();
    fs::remove_all(dir);
  }
}

TEST_F(ServerProtocolTest, UnknownDeviceIsUnauthenticated) {
  ExpectRejectedHello(Hello(Arch(), "cam9", kToken), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerProtocolTest, WrongTokenIsUnauthenticated) {
  ExpectRejectedHello(Hello(Arch(), kDevice, "secret-token-2"), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerProtocolTest, FrameBeforeHelloIsUnauthenticated) {
  ExpectRejectedHello(Frame(7, RealJpeg()), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->core().store().Since(kDevice, 6, 10)->size(), 0u);  // nothing stored from it
}

TEST_F(ServerProtocolTest, OtherArchitectureIsFailedPrecondition) {
  sd::StudentArchitecture other = config_->student;
  other.channels = {8, 8, 16, 16, 64};
  ASSERT_NE(other.Fingerprint(), Arch());
  ExpectRejectedHello(Hello(other.Fingerprint()), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServerProtocolTest, HelloTwiceIsFailedPrecondition) {
  Stream s(Plaintext(Port()));
  ASSERT_TRUE(s.Send(Hello(Arch())));
  ASSERT_TRUE(ExpectWelcome(s));
  s.Send(Hello(Arch()));
  grpc::Status status = s.End();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
}

TEST_F(ServerProtocolTest, OversizeMessageIsResourceExhausted) {
  {
    Stream s(Plaintext(Port()));
    ASSERT_TRUE(s.Send(Hello(Arch())));
    ASSERT_TRUE(ExpectWelcome(s));
    s.Send(Frame(100, std::string(200 * 1024, 'x')));  // 200 KB > max_message_bytes 65536
    grpc::Status status = s.End();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  }
  EXPECT_NE(server_->core().store().LastSequence(kDevice), 100u);
  // The server still serves new streams.
  Stream s(Plaintext(Port()));
  ASSERT_TRUE(s.Send(Hello(Arch())));
  ASSERT_TRUE(ExpectWelcome(s));
  EXPECT_TRUE(s.Close().ok());
}

// grpc.health.v1 stubs are not installed as headers, so the check goes through the generic
// stub with a hand-encoded HealthCheckRequest {string service = 1} and the response
// HealthCheckResponse {ServingStatus status = 1} (SERVING = 1) is decoded by hand.
// The call runs on a completion queue the test owns: the callback API's shared client queue
// (CallbackAlternativeCQ) raced with process exit under ASan (a double free in gRPC 1.51).
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         int* serving_status) {
  std::string request_bytes;
  request_bytes.push_back('\x0a');  // field 1, length-delimited
  request_bytes.push_back(static_cast<char>(service.size()));  // service names here are < 128 bytes
  request_bytes += service;
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  grpc::GenericStub stub(channel);
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  const bool finished = cq.Next(&tag, &ok);  // the deadline above bounds the wait
  cq.Shutdown();
  void* drained_tag;
  bool drained_ok;
  while (cq.Next(&drained_tag, &drained_ok)) {
  }
  if (!finished || !ok) return grpc::Status(grpc::StatusCode::INTERNAL, "health check did not complete");
  if (!status.ok()) return status;
  std::vector<grpc::Slice> slices;
  response_buffer.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  *serving_status = 0;  // UNKNOWN: proto3 leaves the default out
  if (bytes.size() == 2 && bytes[0] == '\x08') *serving_status = bytes[1];
  else if (!bytes.empty()) return grpc::Status(grpc::StatusCode::INTERNAL, "unexpected health response bytes");
  return status;
}

TEST_F(ServerProtocolTest, HealthServiceReportsServing) {
  int serving = -1;
  grpc::Status status = HealthCheck(Plaintext(Port()), "streamdistill.v1.EdgeLink", &serving);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(serving, 1);  // SERVING
  status = HealthCheck(Plaintext(Port()), "", &serving);  // the server as a whole
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(serving, 1);
  status = HealthCheck(Plaintext(Port()), "no.such.Service", &serving);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

// Must stay the last test of the suite: after every bad stream above the server still works.
TEST_F(ServerProtocolTest, ZzServerStillServesAfterAllOfThat) {
  Stream s(Plaintext(Port()));
  ASSERT_TRUE(s.Send(Hello(Arch())));
  ASSERT_TRUE(ExpectWelcome(s));
  const uint64_t next = server_->core().store().LastSequence(kDevice) + 1;
  streamdistill::v1::FrameAck ack;
  ASSERT_TRUE(SendFrame(s, next, RealJpeg(), &ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_FALSE(ack.duplicate());
  grpc::Status status = s.Close();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(server_->core().store().LastSequence(kDevice), next);
}

// ---- TLS ----------------------------------------------------------------------------------

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for localhost / 127.0.0.1 and a client certificate
// (tests/test_certificates.h).
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(UniqueDir("tls"));
    if (std::string why_not = sd::testing::MakeTestCertificates(dir_->string()); !why_not.empty()) {
      skip_reason_ = new std::string(std::move(why_not));
      return;
    }
    ca_ = new std::string(ReadFile(*dir_ / "ca.pem"));
    server_cert_ = new std::string(ReadFile(*dir_ / "server.pem"));
    server_key_ = new std::string(ReadFile(*dir_ / "server.key"));
    client_cert_ = new std::string(ReadFile(*dir_ / "client.pem"));
    client_key_ = new std::string(ReadFile(*dir_ / "client.key"));
    other_ca_ = new std::string(ReadFile(*dir_ / "other_ca.pem"));
  }
  static void TearDownTestSuite() {
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    delete skip_reason_;
    delete ca_;
    delete server_cert_;
    delete server_key_;
    delete client_cert_;
    delete client_key_;
    delete other_ca_;
    dir_ = nullptr;
    skip_reason_ = ca_ = server_cert_ = server_key_ = client_cert_ = client_key_ = other_ca_ = nullptr;
  }
  void SetUp() override {
    if (skip_reason_) GTEST_SKIP() << *skip_reason_;
  }

  static std::unique_ptr<sd::Server> StartTls(const std::string& name, bool mutual) {
    sd::ServerConfig config = MakeConfig(*dir_ / name / "store");  // removed with dir_
    config.tls.cert = *server_cert_;
    config.tls.key = *server_key_;
    if (mutual) config.tls.client_ca = *ca_;
    auto server = sd::Server::Start(config);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    return server.ok() ? std::move(*server) : nullptr;
  }

  // Dials 127.0.0.1 (loopback only) and checks the certificate against the name localhost.
  static std::shared_ptr<grpc::Channel> Secure(int port, bool with_client_cert) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca_;
    if (with_client_cert) {
      ssl.pem_cert_chain = *client_cert_;
      ssl.pem_private_key = *client_key_;
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(ssl), args);
  }

  static std::string Arch(sd::Server& server) { return server.core().config().student.Fingerprint(); }

  static fs::path* dir_;
  static std::string* skip_reason_;
  static std::string *ca_, *server_cert_, *server_key_, *client_cert_, *client_key_, *other_ca_;
};

fs::path* TlsTest::dir_ = nullptr;
std::string* TlsTest::skip_reason_ = nullptr;
std::string* TlsTest::ca_ = nullptr;
std::string* TlsTest::server_cert_ = nullptr;
std::string* TlsTest::server_key_ = nullptr;
std::string* TlsTest::client_cert_ = nullptr;
std::string* TlsTest::client_key_ = nullptr;
std::string* TlsTest::other_ca_ = nullptr;


TEST_F(TlsTest, TlsClientGetsWelcomeAndPlaintextClientFails) {
  auto server = StartTls("tls_server", /*mutual=*/false);
  ASSERT_NE(server, nullptr);
  {
    Stream s(Secure(server->port(), /*with_client_cert=*/false));
    ASSERT_TRUE(s.Send(Hello(Arch(*server))));
    ASSERT_TRUE(ExpectWelcome(s));
    streamdistill::v1::FrameAck ack;
    ASSERT_TRUE(SendFrame(s, 1, RealJpeg(), &ack));
    EXPECT_EQ(ack.code(), 0) << ack.message();
    grpc::Status status = s.Close();
    EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  }
  {
    Stream s(Plaintext(server->port()));
    s.Send(Hello(Arch(*server)));
    ExpectNoStream(s, grpc::StatusCode::UNAVAILABLE);
  }
  // A client that trusts another CA does not accept the server either.
  {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *other_ca_;
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    Stream s(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server->port()), grpc::SslCredentials(ssl),
                                       args));
    s.Send(Hello(Arch(*server)));
    ExpectNoStream(s, grpc::StatusCode::UNAVAILABLE);
  }
  // Nor one that expects another server name.
  {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca_;
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("not-the-server.example");
    Stream s(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server->port()), grpc::SslCredentials(ssl),
                                       args));
    s.Send(Hello(Arch(*server)));
    ExpectNoStream(s, grpc::StatusCode::UNAVAILABLE);
  }
  // The TLS server is still fine afterwards.
  Stream s(Secure(server->port(), false));
  ASSERT_TRUE(s.Send(Hello(Arch(*server))));
  ASSERT_TRUE(ExpectWelcome(s));
  EXPECT_TRUE(s.Close().ok());
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  auto server = StartTls("mtls_server", /*mutual=*/true);
  ASSERT_NE(server, nullptr);
  {
    Stream s(Secure(server->port(), /*with_client_cert=*/false));
    s.Send(Hello(Arch(*server)));
    ExpectNoStream(s, grpc::StatusCode::UNAVAILABLE);
  }
  Stream s(Secure(server->port(), /*with_client_cert=*/true));
  ASSERT_TRUE(s.Send(Hello(Arch(*server))));
  ASSERT_TRUE(ExpectWelcome(s));
  grpc::Status status = s.Close();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

// The HTTP port follows the gRPC port: HTTPS with the same certificate, and no plain HTTP.
TEST_F(TlsTest, HttpPortServesHttpsWithTheSameCertificate) {
  auto server = StartTls("https_server", /*mutual=*/false);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->http_port(), 0);
  httplib::SSLClient https("127.0.0.1", server->http_port());
  https.set_ca_cert_path((*dir_ / "ca.pem").c_str());
  https.enable_server_certificate_verification(true);
  auto metrics = https.Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("streamdistill_server_labeler_queue_capacity"), std::string::npos);

  httplib::SSLClient untrusted("127.0.0.1", server->http_port());
  untrusted.set_ca_cert_path((*dir_ / "other_ca.pem").c_str());
  untrusted.enable_server_certificate_verification(true);
  EXPECT_FALSE(untrusted.Get("/metrics")) << "a certificate of another CA was accepted";

  httplib::Client plain("127.0.0.1", server->http_port());
  plain.set_read_timeout(5);
  auto refused = plain.Get("/metrics");
  EXPECT_TRUE(!refused || refused->status != 200) << "plain HTTP was served";
}

}  // namespace
