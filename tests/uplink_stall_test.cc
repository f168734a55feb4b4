// A stream that no server answers: what a proxy does when it holds an edge's stream open while
// no replica reads it (HAProxy 2.6 with no server up, or with its connection's flow-control
// window used up, docs/scale-out.md). A scripted server takes the stream and stays silent; the
// edge must give it up after link.stall_timeout_s, connect again on a new connection, send
// nothing but its hello before a welcome, and lose no frame.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <regex>
#include <thread>

#include "edge/edge_agent.h"
#include "streamdistill.grpc.pb.h"
#include "tests/child_process.h"
#include "tests/daemon_test_util.h"

namespace sd {
namespace {

using namespace sd::testing;
using streamdistill::v1::EdgeMessage;
using streamdistill::v1::ServerMessage;
using ::testing::HasSubstr;

// Reads every stream to its end and answers nothing, or only the welcome.
class SilentLink final : public streamdistill::v1::EdgeLink::Service {
 public:
  explicit SilentLink(bool welcome) : welcome_(welcome) {}

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<ServerMessage, EdgeMessage>* stream) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++streams_;
      peers_.insert(context->peer());
    }
    EdgeMessage in;
    if (!stream->Read(&in) || !in.has_hello()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no hello");
    if (welcome_) {
      ServerMessage welcome;
      welcome.mutable_welcome()->set_max_message_bytes(8 << 20);
      stream->Write(welcome);
    }
    while (stream->Read(&in)) {  // until the edge gives the stream up
      std::lock_guard<std::mutex> lock(mu_);
      if (!in.has_frame()) continue;
      ++frames_[in.frame().sequence()];
      if (!welcome_) ++unwelcomed_frames_;
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "edge gave up");
  }

  int streams() const {
    std::lock_guard<std::mutex> lock(mu_);
    return streams_;
  }
  size_t peers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peers_.size();
  }
  int unwelcomed_frames() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unwelcomed_frames_;
  }
  // Frame sequence -> how many streams carried it.
  std::map<uint64_t, int> frames() const {
    std::lock_guard<std::mutex> lock(mu_);
    return frames_;
  }

 private:
  const bool welcome_;
  mutable std::mutex mu_;
  int streams_ = 0;
  std::set<std::string> peers_;  // "ipv4:127.0.0.1:<port>": one per TCP connection
  int unwelcomed_frames_ = 0;
  std::map<uint64_t, int> frames_;
};

struct SilentServer {
  explicit SilentServer(bool welcome) : service(welcome) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~SilentServer() { server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2)); }
  SilentLink service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

// An edge with a 1 s stall timeout, running until `done` holds or 30 s pass.
EdgeStats RunEdgeUntil(const std::string& dir, int port, const std::function<bool()>& done) {
  std::string yaml = EdgeYaml("cam1", "secret-token-1", port, dir, SyntheticUri(4));
  yaml = std::regex_replace(yaml, std::regex("link: \\{"), "link: {stall_timeout_s: 1, ");
  auto config = ParseEdgeConfig(yaml, "edge.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return {};
  EXPECT_EQ(config->uplink.stall_timeout_s, 1);
  auto agent = EdgeAgent::Create(*config);
  EXPECT_TRUE(agent.ok()) << agent.status().ToString();
  if (!agent.ok()) return {};
  std::thread run([&] { EXPECT_TRUE((*agent)->Run().ok()); });
  WaitFor(done, 30);
  const EdgeStats stats = (*agent)->stats();
  (*agent)->Stop();
  run.join();
  return stats;
}

TEST(UplinkStallTest, AStreamWithNoWelcomeIsGivenUpAndMadeAgainOnANewConnection) {
  SilentServer server(/*welcome=*/false);
  ASSERT_TRUE(server.server && server.port > 0);
  const auto start = std::chrono::steady_clock::now();
  const EdgeStats stats =
      RunEdgeUntil(TempDir("no_welcome"), server.port, [&] { return server.service.streams() >= 3; });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(server.service.streams(), 3) << stats.uplink.last_error;
  // 1 s of silence each, plus a back-off of at most 1 s: three streams within ~6 s, not a hang.
  EXPECT_LT(seconds, 15);
  EXPECT_EQ(server.service.peers(), static_cast<size_t>(server.service.streams())) << "a stream reused a connection";
  EXPECT_EQ(server.service.unwelcomed_frames(), 0) << "frames went out before a welcome";
  EXPECT_THAT(stats.uplink.last_error, HasSubstr("awaiting the welcome"));
  EXPECT_EQ(stats.uplink.connects, 0);
}

TEST(UplinkStallTest, FramesWithNoAckAreSentAgainOnTheNextStream) {
  SilentServer server(/*welcome=*/true);
  ASSERT_TRUE(server.server && server.port > 0);
  auto resent = [&] {
    for (const auto& [sequence, streams] : server.service.frames())
      if (streams >= 2) return true;
    return false;
  };
  const EdgeStats stats = RunEdgeUntil(TempDir("no_acks"), server.port, resent);
  EXPECT_TRUE(resent()) << "no frame was sent again after a stream stalled: " << stats.uplink.last_error;
  EXPECT_GE(server.service.streams(), 2);
  EXPECT_EQ(stats.uplink.frames_acked, 0);
  EXPECT_THAT(stats.uplink.last_error, HasSubstr("awaiting frame acks"));
}

}  // namespace
}  // namespace sd
